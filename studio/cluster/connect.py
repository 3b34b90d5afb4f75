"""Reaching a Ray cluster: an address, a local cluster for trying it, every GPU of this machine.

- `connect(address)`: `local` (the cluster `studio cluster up --local` started), `gpus` (Ray
  started inside this process with this machine's GPUs), or any address Ray's own tools print
  (`host:6379`, `ray://host:10001`).
- `start_local(workers)` / `stop_local()`: `ray start --head --block` on the loopback address, a
  process of ours (its own process group), recorded in `config_dir()/cluster.json`.
- `workers(count)`: the studio's workers on the cluster — detached, named actors
  (`studio-worker-N` in the `studio` namespace) that Ray restarts when their process dies, so a
  worker keeps its models loaded between runs and `studio cluster status` can find it.

Ray's TLS settings (`RAY_USE_TLS`, `RAY_TLS_SERVER_CERT`, `RAY_TLS_SERVER_KEY`, `RAY_TLS_CA_CERT`)
are read by Ray from the environment; `use_tls()` sets them from the CLI's options.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from studio.core import paths
from studio.core.errors import StudioError
from studio.core.files import atomic_write

NAMESPACE = "studio"
PREFIX = "studio-worker-"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
INSTALL_HINT = "Install it with: pip install 'studio[cluster]' (make setup does)."
log = logging.getLogger(__name__)


class ClusterError(StudioError):
    code = "cluster"


def ray_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("ray") is not None


def import_ray(local: bool = True) -> Any:
    """Ray, imported for a cluster on this machine (`local`: Ray keeps to the loopback address) or not."""
    if local and "ray" not in sys.modules:
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # 127.0.0.1, not the LAN address
    elif local and os.environ.get("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER") != "0":
        # Ray was imported before (it reads the setting once): without this it would take 127.0.0.1
        # for this machine's LAN address and wait minutes for a cluster that is not there.
        with contextlib.suppress(Exception):
            import ray._private.ray_constants as ray_constants

            ray_constants.ENABLE_RAY_CLUSTER = False
    if "RAY_AUTH_MODE" not in os.environ and _token_available():
        # Ray's token authentication (on by default for `ray start` once a token exists): a process
        # joining a cluster sends the token only in token mode, as `ray start` itself decides.
        os.environ["RAY_AUTH_MODE"] = "token"
        if "ray" in sys.modules:
            with contextlib.suppress(Exception):
                from ray._private.authentication.authentication_token_setup import _enable_token_auth

                _enable_token_auth()
    try:
        import ray
    except ImportError:
        raise ClusterError("Ray is not installed, so the studio cannot run on workers.", INSTALL_HINT) from None
    return ray


def _token_available() -> bool:
    if os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return True
    return (Path.home() / ".ray" / "auth_token").is_file()


def host_of(address: str) -> str:
    rest = address.strip().removeprefix("ray://")
    if rest.startswith("["):  # [::1]:6379
        return rest[1 : rest.find("]")]
    return rest.rsplit(":", 1)[0] if ":" in rest else rest


def port_of(address: str, default: int = 6379) -> int:
    rest = address.strip().removeprefix("ray://")
    try:
        return int(rest.rsplit(":", 1)[1]) if ":" in rest and not rest.endswith("]") else default
    except ValueError:
        raise ClusterError(f"{address!r} is not a cluster address (host:port or ray://host:port)") from None


def is_local(address: str) -> bool:
    """Whether the address is this machine's loopback (or `local` / `gpus`): nothing leaves the machine."""
    return address in ("local", "gpus") or host_of(address) in LOOPBACK


def security_warning(address: str) -> str:
    """What connecting to a non-local cluster means, said before the studio connects."""
    return (
        f"The Ray cluster at {address} runs what it is sent: anyone who can reach its ports can run code on "
        "its machines and see the prompts, models and images sent there. Use a cluster only on a private "
        "network you trust (Ray's own guidance), with Ray's token authentication or TLS."
    )


