"""The real window under Xvfb (xcb, not offscreen): generate, screenshot, check the picture.

The screenshot is saved in the test's temp dir and, when STUDIO_SCREENSHOT_DIR is set, copied there.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent
XVFB_SCREEN = (1680, 1050)  # read by the shared xvfb_display fixture (tests/conftest.py)


def picture_model(tiny_sd15) -> tuple[str, int, int]:
    """(model, size, steps): the bundled demo model when it is there (a picture worth looking at), else the tiny one."""
    from studio.core.paths import demo_model_dir

    if (demo_model_dir() / "model_index.json").is_file() and not os.environ.get("STUDIO_E2E_TINY"):
        return str(demo_model_dir()), 128, 16
    return str(tiny_sd15), 64, 6


def drive_window(xvfb_display, tmp_path, model, out_png, out_json, size, steps) -> dict:
    """Run drive_window.py on the Xvfb display; return what it reports (copying the shot to
    STUDIO_SCREENSHOT_DIR when that is set)."""
    env = dict(os.environ)
    env.update(DISPLAY=xvfb_display, QT_QPA_PLATFORM="xcb", STUDIO_HOME=str(tmp_path / "home"))
    env.pop("WAYLAND_DISPLAY", None)
    proc = subprocess.run(
        [sys.executable, str(HERE / "drive_window.py"), model, str(out_png), str(out_json), str(size), str(steps)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    dest = os.environ.get("STUDIO_SCREENSHOT_DIR")
    if dest:
        Path(dest).mkdir(parents=True, exist_ok=True)
        shutil.copy2(out_png, Path(dest) / out_png.name)
    info = json.loads(out_json.read_text())
    return info


def test_real_window_generates_and_looks_right(xvfb_display, tiny_sd15, tmp_path):
    out_png, out_json = tmp_path / "studio-window.png", tmp_path / "studio-window.json"
    model, size, steps = picture_model(tiny_sd15)
    info = drive_window(xvfb_display, tmp_path, model, out_png, out_json, size, steps)
    assert info["platform"] == "xcb" and info["status"] == "done" and info["steps"] == list(range(1, steps + 1))

    shot = np.asarray(Image.open(out_png).convert("RGB")).astype(np.float32)
    assert shot.shape[0] >= 600 and shot.shape[1] >= 1000
    # not blank: many colours and real contrast across the screen
    assert shot.std() > 15
    assert len(np.unique(shot.reshape(-1, 3)[::7], axis=0)) > 200

    # the canvas region shows the generated image: compare it with the image itself, scaled the same way
    x, y, w, h = info["canvas_rect"]
    assert w > 200 and h > 200, info["canvas_rect"]
    region = shot[y + 4 : y + h - 4, x + 4 : x + w - 4]
    made = np.asarray(info["canvas_pixels"], dtype=np.uint8)
    ref = np.asarray(Image.fromarray(made).resize((region.shape[1], region.shape[0]), Image.BILINEAR)).astype(
        np.float32
    )
    diff = np.abs(region - ref).mean()
    assert diff < 20, f"the canvas does not show the generated image (mean abs diff {diff:.1f})"
    flat = np.abs(region - region.mean(axis=(0, 1))).mean()
    assert flat > diff + 5, "the canvas region is nearly flat: no image on it"
    # the surroundings are the dark theme, not the image
    assert shot[y - 20 if y >= 20 else 0, x + w // 2].mean() < 60

    if size == 128:  # the demo model, at the settings the window recommends for it: the picture is what was asked
        from studio.core.recommend import table
        from studio.dev import scenes

        demo = table()["demo"]
        assert (info["guidance"], info["scheduler"]) == (demo["cfg"], demo["scheduler"])
        seen = scenes.detect(made)
        main = seen.main()
        assert (
            seen.background == "blue"
            and main is not None
            and (main.colour, main.shape, main.position) == ("green", "circle", "top left")
        ), main
