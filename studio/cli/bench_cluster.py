"""`studio bench cluster`: the durable queue on a local Ray cluster of CPU workers, one killed mid-job.

N workers run M demo-model jobs from a fresh queue; with `--kill-one` one worker's process is
SIGKILLed in the middle of a job (Ray restarts it; the job goes back to the queue and runs again).
Every image is written, with its full metadata, into `--out`. It prints how many jobs completed,
were lost or made twice, whether a worker was killed, the seconds, and jobs per second against
the same jobs on one worker (`--no-baseline` skips that run).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

PROMPTS = (
    "a red circle at the top left on a blue background",
    "a green square in the middle on a white background",
    "a yellow triangle at the bottom right on a black background",
    "a blue star at the top right on a yellow background",
)


def register_bench(bsub: argparse._SubParsersAction) -> None:
    from studio.cli import positive_int

    c = bsub.add_parser("cluster", help="the queue on a local Ray cluster of CPU workers (optionally one killed)")
    c.add_argument("--workers", type=positive_int, default=2)
    c.add_argument("--jobs", type=positive_int, default=6)
    c.add_argument("--kill-one", action="store_true", help="SIGKILL one worker's process in the middle of a job")
    c.add_argument("--out", type=Path, required=True, help="folder for every image (with its metadata)")
    c.add_argument("--model", default="demo")
    c.add_argument("--steps", type=positive_int, default=8)
    c.add_argument("--no-baseline", action="store_true", help="skip the same jobs on one worker")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=bench_cluster)


def _queue(store: Any, model: str, jobs: int, steps: int, out: Path | None) -> list[str]:
    from studio.core.library import native_size
    from studio.core.recommend import for_model
    from studio.core.request import GenerationRequest

    size = native_size(model) or 512
    rec = for_model(model)
    settings = (
        {
            "guidance_scale": rec.cfg,
            "guidance_end": rec.cfg_end,
            "scheduler": rec.scheduler,
            "schedule_type": rec.schedule_type,
        }
        if rec is not None
        else {}
    )
    ids = []
    for i in range(jobs):
        request = GenerationRequest.create(
            model=model,
            prompt=PROMPTS[i % len(PROMPTS)],
            seed=1000 + i,
            steps=steps,
            width=size,
            height=size,
            **settings,
        )
        target = str(out / f"job-{i + 1:03d}.png") if out is not None else ""
        ids.append(store.add(request, source="bench", out_path=target).id)
    return ids


def _run(
    workers: int, jobs: int, model: str, steps: int, out: Path | None, kill_one: bool, baseline: bool
) -> dict[str, Any]:
    from studio.cluster.connect import workers as start_workers
    from studio.cluster.pool import ClusterQueue
    from studio.core.queue import JobStore

    library = Path(tempfile.mkdtemp(prefix="studio-bench-cluster-"))
    killed: dict[str, Any] = {}
    lock = threading.Lock()

    def on_step(engine: Any, job_id: str, preview: Any) -> None:
        with lock:
            if not kill_one or killed or preview.step < max(1, preview.total // 2):
                return
            info = engine.info
            if info.get("host") != socket.gethostname() or not info.get("pid"):
                return
            killed.update(worker=info["name"], pid=info["pid"], job=job_id, step=preview.step)
        os.kill(int(info["pid"]), signal.SIGKILL)  # a worker process dies in the middle of a job

    try:
        with JobStore.open(library) as store:
            ids = _queue(store, model, jobs, steps, out)
            # no resuming from a kept step: the killed job runs again whole, so every image in --out is
            # its recipe's plain run (a local `studio generate` of it gives the same pixels)
            pool = ClusterQueue(store, start_workers(workers), on_step=on_step, keep_every_s=1e9)
            _warm(pool, store.get(ids[0]).request)
            t0 = time.perf_counter()
            outcomes = pool.run()
            seconds = time.perf_counter() - t0
            states = {i: store.get(i).state for i in ids}
            conn = store.gallery.conn
            with store.gallery._lock:
                rows = conn.execute(
                    "SELECT run_id, batch_index, count(*) FROM items WHERE state = 'ok' GROUP BY run_id, batch_index"
                ).fetchall()
            duplicates = sum(int(r[2]) - 1 for r in rows)
            made = sum(1 for r in rows if r[0] in states)
        result: dict[str, Any] = {
            "completed": sum(1 for s in states.values() if s == "done"),
            "lost": sum(1 for s in states.values() if s != "done"),
            "duplicates": duplicates,
            "images": made,
            "worker_killed": bool(killed),
            "killed": killed or None,
            "requeued": sum(1 for o in outcomes if o.status == "requeued"),
            "seconds": round(seconds, 2),
            "jobs_per_s": round(jobs / seconds, 3) if seconds else None,
            "by_worker": _by_worker(outcomes),
        }
        if baseline:
            with JobStore.open(library / "one") as store:
                _queue(store, model, jobs, steps, None)
                one = ClusterQueue(store, start_workers(1), keep_every_s=1e9)
                _warm(one, store.jobs(("waiting",))[0].request)
                t0 = time.perf_counter()
                one.run()
                one_s = time.perf_counter() - t0
            result["one_worker"] = {"seconds": round(one_s, 2), "jobs_per_s": round(jobs / one_s, 3)}
            result["speedup"] = round(one_s / seconds, 2) if seconds else None
        return result
    finally:
        shutil.rmtree(library, ignore_errors=True)


def _warm(pool: Any, request: Any) -> None:
    """Every worker started, with the model sent and loaded, so the timing is of the jobs."""
    for engine in pool.engines:
        engine.ready(timeout=300)
        engine.preload(request)


def _by_worker(outcomes: list[Any]) -> dict[str, int]:
    out: dict[str, int] = {}
    for o in outcomes:
        if o.status == "done" and o.result is not None:
            out[o.result.worker] = out.get(o.result.worker, 0) + 1
    return out


def bench_cluster(args: argparse.Namespace) -> int:
    from studio.cluster.connect import disconnect, start_in_process
    from studio.core.library import check_model

    check_model(args.model)
    out = args.out.expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    start_in_process(cpus=args.workers)
    try:
        result = _run(args.workers, args.jobs, args.model, args.steps, out, args.kill_one, not args.no_baseline)
    finally:
        disconnect()
    result = {"workers": args.workers, "jobs": args.jobs, "model": args.model, "steps": args.steps, **result}
    result["out"] = str(out)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")
    return 0 if result["lost"] == 0 and result["duplicates"] == 0 else 1
