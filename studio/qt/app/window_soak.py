"""`studio bench soak-window --runs 100 --json`: the real window's memory over a long session.

The window (offscreen unless asked) generates `--runs` times the way a user does — the Prompt
panel's request, Generate — through its durable queue into a temporary library, with step previews
kept in the run history up to `--history-mb` (the window's own budget, set lower here so it fills
during the warm-up). The process's RSS is read after each run; `rss_growth_pct` is from the end of
the warm-up to the end, as `studio bench soak` measures the engine alone. Target ≤ 5 %.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

TARGET_PCT = 5.0


def register_bench(sub: argparse._SubParsersAction) -> None:
    from studio.cli import positive_int

    s = sub.add_parser("soak-window", help="the real window's memory over N runs (Generate, queue, gallery)")
    s.add_argument("--runs", type=positive_int, default=100)
    s.add_argument("--warmup", type=positive_int, default=None, help="runs before growth is measured (default 20 %%)")
    s.add_argument("--model", default="demo")
    s.add_argument("--steps", type=positive_int, default=8)
    s.add_argument("--history-mb", type=positive_int, default=32, help="the run history's budget for kept steps")
    s.add_argument("--device", default=None)
    s.add_argument("--display", action="store_true", help="use the real display instead of offscreen")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=bench_soak_window)


def bench_soak_window(args: argparse.Namespace) -> int:
    if not args.display:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    with tempfile.TemporaryDirectory(prefix="studio-soak-window-") as tmp:
        os.environ["STUDIO_HOME"] = str(Path(tmp) / "home")  # never the user's settings or gallery
        result = _run(args)
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")
    return 0


def _run(args: argparse.Namespace) -> dict[str, Any]:
    import psutil

    from studio.qt.app.app import ensure_app
    from studio.qt.app.main_window import MainWindow
    from studio.qt.app.window_bench import wait_until

    ensure_app()
    device = args.device

    def factory():
        from studio.engine.engine import Engine

        return Engine(device=device)

    window = MainWindow(factory, history_budget_mb=args.history_mb, with_gallery=True, model=args.model)
    window.show()

    def wait(pred, timeout_s: float = 600.0) -> None:
        wait_until(pred, timeout_s)

    done: list[str] = []
    window.controller.runFinished.connect(lambda rid, status: done.append(status))
    samples: list[float] = []
    t0 = time.perf_counter()
    try:
        wait(lambda: window.bridge.device is not None and window.queue_setup.timer.isActive())
        p = window.prompt
        p.steps.setValue(args.steps)
        for i in range(args.runs):
            p.prompt.setPlainText(("a red circle", "a green star", "a blue square")[i % 3] + " on a yellow background")
            p.seed.setValue(i)
            p.seed_lock.setChecked(True)
            window.controller.generate()
            wait(lambda n=i: len(done) > n)
            samples.append(psutil.Process().memory_info().rss / 2**20)
    finally:
        window.shutdown()
        window.close()
    warmup = args.warmup or max(5, args.runs // 5)
    warmup = min(warmup, max(1, args.runs // 2))
    tail = max(3, min(10, (args.runs - warmup) // 4 or 1))
    base = statistics.median(samples[max(0, warmup - tail) : warmup] or samples[:1])
    end = statistics.median(samples[-tail:])
    return {
        "runs": args.runs,
        "done": done.count("done"),
        "warmup": warmup,
        "model": args.model,
        "steps": args.steps,
        "history_mb": args.history_mb,
        "rss_mb_after_warmup": round(base, 1),
        "rss_mb_end": round(end, 1),
        "rss_mb_max": round(max(samples), 1),
        "rss_growth_pct": round((end - base) / base * 100.0, 2),
        "seconds": round(time.perf_counter() - t0, 1),
        "target_pct": TARGET_PCT,
        "ok": (end - base) / base * 100.0 <= TARGET_PCT and done.count("done") == args.runs,
    }
