"""The real window on a 1366×768 screen (a common laptop) under Xvfb: it fits, every key control is
on the screen, and the spin boxes show their arrows, as seen in the screenshot itself.

The screenshot (`studio-window-1366x768.png`) is saved in the test's temp dir and, when
STUDIO_SCREENSHOT_DIR is set, copied there.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from test_window_screenshot import drive_window, picture_model

XVFB_SCREEN = (1366, 768)  # read by the shared xvfb_display fixture (tests/conftest.py)


def inside(rect, width: int, height: int) -> bool:
    x, y, w, h = rect
    return x >= 0 and y >= 0 and x + w <= width and y + h <= height and w > 0 and h > 0


def test_real_window_fits_a_1366x768_screen(xvfb_display, tiny_sd15, tmp_path):
    out_png, out_json = tmp_path / "studio-window-1366x768.png", tmp_path / "studio-window-1366x768.json"
    model, size, steps = picture_model(tiny_sd15)
    info = drive_window(xvfb_display, tmp_path, model, out_png, out_json, size, steps)
    assert info["platform"] == "xcb" and info["status"] == "done"
    sw, sh = info["screen"]
    assert (sw, sh) == XVFB_SCREEN
    assert inside(info["frame"], sw, sh), f"the window {info['frame']} runs off the {sw}×{sh} screen"
    off = {name: r for name, r in info["controls"].items() if r is None or not inside(r, sw, sh)}
    assert not off, f"controls hidden or off the screen: {off}"

    shot = np.asarray(Image.open(out_png).convert("RGB")).astype(np.float32)
    assert shot.shape[:2] == (sh, sw)
    grey = shot @ np.array([0.299, 0.587, 0.114], np.float32)
    for name, (x, y, w, h) in info["spin_buttons"].items():  # the Steps box: an arrow on each button
        button = grey[y : y + h, x : x + w]
        assert button.size and button.max() - np.median(button) > 90, f"the spin box's {name} arrow is not visible"
