"""`studio queue …`: the durable queue from the command line (the window's Queue panel shows the same).

- `add [every studio generate option]` — queue a request (the gallery is where images go; `--out`
  also writes a copy there);
- `list [--all] [--json]` — the jobs not done yet: running, waiting (in run order) and failed
  (`--all`: done and cancelled too). A queue whose jobs all finished lists nothing;
- `run` — run jobs until none wait. Ctrl+C once finishes the current job and stops; twice stops it
  now and gives it back to the queue (it continues from its last kept step next time);
- `cancel ID`, `retry ID` (a failed or cancelled job waits again), `clear [--finished]`.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from datetime import datetime
from pathlib import Path

from studio.core.errors import InvalidRequest


def register(sub: argparse._SubParsersAction) -> None:
    from studio.cli.generate import add_request_options

    q = sub.add_parser("queue", help="the durable queue of generations")
    qsub = q.add_subparsers(dest="queue_command", metavar="QUEUE_COMMAND", required=True)

    def library(p: argparse.ArgumentParser) -> None:
        p.add_argument("--library", type=Path, default=None, help="library folder (default: the studio's)")

    add = qsub.add_parser("add", help="queue a generation (takes every `studio generate` option)")
    add_request_options(add)
    add.add_argument("--out", type=Path, default=None, help="also write the PNG here (batch: name-1.png, …)")
    add.add_argument(
        "--attempts",
        type=int,
        default=3,
        help="how many times the job may be interrupted (the studio stopping) before it fails",
    )
    add.add_argument("--json", action="store_true")
    add.add_argument("--no-gallery", action="store_true", help=argparse.SUPPRESS)
    library(add)
    add.set_defaults(func=_add)

    lst = qsub.add_parser("list", help="jobs not done yet (running, waiting, failed)")
    lst.add_argument("--all", action="store_true", help="done and cancelled jobs too")
    lst.add_argument("--json", action="store_true")
    library(lst)
    lst.set_defaults(func=_list)

    run = qsub.add_parser("run", help="run jobs until none wait (Ctrl+C: finish the current one; twice: stop now)")
    run.add_argument("--json", action="store_true", help="one JSON line per finished job")
    run.add_argument(
        "--keep-every",
        type=float,
        default=10.0,
        metavar="SECONDS",
        help="keep a running job's step this often, so after a crash it continues from there (0: every step)",
    )
    from studio.cli import positive_int
    from studio.cli.cluster import add_cluster_options

    add_cluster_options(run)
    run.add_argument(
        "--workers",
        type=positive_int,
        default=None,
        help="with --cluster: how many workers (default: one per GPU, else CPU)",
    )
    library(run)
    run.set_defaults(func=_run)

    for name, helptext in (
        ("cancel", "cancel a waiting job, or stop a running one"),
        ("retry", "run a failed or cancelled job again"),
    ):
        p = qsub.add_parser(name, help=helptext)
        p.add_argument("id", help="job id (a unique prefix will do)")
        p.add_argument("--json", action="store_true")
        library(p)
        p.set_defaults(func=_cancel if name == "cancel" else _retry)

    clr = qsub.add_parser("clear", help="cancel every waiting job and dismiss the failed ones")
    clr.add_argument("--finished", action="store_true", help="also forget done and cancelled jobs (images stay)")
    library(clr)
    clr.set_defaults(func=_clear)


def _open(args: argparse.Namespace):
    from studio.core.queue import JobStore

    return JobStore.open(args.library)


def _add(args: argparse.Namespace) -> int:
    from studio.cli.generate import build_request, check_files, engine_options
    from studio.core.files import check_writable
    from studio.core.library import check_model, native_size

    if args.no_gallery:
        raise InvalidRequest(
            "a queued job always saves into the gallery (that is how the queue knows it is done)",
            "Use --out to also write a copy where you want it.",
        )
    if args.attempts < 1:
        raise InvalidRequest(f"--attempts must be at least 1, not {args.attempts}")
    if args.out is not None:
        if args.out.suffix.lower() not in (".png", ""):
            raise InvalidRequest(f"--out must be a .png file, not {args.out.name}")
        check_writable(args.out.with_suffix(".png"), "--out")
    check_model(args.model)
    check_files(args)

    def native() -> int:
        size = native_size(args.model)
        if size is None:
            raise InvalidRequest(f"cannot tell the native size of {args.model}", "Give --size WxH.")
        return size

    request = build_request(args, native)
    options = engine_options(args)
    out = str(args.out.with_suffix(".png").expanduser().resolve()) if args.out is not None else ""
    with _open(args) as store:
        job = store.add(request, source="cli", out_path=out, options=options, max_attempts=args.attempts)
    if args.json:
        print(json.dumps(job.to_dict(), ensure_ascii=False))
    else:
        print(f"queued {job.id[:8]}  {_describe(job)}")
    return 0


def _describe(job) -> str:
    try:
        r = job.request
    except Exception:  # noqa: BLE001 — a damaged recipe still lists
        return "(unreadable recipe)"
    prompt = r.prompt if len(r.prompt) <= 48 else r.prompt[:47] + "…"
    batch = f" ×{r.batch_size}" if r.batch_size > 1 else ""
    return f"{prompt!r}  {r.width}×{r.height} {r.steps} steps seed {r.seed}{batch}"


def _list(args: argparse.Namespace) -> int:
    from studio.core.queue import OPEN_STATES

    with _open(args) as store:
        store.recover()
        jobs = store.jobs(None if args.all else OPEN_STATES)
    if args.json:
        print(json.dumps([j.to_dict() for j in jobs], ensure_ascii=False, indent=1))
        return 0
    if not jobs:
        print("nothing queued" if not args.all else "no jobs")
        return 0
    for j in jobs:
        when = datetime.fromtimestamp(j.created_at).strftime("%Y-%m-%d %H:%M")
        extra = ""
        if j.state == "running":
            extra = f"  (by {j.runner}, pid {j.runner_pid})"
        elif j.state == "failed":
            extra = f"  — {j.error}"
        elif j.was_running:
            extra = f"  ({j.error}{f' at step {j.resume_step}' if j.resume_step else ''}; runs again)"
        elif j.state == "done" and j.gallery_ids:
            extra = f"  → {', '.join(i[:8] for i in j.gallery_ids)}"
        print(f"{j.id[:8]}  {j.state:<9} {when}  attempts {j.attempts}/{j.max_attempts}  {_describe(j)}{extra}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from studio.cli.generate import make_engine, preview_writer
    from studio.core.queue import QueueRunner, RunnerId, RunnerLock

    if args.keep_every < 0:
        raise InvalidRequest(f"--keep-every must be 0 or more seconds, not {args.keep_every:g}")
    stop, abandon = threading.Event(), threading.Event()
    outcomes = []
    if args.cluster:
        return _run_on_cluster(args, stop, abandon)
    with _open(args) as store, RunnerLock(store.root, "studio queue run"):
        engines: dict[str, object] = {}

        class _Engines:
            """One engine per set of engine options the jobs ask for (usually one)."""

            def generate(self, request, on_step=None, cancel=None, on_progress=None, branch_latent=None):
                options = runner.current.job.options if runner.current is not None else {}
                key = json.dumps({k: v for k, v in options.items() if k != "previews_dir"}, sort_keys=True)
                if key not in engines:
                    engines.clear()  # one engine (and its models) in memory at a time
                    engines[key] = make_engine(options)
                writer = preview_writer(Path(options["previews_dir"])) if options.get("previews_dir") else None

                def step(p) -> None:
                    if writer is not None:
                        writer(p)
                    if on_step is not None:
                        on_step(p)

                return engines[key].generate(
                    request, on_step=step, cancel=cancel, on_progress=on_progress, branch_latent=branch_latent
                )

        def report(outcome) -> None:
            outcomes.append(outcome)
            _report(args, outcome)

        runner = QueueRunner(
            store, _Engines(), runner=RunnerId.here("studio queue run"), on_outcome=report, keep_every_s=args.keep_every
        )
        restore = _catch_interrupts(stop, abandon)
        try:
            runner.run(stop=stop, abandon=abandon)
        finally:
            restore()
    if abandon.is_set() or stop.is_set():
        print("studio: stopped; the jobs left wait for the next `studio queue run`", file=sys.stderr)
        return 130
    return 1 if any(o.status == "failed" for o in outcomes) else 0


def _report(args: argparse.Namespace, outcome) -> None:
    if args.json:
        print(
            json.dumps(
                {
                    "id": outcome.job_id,
                    "status": outcome.status,
                    "error": outcome.error,
                    "gallery_ids": [i.id for i in outcome.items],
                    "files": [str(i.path) for i in outcome.items],
                    "resumed_from_step": outcome.resumed_from,
                    "worker": outcome.result.worker if outcome.result is not None else "",
                }
            ),
            flush=True,
        )
    else:
        what = ", ".join(str(i.path) for i in outcome.items) or outcome.error
        by = f"  ({outcome.result.worker})" if outcome.result is not None and outcome.result.worker else ""
        print(f"{outcome.job_id[:8]}  {outcome.status}  {what}{by}".rstrip(), flush=True)


def _transfer_progress():
    """A line on stderr as a file goes to a worker (at the start, every quarter, and the end)."""
    shown: dict[str, int] = {}

    def show(engine, job_id: str, p) -> None:
        if not p.stage.startswith("sending "):
            return
        quarter = int(p.fraction * 4)
        if shown.get(p.stage) != quarter:
            shown[p.stage] = quarter
            print(f"studio: {p.stage}: {p.fraction:.0%}", file=sys.stderr, flush=True)

    return show


def _run_on_cluster(args: argparse.Namespace, stop: threading.Event, abandon: threading.Event) -> int:
    """`studio queue run --cluster ADDRESS`: the cluster's workers run the jobs; the images land here."""
    from studio.cli.cluster import connect_from
    from studio.cluster.connect import disconnect, workers
    from studio.cluster.pool import ClusterQueue
    from studio.core.queue import RunnerLock

    with _open(args) as store, RunnerLock(store.root, "studio queue run --cluster"):
        address = connect_from(args)
        try:
            pool = ClusterQueue(
                store,
                workers(args.workers),
                address=address,
                keep_every_s=args.keep_every,
                on_outcome=lambda o: _report(args, o),
                on_progress=_transfer_progress(),
            )
            print(f"studio: running the queue on {len(pool.engines)} workers at {address}", file=sys.stderr, flush=True)
            restore = _catch_interrupts(stop, abandon)
            try:
                outcomes = pool.run(stop=stop, abandon=abandon)
            finally:
                restore()
        finally:
            disconnect()
    if abandon.is_set() or stop.is_set():
        print("studio: stopped; the jobs left wait for the next `studio queue run`", file=sys.stderr)
        return 130
    return 1 if any(o.status == "failed" for o in outcomes) else 0