def use_tls(ca: str | None = None, cert: str | None = None, key: str | None = None) -> None:
    """Turn on Ray's TLS (mutual: this process's certificate and key, the cluster's CA) before connecting."""
    given = {"RAY_TLS_CA_CERT": ca, "RAY_TLS_SERVER_CERT": cert, "RAY_TLS_SERVER_KEY": key}
    if not any(given.values()):
        return
    missing = [k for k, v in given.items() if not v]
    if missing:
        raise ClusterError(
            "TLS needs a CA certificate, a certificate and its key", "Give --tls-ca, --tls-cert, --tls-key."
        )
    for k, v in given.items():
        if not Path(str(v)).is_file():
            raise ClusterError(f"TLS file not found: {v}")
        os.environ[k] = str(Path(str(v)).resolve())
    os.environ["RAY_USE_TLS"] = "1"


def reachable(address: str, timeout: float = 1.0) -> bool:
    """Whether something answers on the cluster's port (its GCS, or a Ray client server for ray://)."""
    try:
        with socket.create_connection((host_of(address), port_of(address)), timeout=timeout):
            return True
    except OSError:
        return False


# -- a local cluster (studio cluster up --local) ----------------------------------------------------------
def state_file() -> Path:
    return paths.config_dir() / "cluster.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def local_state() -> dict[str, Any] | None:
    """The local cluster `studio cluster up --local` started, if its process still runs."""
    try:
        state = json.loads(state_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(state, dict) or not _alive(int(state.get("pid", 0) or 0)):
        return None
    return state


def start_local(workers: int, gpus: int = 0, timeout: float = 90.0) -> tuple[subprocess.Popen[bytes], str]:
    """Start a one-machine Ray cluster on the loopback address with room for `workers` CPU workers
    (and `gpus` GPU ones). Returns the `ray start --block` process (its own process group) and the address."""
    if workers < 1:
        raise ClusterError(f"--workers must be at least 1, not {workers}")
    import_ray(local=True)
    if local_state() is not None:
        raise ClusterError(
            f"a local cluster is already running at {local_state()['address']}",  # type: ignore[index]
            "`studio cluster down` stops it.",
        )
    port = _free_port()
    address = f"127.0.0.1:{port}"
    logfile = paths.ensure(paths.cache_dir()) / "ray-local-cluster.log"
    cmd = [
        sys.executable,
        "-c",
        "import sys; from ray.scripts.scripts import main; sys.argv[0] = 'ray'; main()",
        "start",
        "--head",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        f"--num-cpus={workers}",
        f"--num-gpus={gpus}",
        "--include-dashboard=false",
        "--disable-usage-stats",
        "--block",
    ]
    env = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    with open(logfile, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    deadline = time.monotonic() + timeout
    while not reachable(address, 0.5):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_process(proc.pid)
            tail = logfile.read_text(errors="replace").strip().splitlines()[-3:]
            raise ClusterError("the local Ray cluster did not start: " + " / ".join(tail), f"The log: {logfile}")
        time.sleep(0.3)
    atomic_write(
        state_file(),
        json.dumps(
            {"address": address, "pid": proc.pid, "workers": workers, "gpus": gpus, "log": str(logfile)}
        ).encode(),
    )
    return proc, address


def stop_process(pid: int, timeout: float = 15.0) -> None:
    """Stop a cluster process we started, and its process group (Ray's own processes under it)."""
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError, OSError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                break
        time.sleep(0.2)
    with contextlib.suppress(OSError):
        os.killpg(pid, signal.SIGKILL)


def stop_local() -> str | None:
    """Stop the local cluster `studio cluster up --local --detach` started; its address, or None."""
    state = local_state()
    if state is None:
        state_file().unlink(missing_ok=True)
        return None
    stop_process(int(state["pid"]))
    state_file().unlink(missing_ok=True)
    return str(state["address"])


# -- connecting ------------------------------------------------------------------------------------------
def resolve(address: str) -> str:
    """`local` → the local cluster's address; anything else as given (checked)."""
    address = (address or "").strip()
    if address == "local":
        state = local_state()
        if state is None:
            raise ClusterError("no local cluster is running", "Start one with `studio cluster up --local --workers 2`.")
        return str(state["address"])
    if address == "gpus":
        return address
    if not address:
        raise ClusterError("no cluster address given", "Give host:port, ray://host:10001, local or gpus.")
    port_of(address)
    return address


def connect(address: str) -> str:
    """Connect this process to the cluster (once; again for another address). Returns the address used."""
    address = resolve(address)
    ray = import_ray(local=is_local(address))
    current = getattr(connect, "_address", None)
    if ray.is_initialized():
        if current == address:
            return address
        ray.shutdown()
    quiet = {"namespace": NAMESPACE, "log_to_driver": False, "logging_level": logging.WARNING}
    try:
        if address == "gpus":  # Ray inside this process, with this machine's GPUs
            start_in_process(cpus=os.cpu_count() or 1)
            if not int(ray.cluster_resources().get("GPU", 0)):
                ray.shutdown()
                raise ClusterError(
                    "no GPU found on this machine, so there is no worker per GPU to start",
                    "Run on this machine (the default) or on a cluster by address.",
                )
        else:
            if not address.startswith("ray://") and not reachable(address, 3.0):
                raise ClusterError(f"no Ray cluster answers at {address}", "Check the address, and that it runs.")
            extra = {"_node_ip_address": "127.0.0.1"} if is_local(address) and not address.startswith("ray://") else {}
            ray.init(address=address, **quiet, **extra)
    except StudioError:
        raise
    except Exception as exc:  # noqa: BLE001 — Ray's connection errors vary by version; one message for them all
        raise ClusterError(f"cannot connect to the Ray cluster at {address}: {exc}", "Check the address.") from None
    connect._address = address  # type: ignore[attr-defined]
    return address


def start_in_process(cpus: int, gpus: int | None = None) -> str:
    """Ray inside this process with room for `cpus` CPU workers (`gpus`: None lets Ray count them);
    on the loopback address, gone when this process disconnects."""
    ray = import_ray(local=True)
    if ray.is_initialized():
        ray.shutdown()
    ray.init(
        address="local",  # a new instance, never a cluster someone else started on this machine
        num_cpus=cpus,
        num_gpus=gpus,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        namespace=NAMESPACE,
        log_to_driver=False,
        logging_level=logging.WARNING,
    )
    connect._address = "in-process"  # type: ignore[attr-defined]
    return "in-process"


def disconnect() -> None:
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()
    connect._address = None  # type: ignore[attr-defined]


def worker_count() -> tuple[int, bool]:
    """How many workers the cluster has room for now, and whether they are GPU workers: one per GPU,
    else one per CPU."""
    ray = import_ray()
    res = ray.cluster_resources()
    gpus = int(res.get("GPU", 0))
    return (gpus, True) if gpus else (max(1, int(res.get("CPU", 1))), False)


def workers(count: int | None = None, *, accept_transfers: bool = True) -> list[Any]:
    """The studio's workers on the connected cluster, started where missing: `count` (default: one
    per GPU, else one per CPU). A worker the cluster has no room for yet starts when a node joins."""
    from studio.cluster.worker import StudioWorker

    ray = import_ray()
    room, gpu = worker_count()
    n = count or room
    opts: dict[str, Any] = {"num_gpus": 1} if gpu else {"num_cpus": 1}
    cls = ray.remote(StudioWorker)
    return [
        cls.options(
            name=f"{PREFIX}{i}",
            namespace=NAMESPACE,
            lifetime="detached",
            get_if_exists=True,
            max_restarts=-1,
            max_concurrency=8,
            **opts,
        ).remote(f"{PREFIX}{i}", accept_transfers)
        for i in range(n)
    ]


def existing_workers() -> list[tuple[str, Any]]:
    ray = import_ray()
    names = sorted(
        (a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a.get("namespace") == NAMESPACE),
        key=lambda n: (len(n), n),
    )
    return [(n, ray.get_actor(n, namespace=NAMESPACE)) for n in names if n.startswith(PREFIX)]


def status(timeout: float = 5.0) -> dict[str, Any]:
    """The cluster's nodes and resources, and every studio worker: device, what it runs, its models."""
    ray = import_ray()
    nodes = [n for n in ray.nodes() if n.get("Alive")]
    found = existing_workers()
    rows: list[dict[str, Any]] = []
    refs = [(name, h.describe.remote()) for name, h in found]
    for name, ref in refs:
        try:
            rows.append(ray.get(ref, timeout=timeout))
        except Exception as exc:  # noqa: BLE001 — a worker starting, restarting or gone is listed as such
            rows.append({"name": name, "state": f"not answering ({type(exc).__name__})"})
    res = ray.cluster_resources()
    return {
        "address": getattr(connect, "_address", None),
        "nodes": len(nodes),
        "cpus": res.get("CPU", 0),
        "gpus": res.get("GPU", 0),
        "workers": rows,
    }
