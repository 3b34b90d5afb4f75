"""Run by test_steps_screenshot.py on an Xvfb display (QT_QPA_PLATFORM=xcb): the real window
generates on the given model at its recommended settings and default preview, and the whole X
screen is grabbed while the run is still going, once a quarter of its steps have come in (the Steps
strip and the canvas showing the picture forming). Reports what was on show then, and the final picture.

usage: python drive_steps.py MODEL OUT_PNG OUT_JSON SIZE
"""

from __future__ import annotations

import json
import sys
import time

from drive_window import PROMPT, global_rect, wait


def noisy_view(model: str, latent):
    """What the sampler held at that step, through the model's latent→RGB factors (the noisy view)."""
    from pathlib import Path

    import torch

    from studio.engine.previews import latent_rgb_factors, latent_to_rgb

    factors, bias = latent_rgb_factors("sd1", Path(model), channels=int(latent.shape[1]))
    return latent_to_rgb(torch.from_numpy(latent), factors, bias)


def main(model: str, out_png: str, out_json: str, size: str = "128") -> int:
    from studio.qt.app.app import ensure_app
    from studio.qt.app.main_window import MainWindow
    from studio.qt.common.images import from_qimage

    app = ensure_app()

    def factory():
        from studio.engine.engine import Engine

        engine = Engine(device="cpu")
        plain = engine.generate

        def generate(request, on_step=None, **kw):  # each step held a moment (on the engine's thread),
            def slowly(preview):  # so the screen is grabbed mid-run however fast this machine is
                if on_step is not None:
                    on_step(preview)
                time.sleep(0.25)

            return plain(request, on_step=slowly, **kw)

        engine.generate = generate
        return engine

    w = MainWindow(factory, record_to_gallery=False)
    w.setGeometry(w.screen().availableGeometry())
    w.show()
    w.raise_()
    p = w.prompt
    w._model_chosen(model)  # its recommended steps, CFG and scheduler; the default preview
    p.prompt.setPlainText(PROMPT)
    p.set_size(int(size), int(size))
    p.seed.setValue(11)
    p.seed_lock.setChecked(True)
    steps = p.steps.value()
    quarter = max(1, round(steps / 4))
    seen: list[int] = []
    done: dict = {}
    w.controller.stepReceived.connect(lambda rid, step: seen.append(step))
    w.controller.runFinished.connect(lambda rid, status: done.update(run=rid, status=status))
    if not wait(lambda: w.bridge.device is not None, 120):
        print("engine did not start", file=sys.stderr)
        return 3
    (run_id,) = w.controller.generate()
    if not wait(lambda: len(seen) >= quarter, 120):
        print("no steps came", file=sys.stderr)
        return 4
    end = time.monotonic() + 0.3  # let the strip's thumbnail and the canvas paint
    wait(lambda: time.monotonic() > end, 1)
    rec = w.history.get(run_id)
    status_at_shot = rec.status
    shown = w.strip.selected_step()
    canvas_pixels = from_qimage(w.canvas.image()) if w.canvas.image() is not None else None
    caption = w.canvas.caption
    shot = w.screen().grabWindow(0)
    shot.save(out_png)
    ratio = shot.devicePixelRatio()
    r = w.canvas.image_rect()
    top_left = w.canvas.mapToGlobal(r.topLeft().toPoint())
    canvas_rect = [
        int(top_left.x() * ratio),
        int(top_left.y() * ratio),
        int(r.width() * ratio),
        int(r.height() * ratio),
    ]
    strip_rect = global_rect(w.strip.thumbs, ratio)
    thumbs_at_shot = w.strip.kept_steps()
    if not wait(lambda: "status" in done, 180):
        print("generation did not finish", file=sys.stderr)
        return 5
    info = {
        "status_at_shot": status_at_shot,
        "status": done["status"],
        "steps": steps,
        "quarter": quarter,
        "shown_step": shown,
        "thumbs_at_shot": thumbs_at_shot,
        "caption": caption,
        "canvas_rect": canvas_rect,
        "strip_rect": strip_rect,
        "canvas_pixels": canvas_pixels.tolist() if canvas_pixels is not None else None,
        "shown_preview": rec.steps[shown].image.tolist() if shown in rec.steps else None,
        "shown_noisy": noisy_view(model, rec.steps[shown].latent).tolist() if shown in rec.steps else None,
        "final": rec.images[0].tolist() if rec.images else None,
        "platform": app.platformName(),
    }
    with open(out_json, "w") as f:
        json.dump(info, f)
    w.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
