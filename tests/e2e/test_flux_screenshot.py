"""The real window under Xvfb with a FLUX.1 dev transformer-only GGUF kept as ComfyUI keeps it:
the Prompt panel says why there is no negative prompt, labels the slider "Guidance", counts CLIP and
T5 tokens and finds the text encoders and VAE; it generates; the Models dialog names every file.

Screenshots are saved in the test's temp dir and, when STUDIO_SCREENSHOT_DIR is set, copied there."""

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
XVFB_SCREEN = (1680, 1050)


def test_flux_in_the_real_window(xvfb_display, tiny_flow, tmp_path):
    files = tiny_flow("flux-dev", "gguf")
    root = files.model.parent.parent  # …/models
    out = tmp_path / "shots"
    out.mkdir()
    env = dict(os.environ)
    env.update(DISPLAY=xvfb_display, QT_QPA_PLATFORM="xcb", STUDIO_HOME=str(tmp_path / "home"))
    env.pop("WAYLAND_DISPLAY", None)
    proc = subprocess.run(
        [sys.executable, str(HERE / "drive_flux.py"), str(root), str(files.model), str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    dest = os.environ.get("STUDIO_SCREENSHOT_DIR")
    if dest:
        Path(dest).mkdir(parents=True, exist_ok=True)
        for png in out.glob("*.png"):
            shutil.copy2(png, Path(dest) / png.name)
    info = json.loads((out / "flux.json").read_text())
    assert info["platform"] == "xcb" and info["status"] == "done" and info["steps"] == [1, 2, 3, 4]
    assert not info["negative_enabled"] and "no negative prompt" in info["negative_note"]
    assert info["negative_note_rect"] is not None  # shown on screen
    assert info["guidance_label"] == "Guidance" and info["guidance"] == 3.5 and info["scheduler"] == "Euler"
    assert "CLIP" in info["tokens"] and "T5" in info["tokens"]
    assert "clip_l.safetensors" in info["encoders_text"] and "t5xxl.safetensors" in info["encoders_text"]
    assert "ae.safetensors" in info["encoders_text"] and info["encoders_rect"] is not None
    rows = info["rows"]
    assert rows["tiny-flux-dev-Q8_0.gguf"] == ["checkpoint", "FLUX.1 (dev)", "Q8_0"]
    assert rows["clip_l.safetensors"][0] == "text encoder" and rows["t5xxl.safetensors"][0] == "text encoder"
    assert rows["ae.safetensors"][:2] == ["VAE", "16-channel: FLUX / SD 3"]
    assert "transformer only" in info["details_status"] or info["details_status"]
    for name in ("studio-flux.png", "studio-flux-models.png"):
        shot = np.asarray(Image.open(out / name).convert("RGB")).astype(np.float32)
        assert shot.shape[0] >= 600 and shot.std() > 10
