"""`studio bench ui --json`: how smooth the real window stays while it generates.

A 1 ms heartbeat timer on the GUI thread records the gap between its ticks while the window runs a
generation on the engine thread (offscreen unless a display is asked for). Reported:

- `stall_p99_ms`, `stall_max_ms`: 99th percentile and worst gap between heartbeats (targets < 16, < 50);
- `cancel_steps`: steps the engine finished after Cancel was pressed (target ≤ 1);
- `preview_fps`: canvas repaints per second during the run (bounded by the step rate and the screen).
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


def register_bench(sub: argparse._SubParsersAction) -> None:
    u = sub.add_parser("ui", help="GUI-thread stalls, cancel latency and preview rate of the real window")
    u.add_argument("--steps", type=int, default=16, help="steps of the measured run")
    u.add_argument("--size", type=int, default=64, help="image size (the tiny model is native at 64)")
    u.add_argument("--model", default=None, help="model to run (default: a tiny random SD1.5 pipeline made on the fly)")
    u.add_argument("--device", default="cpu")
    u.add_argument("--cancel-after", type=int, default=3, help="press Cancel once this step is shown")
    u.add_argument("--display", action="store_true", help="use the real display instead of offscreen")
    u.add_argument("--json", action="store_true")
    u.set_defaults(func=bench_ui)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    idx = min(len(s) - 1, max(0, int(round(q / 100.0 * (len(s) - 1)))))
    return s[idx]


def bench_ui(args: argparse.Namespace) -> int:
    if not args.display:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
    with tempfile.TemporaryDirectory(prefix="studio-bench-ui-") as tmp:
        os.environ["STUDIO_HOME"] = str(Path(tmp) / "home")  # never touch the user's settings or gallery
        result = _run(args, Path(tmp))
    if args.json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")
    return 0


def wait_until(pred, timeout_s: float) -> None:
    """Run the window's event loop until pred() holds (polled every 5 ms), or raise after timeout_s."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    poll = QTimer()
    poll.timeout.connect(lambda: loop.quit() if pred() else None)
    poll.start(5)
    QTimer.singleShot(int(timeout_s * 1000), loop.quit)
    loop.exec()
    poll.stop()
    if not pred():
        raise TimeoutError("the window did not get there in time")


def _run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    from PySide6.QtCore import Qt, QTimer

    from studio.qt.app.app import ensure_app

    app = ensure_app()
    model = args.model
    if model is None:
        from studio.testing import save_tiny_model

        model = str(save_tiny_model(tmp / "tiny", "sd15"))
    from studio.qt.app.main_window import MainWindow

    device = args.device

    def factory():
        from studio.engine.engine import Engine

        return Engine(device=device)

    window = MainWindow(factory, record_to_gallery=False)
    window.show()
    c = window.controller

    def wait(pred, timeout_s: float = 300.0) -> None:
        wait_until(pred, timeout_s)

    def run(steps: int, cancel_after: int | None = None) -> dict:
        p = window.prompt
        p.set_model(model)
        p.prompt.setPlainText("a red circle at the top left on a blue background")
        p.steps.setValue(steps)
        p.set_size(args.size, args.size)
        p.seed_lock.setChecked(True)
        out: dict[str, Any] = {"finished": None}

        def finished(jid, result, items):
            out["finished"] = result

        def step(rid, k):
            if cancel_after is not None and k >= cancel_after and "cancel_at" not in out:
                out["cancel_at"] = k
                window.cancel_action.trigger()

        window.bridge.jobFinished.connect(finished)
        c.stepReceived.connect(step)
        try:
            c.generate()
            wait(lambda: out["finished"] is not None or (window.bridge.current is None and not window.bridge.pending))
        finally:
            window.bridge.jobFinished.disconnect(finished)
            c.stepReceived.disconnect(step)
        return out

    try:
        wait(lambda: window.bridge.device is not None)
        run(2)  # warm-up: model load, first-call costs
        ticks: list[float] = []
        beat = QTimer()
        beat.setTimerType(Qt.TimerType.PreciseTimer)
        beat.timeout.connect(lambda: ticks.append(time.perf_counter()))
        frames0 = window.canvas.frames_painted
        deliveries0 = window.bridge.deliveries
        beat.start(1)
        t0 = time.perf_counter()
        measured = run(args.steps)
        dt = time.perf_counter() - t0
        beat.stop()
        frames = window.canvas.frames_painted - frames0
        deliveries = window.bridge.deliveries - deliveries0
        gaps = [(b - a) * 1000.0 for a, b in zip(ticks, ticks[1:], strict=False)]
        cancelled = run(max(args.steps, args.cancel_after + 10), cancel_after=args.cancel_after)
        res = cancelled["finished"]
        asked = res.cancel_requested_at_step if res is not None else None
        cancel_steps = (res.steps_done - asked) if res is not None and asked is not None else None
        result = measured["finished"]
        return {
            "stall_p99_ms": round(_percentile(gaps, 99), 2),
            "stall_max_ms": round(max(gaps) if gaps else 0.0, 2),
            "stall_median_ms": round(statistics.median(gaps), 2) if gaps else 0.0,
            "cancel_steps": cancel_steps,
            "preview_fps": round(frames / dt, 2) if dt > 0 else 0.0,
            "step_deliveries": deliveries,
            "steps": args.steps,
            "it_s": round(args.steps / result.timings["sample_s"], 2)
            if result is not None and result.timings.get("sample_s")
            else None,
            "run_s": round(dt, 3),
            "heartbeats": len(ticks),
            "device": (window.bridge.device or {}).get("device"),
            "platform": app.platformName(),
        }
    finally:
        window.shutdown()
        window.deleteLater()
        app.processEvents()
