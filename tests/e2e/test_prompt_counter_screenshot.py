"""The Prompt panel's token counter in the real window (Xvfb, xcb): a prompt past 75 tokens shows its
chunks as A1111 does ("N/150"), highlighted, and generates; the screenshot is kept to look at
(copied to STUDIO_SCREENSHOT_DIR when set)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from test_window_screenshot import picture_model

HERE = Path(__file__).resolve().parent
XVFB_SCREEN = (1680, 1050)


def test_counter_shows_chunks_in_the_real_window(xvfb_display, tiny_sd15, tmp_path):
    out_png, out_json = tmp_path / "studio-prompt-counter.png", tmp_path / "studio-prompt-counter.json"
    model, size, steps = picture_model(tiny_sd15)
    env = dict(os.environ, DISPLAY=xvfb_display, QT_QPA_PLATFORM="xcb", STUDIO_HOME=str(tmp_path / "home"))
    env.pop("WAYLAND_DISPLAY", None)
    args = [model, str(out_png), str(out_json), str(size), str(steps)]
    proc = subprocess.run(
        [sys.executable, str(HERE / "drive_prompt_counter.py"), *args],
        env=env, capture_output=True, text=True, timeout=240, cwd=HERE,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    if os.environ.get("STUDIO_SCREENSHOT_DIR"):
        Path(os.environ["STUDIO_SCREENSHOT_DIR"]).mkdir(parents=True, exist_ok=True)
        shutil.copy2(out_png, Path(os.environ["STUDIO_SCREENSHOT_DIR"]) / out_png.name)
    info = json.loads(out_json.read_text())
    assert info["platform"] == "xcb" and info["status"] == "done"
    used, held = map(int, info["counter"].split("/"))
    assert held == 150 and 75 < used <= 150 and info["counter_state"] == "chunks"
    assert info["negative_counter"] == "3/75"  # "blurry", ",", "noise": the weight is not a token
    assert info["sampler"] == ["DPM++ 2M", "Karras"]
    # the counter is drawn in the chunk colour (#8fb8e8) where the window says it is
    shot = np.asarray(Image.open(out_png).convert("RGB")).astype(int)
    x, y, w, h = info["counter_rect"]
    patch = shot[y : y + h, x : x + w].reshape(-1, 3)
    assert (np.abs(patch - [0x8F, 0xB8, 0xE8]).sum(axis=1) < 30).mean() > 0.3
