"""Run by test_prompt_counter_screenshot.py on an Xvfb display (QT_QPA_PLATFORM=xcb): the real window
with a long, weighted prompt in the Prompt panel (its counter in chunks, "N/150"), a sampler with its
schedule type, one generation, and a screenshot of the whole X screen.

usage: python drive_prompt_counter.py MODEL OUT_PNG OUT_JSON SIZE STEPS
"""

from __future__ import annotations

import json
import sys
import time

from drive_window import global_rect, wait

PROMPT = (
    "a (large:1.2) green circle at the top left on a blue background, flat colours, clean edges, "
    "simple shapes, [soft:sharp:0.5] outline, centered composition, high contrast, no texture, "
    "no shadow, plain background, a single object, vector style, minimal, bold colour, smooth, "
    "geometric, BREAK a small red square at the bottom right"
)


def main(model: str, out_png: str, out_json: str, size: str, steps: str) -> int:
    from studio.qt.app.app import ensure_app
    from studio.qt.app.main_window import MainWindow

    app = ensure_app()

    def factory():
        from studio.engine.engine import Engine

        return Engine(device="cpu")

    w = MainWindow(factory, record_to_gallery=True)
    w.setGeometry(w.screen().availableGeometry())
    w.show()
    w.raise_()
    p = w.prompt
    w._model_chosen(model)
    p.prompt.setPlainText(PROMPT)
    p.negative.setPlainText("blurry, (noise:1.3)")
    p.steps.setValue(int(steps))
    p.set_size(int(size), int(size))
    p.set_sampler("DPM++ 2M Karras")
    p.seed.setValue(11)
    p.seed_lock.setChecked(True)
    done: dict = {}
    w.controller.runFinished.connect(lambda rid, status: done.update(run=rid, status=status))
    if not wait(lambda: w.bridge.device is not None and "…" not in p.prompt_tokens.text(), 120):
        print("engine or tokenizer did not start", file=sys.stderr)
        return 3
    w.controller.generate()
    if not wait(lambda: "status" in done, 180):
        print("generation did not finish", file=sys.stderr)
        return 4
    rec = w.history.get(done["run"])
    w.strip.select_step(rec.total)
    end = time.monotonic() + 1.5
    wait(lambda: time.monotonic() > end, 3)
    shot = w.screen().grabWindow(0)
    shot.save(out_png)
    ratio = shot.devicePixelRatio()
    info = {
        "status": done["status"],
        "counter": p.prompt_tokens.text(),
        "counter_state": p.prompt_tokens.property("state"),
        "counter_rect": global_rect(p.prompt_tokens, ratio),
        "negative_counter": p.negative_tokens.text(),
        "sampler": [p.scheduler.currentText(), p.schedule.currentText()],
        "request": rec.request.to_dict() if getattr(rec, "request", None) is not None else None,
        "platform": app.platformName(),
    }
    with open(out_json, "w") as f:
        json.dump(info, f)
    w.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6]))
