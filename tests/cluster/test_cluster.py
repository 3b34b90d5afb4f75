"""The durable queue on a local Ray cluster of two CPU workers (started once for the module with
`studio cluster up --local --detach`, loopback only): results equal a local run bit for bit and
land in the local gallery with the worker in their provenance, previews arrive in order, cancel
stops within a step, a killed worker's job completes elsewhere with nothing made twice, models go
by SHA-256 (sent once), a model no worker can get fails with a message, `cluster status`, and a
lost cluster leaves the queue intact."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ray = pytest.importorskip("ray")

from studio.cli import main  # noqa: E402
from studio.cluster import connect as cc  # noqa: E402
from studio.cluster.pool import ClusterLost, ClusterQueue  # noqa: E402
from studio.cluster.remote import RemoteEngine  # noqa: E402
from studio.cluster.worker import StudioWorker  # noqa: E402
from studio.core.errors import ModelNotFound  # noqa: E402
from studio.core.metadata import read_metadata  # noqa: E402
from studio.core.queue import JobStore  # noqa: E402
from studio.core.request import GenerationRequest  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _env(home: Path) -> dict[str, str]:
    return {**os.environ, "STUDIO_HOME": str(home), "PYTHONPATH": str(REPO), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def _up(home: Path, workers: int) -> str:
    """`studio cluster up --local --detach` in a process whose STUDIO_HOME is the workers' own."""
    proc = subprocess.run(
        [sys.executable, "-m", "studio", "cluster", "up", "--local", "--workers", str(workers), "--detach"],
        env=_env(home),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"with {workers} CPU worker" in proc.stdout
    return json.loads((home / "config" / "cluster.json").read_text())["address"]


def _down(home: Path) -> None:
    subprocess.run([sys.executable, "-m", "studio", "cluster", "down"], env=_env(home), timeout=120, check=False)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    home = tmp_path_factory.mktemp("worker-home")  # the workers' library and cache, not this machine's
    address = _up(home, 2)
    try:
        cc.connect(address)
        yield address, home
    finally:
        cc.disconnect()
        _down(home)


def request(model: Path, seed: int, steps: int = 3, **kw) -> GenerationRequest:
    fields = dict(model=str(model), prompt="a red circle", steps=steps, width=64, height=64, seed=seed, preview="none")
    return GenerationRequest.create(**{**fields, **kw})


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_jobs_run_on_workers_land_here_and_equal_a_local_run(cluster, tiny_models, engine, tmp_path):
    address, home = cluster
    model = tiny_models("sd15", "single-file")
    steps: dict[str, list[int]] = {}
    stages: list[tuple[str, float]] = []
    with JobStore.open(tmp_path / "lib") as store:
        ids = [store.add(request(model, seed)).id for seed in (1, 2, 3)]
        pool = ClusterQueue(
            store,
            cc.workers(2),
            address=address,
            on_step=lambda e, job, p: steps.setdefault(job, []).append(p.step),
            on_progress=lambda e, job, p: stages.append((p.stage, p.fraction)),
        )
        outcomes = pool.run(timeout_s=240)
        assert sorted(o.status for o in outcomes) == ["done"] * 3
        assert all(store.get(i).state == "done" for i in ids)
        items = [o.items[0] for o in outcomes]
        sent = [name for e in pool.engines for name in e.sent]
    # the model went by hash: sent once (the other worker on this machine found it in the cache)
    assert sent == [model.name]
    sending = [f for stage, f in stages if stage.startswith(f"sending {model.name} to worker ")]
    assert sending[0] == 0.0 and sending[-1] == 1.0  # the transfer's progress, as the window shows it
    assert (home / "cache" / "cluster-files").is_dir()
    # previews streamed back in order, every step
    assert sorted(steps) == sorted(ids) and all(s == [1, 2, 3] for s in steps.values())
    assert {o.result.worker.split(" on ")[0] for o in outcomes} <= {"studio-worker-0", "studio-worker-1"}
    for item in items:
        assert item.path.is_file() and str(item.path).startswith(str(tmp_path / "lib"))
        meta = read_metadata(item.path)
        assert meta.worker.startswith("studio-worker-") and "(cpu)" in meta.worker  # the worker's device
        assert "Worker: studio-worker-" in meta.raw["parameters"]
        assert meta.request.model == str(model)  # the path as queued here, not the worker's copy
        again = engine.generate(meta.request)  # a local run of the recipe read back
        assert np.array_equal(again.images[0], pixels(item.path))


def test_cancel_stops_the_remote_run_within_one_step(cluster, tiny_models):
    model = tiny_models("sd15", "single-file")
    remote = RemoteEngine(cc.workers(2)[0], "worker 1")
    assert remote.ready(60)
    cancel = threading.Event()
    seen: list[int] = []

    def on_step(p) -> None:
        seen.append(p.step)
        if p.step == 2:
            cancel.set()

    result = remote.generate(request(model, 5, steps=40), on_step=on_step, cancel=cancel)
    assert result.cancelled and result.steps_done <= 3, (result.steps_done, seen)
    assert result.images == []


def test_a_killed_worker_s_job_completes_elsewhere_once(cluster, tiny_models, tmp_path):
    address, _ = cluster
    model = tiny_models("sd15", "single-file")
    killed: dict[str, object] = {}
    lock = threading.Lock()

    def kill_mid_job(engine, job, p) -> None:
        with lock:
            if killed or p.step < 3:
                return
            killed.update(job=job, pid=engine.info["pid"], worker=engine.info["name"])
        os.kill(int(engine.info["pid"]), signal.SIGKILL)

    with JobStore.open(tmp_path / "lib") as store:
        ids = [store.add(request(model, seed, steps=12)).id for seed in (7, 8, 9)]
        pool = ClusterQueue(store, cc.workers(2), address=address, on_step=kill_mid_job)
        outcomes = pool.run(timeout_s=240)
        assert killed, "no worker was killed"
        assert [o.status for o in outcomes].count("requeued") == 1
        assert all(store.get(i).state == "done" for i in ids)
        assert store.get(str(killed["job"])).attempts == 2
        with store.gallery._lock:
            rows = store.gallery.conn.execute("SELECT run_id, count(*) FROM items GROUP BY run_id").fetchall()
        assert sorted(r[0] for r in rows) == sorted(ids) and all(r[1] == 1 for r in rows)  # none made twice
    # Ray restarted the killed worker: it answers again, as a new process
    again = RemoteEngine(ray.get_actor(str(killed["worker"]), namespace=cc.NAMESPACE), "again")
    assert again.ready(120) and again.info["pid"] != killed["pid"]


def test_a_model_no_worker_can_get_fails_the_job_with_a_message(cluster, tiny_models, tmp_path):
    address, _ = cluster
    gone = tmp_path / "gone.safetensors"
    gone.write_bytes(tiny_models("sd15", "single-file").read_bytes())
    with JobStore.open(tmp_path / "lib") as store:
        job = store.add(request(gone, 1))
        gone.unlink()  # not on this machine any more, and in no worker's library
        outcomes = ClusterQueue(store, cc.workers(1), address=address).run(timeout_s=120)
        assert [o.status for o in outcomes] == ["failed"]
        assert "gone.safetensors is not on this machine, so no worker can be sent it" in store.get(job.id).error
    # a worker that takes no transfers, asked for a model it does not have
    other = tmp_path / "other.safetensors"
    other.write_bytes(tiny_models("sd15", "single-file").read_bytes()[:-8] + b"\0" * 8)
    handle = ray.remote(StudioWorker).options(num_cpus=0, max_concurrency=4).remote("strict", False)
    with pytest.raises(ModelNotFound, match="No worker has other.safetensors"):
        RemoteEngine(handle, "strict").generate(request(other, 1))
    ray.kill(handle)


def test_cluster_status_lists_workers_devices_and_models(cluster, capsys):
    address, _ = cluster
    assert main(["cluster", "status", "--cluster", address, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    cc.connect(address)  # status disconnected; the module's tests go on connected
    assert info["nodes"] == 1 and info["cpus"] == 2
    names = [w["name"] for w in info["workers"]]
    assert names[:2] == ["studio-worker-0", "studio-worker-1"]
    assert all(w["device"] == "cpu" and w["host"] for w in info["workers"][:2])
    assert any(w["models"] for w in info["workers"])  # the earlier tests left their model loaded


def test_queue_run_cli_on_the_cluster(cluster, tiny_models, tmp_path, capsys):
    address, _ = cluster
    model = tiny_models("sd15", "single-file")
    lib = tmp_path / "lib"
    for seed in (21, 22):
        assert main(["queue", "add", "--library", str(lib), "--model", str(model), "--prompt", "a star",
                     "--size", "64x64", "--steps", "2", "--seed", str(seed)]) == 0  # fmt: skip
    capsys.readouterr()
    code = main(["queue", "run", "--library", str(lib), "--cluster", address, "--json"])
    out, err = capsys.readouterr()
    cc.connect(address)
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert sorted(x["status"] for x in lines) == ["done", "done"]
    assert all(x["worker"].startswith("studio-worker-") for x in lines)
    assert "warning" not in err  # a loopback address: nothing to warn about


def test_the_window_s_workers_link_runs_jobs_on_a_worker(cluster, tiny_models):
    from studio.qt.generate.workers import WorkersLink

    address, _ = cluster
    link = WorkersLink()
    status = link.apply("cluster", address)
    assert "studio-worker-" in status and address in status, status
    result = link.engine_for(None).generate(request(tiny_models("sd15", "single-file"), 3))
    assert result.status == "done" and result.worker.startswith("studio-worker-")
    assert link.apply("local") == "Jobs run on this machine." and link.engine_for("here") == "here"
    bad = WorkersLink().apply("cluster", "127.0.0.1:9")  # nothing there: said, and jobs stay here
    assert "Cannot use the workers" in bad and "no Ray cluster answers" in bad
    cc.connect(address)


def test_a_lost_cluster_leaves_the_queue_intact(cluster, tiny_models, tmp_path):
    """Last in the module: it kills the module's cluster."""
    address, home = cluster
    model = tiny_models("sd15", "single-file")
    state = json.loads((home / "config" / "cluster.json").read_text())
    cc.connect(address)
    with JobStore.open(tmp_path / "lib") as store:
        ids = [store.add(request(model, seed, steps=30)).id for seed in (1, 2)]

        def lose_it(engine, job, p) -> None:
            if p.step == 2:
                os.killpg(int(state["pid"]), signal.SIGKILL)  # the whole cluster goes, mid-job

        with pytest.raises(ClusterLost, match="the queue is intact"):
            ClusterQueue(store, cc.workers(2), address=address, on_step=lose_it).run(timeout_s=120)
        states = [store.get(i).state for i in ids]
        assert states == ["waiting", "waiting"]  # given back, nothing failed, nothing lost
