"""`studio cluster …`: a Ray cluster for the durable queue (`studio queue run --cluster ADDRESS`).

- `up --local --workers N [--detach]` — a one-machine cluster on the loopback address with N CPU
  workers (GPU ones with `--gpus`), for trying it; in the foreground until Ctrl+C, or `--detach`ed
  until `studio cluster down`;
- `status [--cluster ADDRESS] [--json]` — the workers: device, what each runs, its loaded models;
- `down` — stop the local cluster `up --detach` started.
"""

from __future__ import annotations

import argparse
import json
import sys


def add_cluster_options(p: argparse.ArgumentParser, *, required: bool = False) -> None:
    """--cluster ADDRESS and Ray's TLS files (shared with `studio queue run`)."""
    p.add_argument(
        "--cluster",
        required=required,
        default=None,
        metavar="ADDRESS",
        help="run on a Ray cluster: local (studio cluster up --local), gpus (one worker per GPU of this "
        "machine), or an address Ray prints (host:6379, ray://host:10001)",
    )
    p.add_argument("--tls-ca", default=None, metavar="PEM", help="Ray TLS: the cluster's CA certificate")
    p.add_argument("--tls-cert", default=None, metavar="PEM", help="Ray TLS: this machine's certificate")
    p.add_argument("--tls-key", default=None, metavar="PEM", help="Ray TLS: its private key")


def connect_from(args: argparse.Namespace, default: str = "local") -> str:
    """Connect to the cluster the options name, warning first about an address off this machine."""
    from studio.cluster.connect import connect, is_local, security_warning, use_tls

    address = (getattr(args, "cluster", None) or default).strip()
    use_tls(args.tls_ca, args.tls_cert, args.tls_key)
    if not is_local(address):
        print(f"studio: warning: {security_warning(address)}", file=sys.stderr, flush=True)
    return connect(address)


def register(sub: argparse._SubParsersAction) -> None:
    from studio.cli import positive_int

    c = sub.add_parser("cluster", help="a Ray cluster of workers for the queue")
    csub = c.add_subparsers(dest="cluster_command", metavar="CLUSTER_COMMAND", required=True)

    up = csub.add_parser("up", help="start a local Ray cluster for trying workers (--local)")
    up.add_argument("--local", action="store_true", required=True, help="on this machine, on the loopback address")
    up.add_argument("--workers", type=positive_int, default=2, help="CPU workers (default 2)")
    up.add_argument("--gpus", type=int, default=0, help="GPUs the cluster may use (one worker each)")
    up.add_argument("--detach", action="store_true", help="return once it runs (`studio cluster down` stops it)")
    up.set_defaults(func=_up)

    st = csub.add_parser("status", help="the workers: device, what each runs, the models each has loaded")
    add_cluster_options(st)
    st.add_argument("--json", action="store_true")
    st.set_defaults(func=_status)

    down = csub.add_parser("down", help="stop the local cluster `up --detach` started")
    down.set_defaults(func=_down)


def _up(args: argparse.Namespace) -> int:
    from studio.cluster.connect import connect, disconnect, stop_process, workers

    if args.gpus < 0:
        from studio.core.errors import InvalidRequest

        raise InvalidRequest(f"--gpus must be 0 or more, not {args.gpus}")
    from studio.cluster.connect import start_local, state_file

    proc, address = start_local(args.workers, args.gpus)
    try:
        connect(address)
        count = args.gpus or args.workers
        handles = workers(count)
        import ray

        ray.get([h.ping.remote() for h in handles], timeout=120)
        disconnect()
    except BaseException:
        stop_process(proc.pid)
        state_file().unlink(missing_ok=True)
        raise
    kind = "GPU" if args.gpus else "CPU"
    print(f"Ray cluster at {address} with {count} {kind} worker{'s' if count != 1 else ''} (loopback only)")
    print("  studio queue run --cluster local     runs the queue on it")
    print("  studio cluster status                lists its workers")
    if args.detach:
        print("  studio cluster down                  stops it")
        return 0
    print("Ctrl+C stops it.", flush=True)
    try:
        proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop_process(proc.pid)
        state_file().unlink(missing_ok=True)
    return 0


def _down(args: argparse.Namespace) -> int:
    from studio.cluster.connect import stop_local

    address = stop_local()
    print(f"stopped the local cluster at {address}" if address else "no local cluster is running")
    return 0


def _status(args: argparse.Namespace) -> int:
    from studio.cluster.connect import disconnect, status

    connect_from(args)
    try:
        info = status()
    finally:
        disconnect()
    if args.json:
        print(json.dumps(info, indent=1, default=str))
        return 0
    print(
        f"cluster {info['address']}: {info['nodes']} node{'s' if info['nodes'] != 1 else ''}, "
        f"{info['cpus']:g} CPUs, {info['gpus']:g} GPUs"
    )
    if not info["workers"]:
        print("no studio workers yet (`studio queue run --cluster ADDRESS` starts them)")
    for w in info["workers"]:
        if "state" in w:
            print(f"  {w['name']:<18} {w['state']}")
            continue
        run = w.get("running")
        doing = f"running {run['job'][:8]} step {run['step']}/{run['total']}" if run else "idle"
        models = ", ".join(w.get("models") or []) or "no model loaded"
        print(f"  {w['name']:<18} {w['device']} ({w['device_name']}) on {w['host']}  {doing}  models: {models}")
    return 0
