"""The real window under Xvfb (xcb): an inpaint from the Edit tab, screenshotted mid-run, so the
mask overlay and the live composited preview can be seen as a person sees them.

The screenshot (`studio-edit-inpaint.png`) is saved in the test's temp dir and, when
STUDIO_SCREENSHOT_DIR is set, copied there. This file is also the driver: the test runs it as a
script in a subprocess on the Xvfb display.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve()
if __name__ != "__main__":
    from test_window_screenshot import picture_model


def input_picture(w: int, h: int) -> np.ndarray:
    """What the demo model draws: a red disc on blue, so an inpaint of one corner reads clearly."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.zeros((h, w, 3), np.uint8)
    img[...] = (40, 70, 200)
    img[((x - w * 0.55) ** 2 + (y - h * 0.55) ** 2) < (min(w, h) * 0.28) ** 2] = (215, 40, 40)
    return img


def drive(model: str, out_png: str, out_json: str, size: str, steps: str) -> int:
    from drive_window import wait  # this file runs as a script from its own folder

    from studio.qt.app.app import ensure_app
    from studio.qt.app.main_window import MainWindow

    app = ensure_app()
    size_i, steps_i = int(size), int(steps)

    def factory():
        from studio.engine.engine import Engine

        return Engine(device="cpu")

    w = MainWindow(factory, record_to_gallery=True)
    w.setGeometry(w.screen().availableGeometry())
    w.show()
    w.raise_()
    p = w.prompt
    p.set_model(model)
    p.prompt.setPlainText("a large green circle at the top left on a blue background")
    p.steps.setValue(steps_i)
    p.set_size(size_i, size_i)
    p.seed.setValue(11)
    p.seed_lock.setChecked(True)
    p.scheduler.setCurrentText("Euler")
    w.use_image_as_input(input_picture(size_i, size_i))
    c = w.edit.canvas
    c.set_brush_size(size_i * 0.3)
    c.paint_stroke([(size_i * 0.18, size_i * 0.2), (size_i * 0.4, size_i * 0.22), (size_i * 0.3, size_i * 0.38)])
    p.image_input.blur.setValue(max(4, size_i // 16))
    seen: list[int] = []
    done: dict = {}
    w.controller.stepReceived.connect(lambda rid, s: seen.append(s))
    w.controller.runFinished.connect(lambda rid, status: done.update(run=rid, status=status))

    if not wait(lambda: w.bridge.device is not None, 120):
        print("engine did not start", file=sys.stderr)
        return 3
    (run_id,) = w.controller.generate()
    if not wait(lambda: len(seen) >= steps_i // 2, 120):
        print(f"no previews: {seen}", file=sys.stderr)
        return 4
    end = time.monotonic() + 0.3  # let the newest preview paint
    wait(lambda: time.monotonic() > end, 2)
    shot = w.screen().grabWindow(0)  # mid-run: the mask overlay over the live composited preview
    shot.save(out_png)
    running = "status" not in done
    w.bridge.cancel(run_id)
    if not wait(lambda: "status" in done, 60):
        print("the run did not stop", file=sys.stderr)
        return 5
    r = c.image_rect()
    tl = c.mapToGlobal(r.topLeft().toPoint())
    ratio = shot.devicePixelRatio()
    info = {
        "platform": app.platformName(),
        "steps": seen,
        "running_at_shot": running,
        "status": done["status"],
        "edit_mode": w.edit_mode(),
        "canvas_rect": [int(tl.x() * ratio), int(tl.y() * ratio), int(r.width() * ratio), int(r.height() * ratio)],
        "input": c.image().tolist(),
        "mask": c.mask().tolist(),
        "previews_shown": w.edit.previews_shown,
    }
    Path(out_json).write_text(json.dumps(info))
    w.shutdown()
    return 0


def test_real_window_inpaint_in_progress(xvfb_display, tiny_sd15, tmp_path):
    from PIL import Image

    out_png, out_json = tmp_path / "studio-edit-inpaint.png", tmp_path / "studio-edit-inpaint.json"
    model, size, steps = picture_model(tiny_sd15)
    steps = max(steps, 12)
    env = dict(os.environ)
    env.update(DISPLAY=xvfb_display, QT_QPA_PLATFORM="xcb", STUDIO_HOME=str(tmp_path / "home"))
    env.pop("WAYLAND_DISPLAY", None)
    proc = subprocess.run(
        [sys.executable, str(HERE), model, str(out_png), str(out_json), str(size), str(steps)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    dest = os.environ.get("STUDIO_SCREENSHOT_DIR")
    if dest:
        Path(dest).mkdir(parents=True, exist_ok=True)
        shutil.copy2(out_png, Path(dest) / out_png.name)
    info = json.loads(out_json.read_text())
    assert info["platform"] == "xcb" and info["edit_mode"] and info["running_at_shot"]
    assert info["previews_shown"] >= 1 and len(info["steps"]) >= steps // 2

    shot = np.asarray(Image.open(out_png).convert("RGB")).astype(np.float32)
    x, y, w, h = info["canvas_rect"]
    assert w > 200 and h > 200, info["canvas_rect"]
    region = shot[y + 3 : y + h - 3, x + 3 : x + w - 3]
    inp = np.asarray(info["input"], np.uint8)
    mask = np.asarray(info["mask"], np.uint8)

    def scale(a):
        return np.asarray(Image.fromarray(a).resize((region.shape[1], region.shape[0]), Image.BILINEAR)).astype(
            np.float32
        )

    m = scale(mask)
    inp_s = scale(inp)
    far = m < 1  # well away from the mask: the input shows through the preview
    near = m > 250  # inside the mask: the overlay tints a live preview
    assert far.sum() > 1000 and near.sum() > 500
    assert np.abs(region[far] - inp_s[far]).mean() < 30, "the unmasked part does not show the input"
    # inside the mask: the overlay tints something new, not the input (input under the overlay alone would be this)
    overlay_only = 0.5 * inp_s + 0.5 * np.array([255, 48, 96], np.float32)
    assert np.abs(region[near] - overlay_only[near]).mean() > 6, "no live preview under the mask overlay"
    assert region[near][:, 0].mean() > region[far][:, 0].mean() - 10  # the reddish overlay is on top


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parents[2]))
    sys.exit(drive(*sys.argv[1:6]))
