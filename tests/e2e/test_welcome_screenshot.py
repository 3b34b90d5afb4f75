"""The real window under Xvfb with fresh settings: it opens on the welcome page (screenshot), the
Models dialog lists a folder of models with the reason a broken file cannot be used (screenshot),
and choosing the demo model goes to the studio with the demo's recommended settings.

Screenshots are saved in the test's temp dir and, when STUDIO_SCREENSHOT_DIR is set, copied there.
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
ACCENT = np.array([224, 137, 74], np.float32)  # the theme's accent: the "Use the bundled demo model" button


def test_first_run_welcome_page_and_models_dialog(xvfb_display, tiny_models, tmp_path):
    from safetensors.numpy import save_file

    extra = tmp_path / "webui" / "models"
    (extra / "Stable-diffusion").mkdir(parents=True)
    os.symlink(tiny_models("sd15", "single-file"), extra / "Stable-diffusion" / "tiny_sd15.safetensors")
    (extra / "Stable-diffusion" / "half_downloaded.safetensors").write_bytes(b'\x10\x00\x00\x00\x00\x00\x00\x00{"a":')
    (extra / "Lora").mkdir()
    save_file(
        {
            "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": np.zeros(
                (4, 768), np.float16
            )
        },
        str(extra / "Lora" / "watercolor.safetensors"),
    )
    out = tmp_path / "shots"
    out.mkdir()
    env = dict(os.environ)
    env.update(DISPLAY=xvfb_display, QT_QPA_PLATFORM="xcb", STUDIO_HOME=str(tmp_path / "home"))
    env.pop("WAYLAND_DISPLAY", None)
    proc = subprocess.run(
        [sys.executable, str(HERE / "drive_welcome.py"), str(out), str(extra)],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    dest = os.environ.get("STUDIO_SCREENSHOT_DIR")
    if dest:
        Path(dest).mkdir(parents=True, exist_ok=True)
        for png in out.glob("*.png"):
            shutil.copy2(png, Path(dest) / png.name)
    info = json.loads((out / "welcome.json").read_text())
    assert info["platform"] == "xcb" and info["first_run"] and info["welcome_shown"]
    assert not info["canvas_visible_on_welcome"]

    shot = np.asarray(Image.open(out / "studio-welcome.png").convert("RGB")).astype(np.float32)
    x, y, w, h = info["demo_button"]
    button = shot[y + 6 : y + h - 6, x + 6 : x + w - 6].reshape(-1, 3)
    accent_share = (np.abs(button - ACCENT).max(axis=1) < 30).mean()
    assert accent_share > 0.5, f"the demo-model button is not drawn in the accent colour ({accent_share:.2f})"
    assert shot.std() > 10

    # the Models dialog: rows for the folder, the broken file's reason shown
    assert info["rows"] >= 4 and info["details_status"].startswith("✗") and "safetensors" in info["details_status"]
    dlg = np.asarray(Image.open(out / "studio-models-dialog.png").convert("RGB")).astype(np.float32)
    dx, dy, dw, dh = info["dialog"]
    region = dlg[dy : dy + dh, dx : dx + dw]
    assert region.std() > 10 and len(np.unique(region.reshape(-1, 3)[::5], axis=0)) > 50

    # after choosing the demo model: the studio, with the demo's recommended settings
    assert not info["after_choice_welcome_shown"] and info["canvas_visible"]
    assert info["model"] == "demo" and info["steps"] == 20 and info["size"] == 128
