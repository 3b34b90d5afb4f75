"""The Steps strip mid-run in the real window (Xvfb, xcb): with the default preview the canvas shows
the picture forming, not noise, and says what drew it. The screenshot is kept in the test's temp
dir and, when STUDIO_SCREENSHOT_DIR is set, copied there."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from studio.core.paths import demo_model_dir

HERE = Path(__file__).resolve().parent
XVFB_SCREEN = (1680, 1050)  # read by the shared xvfb_display fixture (tests/conftest.py)


def test_steps_strip_mid_run_shows_the_picture_forming(xvfb_display, tmp_path):
    if not (demo_model_dir() / "model_index.json").is_file():
        pytest.skip("the bundled demo model is not in this checkout")
    out_png, out_json = tmp_path / "studio-steps-mid-run.png", tmp_path / "studio-steps-mid-run.json"
    env = dict(os.environ)
    env.update(DISPLAY=xvfb_display, QT_QPA_PLATFORM="xcb", STUDIO_HOME=str(tmp_path / "home"))
    env.pop("WAYLAND_DISPLAY", None)
    proc = subprocess.run(
        [sys.executable, str(HERE / "drive_steps.py"), str(demo_model_dir()), str(out_png), str(out_json), "128"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=HERE,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    if os.environ.get("STUDIO_SCREENSHOT_DIR"):
        Path(os.environ["STUDIO_SCREENSHOT_DIR"]).mkdir(parents=True, exist_ok=True)
        shutil.copy2(out_png, Path(os.environ["STUDIO_SCREENSHOT_DIR"]) / out_png.name)
    info = json.loads(out_json.read_text())
    assert info["platform"] == "xcb" and info["status"] == "done"
    # grabbed mid-run: a step before the last on show, the strip holding the steps made so far
    assert info["status_at_shot"] == "running"
    shown, steps = info["shown_step"], info["steps"]
    assert info["quarter"] <= shown < steps, (shown, steps)
    assert info["thumbs_at_shot"] == list(range(1, len(info["thumbs_at_shot"]) + 1))
    assert "x0 · preview decoder" in info["caption"] and f"step {shown}/{steps}" in info["caption"]

    # the canvas on the screen shows that step's preview
    shot = np.asarray(Image.open(out_png).convert("RGB")).astype(np.float32)
    x, y, w, h = info["canvas_rect"]
    region = shot[y + 4 : y + h - 4, x + 4 : x + w - 4]
    shown_px = np.asarray(info["canvas_pixels"], dtype=np.uint8)
    ref = np.asarray(Image.fromarray(shown_px).resize((region.shape[1], region.shape[0]), Image.BILINEAR))
    assert np.abs(region - ref.astype(np.float32)).mean() < 20

    # …and the forming picture is the finished one's already: much nearer it than the noisy latent
    # the sampler holds at that step (compared at the latent's size, 16×16)
    def small(a):
        return np.asarray(Image.fromarray(np.asarray(a, np.uint8)).resize((16, 16), Image.Resampling.BOX), np.float32)

    final, preview, noisy = small(info["final"]), small(info["shown_preview"]), small(info["shown_noisy"])
    assert np.abs(preview - final).mean() + 15 < np.abs(noisy - final).mean()
    # the strip is on screen below the canvas, its thumbnails drawn (not a flat panel)
    sx, sy, sw, sh = info["strip_rect"]
    assert sy > y and sw > 200
    strip = shot[sy : sy + sh, sx : sx + sw]
    assert strip.std() > 10