def _catch_interrupts(stop: threading.Event, abandon: threading.Event):
    """Ctrl+C once: finish the current job, then stop. Twice: stop it now (it goes back to the queue)."""

    def handler(signum, frame) -> None:
        if not stop.is_set():
            stop.set()
            print(
                "studio: finishing the current job, then stopping (Ctrl+C again to stop now)",
                file=sys.stderr,
                flush=True,
            )
        else:
            abandon.set()

    try:
        previous = signal.signal(signal.SIGINT, handler)
    except ValueError:  # not the main thread
        return lambda: None
    return lambda: signal.signal(signal.SIGINT, previous)


def _cancel(args: argparse.Namespace) -> int:
    with _open(args) as store:
        job = store.cancel(args.id)
    print(
        json.dumps(job.to_dict())
        if args.json
        else f"{job.id[:8]}  {'stopping' if job.state == 'running' else job.state}"
    )
    return 0


def _retry(args: argparse.Namespace) -> int:
    with _open(args) as store:
        job = store.retry(args.id)
    print(json.dumps(job.to_dict()) if args.json else f"{job.id[:8]}  {job.state}")
    return 0


def _clear(args: argparse.Namespace) -> int:
    with _open(args) as store:
        n = store.clear(finished=args.finished)
        running = store.counts()["running"]
    left = (
        f"; {running} running job{'s' if running != 1 else ''} left to {'their' if running != 1 else 'its'} runner"
        if running
        else ""
    )
    print(f"cleared {n} job{'s' if n != 1 else ''}{left}")
    return 0
