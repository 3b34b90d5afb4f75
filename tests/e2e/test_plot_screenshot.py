"""The real window under Xvfb (xcb): Generate ▸ X/Y/Z plot…, CFG 1/4/7 × seed 1/2 on the demo model, the
grid filled in the Plot dialog, screenshotted (`studio-plot.png`, copied to STUDIO_SCREENSHOT_DIR when
that is set). This file is also the driver: the test runs it as a script on the Xvfb display."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).resolve()
XVFB_SCREEN = (1680, 1050)
if __name__ != "__main__":
    from test_window_screenshot import picture_model


def drive(model: str, out_png: str, out_json: str, size: str, steps: str) -> int:
    from drive_window import wait  # this file runs as a script from its own folder

    from studio.qt.app.app import ensure_app
    from studio.qt.app.main_window import MainWindow

    app = ensure_app()

    def factory():
        from studio.engine.engine import Engine

        return Engine(device="cpu")

    w = MainWindow(factory, record_to_gallery=True)
    w.setGeometry(w.screen().availableGeometry())
    w.show()
    p = w.prompt
    p.set_model(model)
    p.prompt.setPlainText("a red circle at the top left on a blue background")
    p.steps.setValue(int(steps))
    p.set_size(int(size), int(size))
    p.seed_lock.setChecked(True)
    if not wait(lambda: w.bridge.device is not None, 120):
        print("engine did not start", file=sys.stderr)
        return 3
    dlg = w.show_plot()
    dlg.set_axes(["cfg=1,4,7", "seed=1,2"])
    geo = w.geometry()
    dlg.setGeometry(geo.x() + 360, geo.y() + 90, 760, 640)
    ids = dlg.queue_cells()
    if len(ids) != 6:
        print(f"cells not queued: {dlg.status.text()}", file=sys.stderr)
        return 4
    if not wait(lambda: dlg.complete, 600):
        print(f"plot not finished: {dlg.status.text()}", file=sys.stderr)
        return 5
    dlg.raise_()
    dlg.activateWindow()
    wait(lambda: False, 0.5)  # let the last cell paint
    shot = w.screen().grabWindow(0)
    shot.save(out_png)
    ratio = shot.devicePixelRatio()
    label = dlg.picture
    pix = label.pixmap()
    tl = label.mapToGlobal(label.rect().topLeft())
    left = (label.width() - pix.width()) // 2  # the label centres its picture
    top = (label.height() - pix.height()) // 2
    info = {
        "platform": app.platformName(),
        "status": dlg.status.text(),
        "grid_rect": [round((tl.x() + left) * ratio), round((tl.y() + top) * ratio), pix.width(), pix.height()],
        "grid": dlg.grid_image.tolist(),
        "made": len(dlg.images),
    }
    Path(out_json).write_text(json.dumps(info))
    w.shutdown()
    return 0


@pytest.mark.timeout(900)  # six runs of the demo model in a real window: slow on a busy 2-core machine
def test_real_window_plot_grid_filled(xvfb_display, tiny_sd15, tmp_path):
    from PIL import Image

    out_png, out_json = tmp_path / "studio-plot.png", tmp_path / "studio-plot.json"
    model, size, _steps = picture_model(tiny_sd15)
    env = dict(os.environ)
    env.update(DISPLAY=xvfb_display, QT_QPA_PLATFORM="xcb", STUDIO_HOME=str(tmp_path / "home"))
    env.pop("WAYLAND_DISPLAY", None)
    proc = subprocess.run(
        [sys.executable, str(HERE), model, str(out_png), str(out_json), str(size), "4"],
        env=env,
        capture_output=True,
        text=True,
        timeout=840,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    dest = os.environ.get("STUDIO_SCREENSHOT_DIR")
    if dest:
        Path(dest).mkdir(parents=True, exist_ok=True)
        shutil.copy2(out_png, Path(dest) / out_png.name)
    info = json.loads(out_json.read_text())
    assert info["platform"] == "xcb" and info["made"] == 6 and info["status"] == "6 of 6 cells made"
    shot = np.asarray(Image.open(out_png).convert("RGB")).astype(np.float32)
    x, y, w, h = info["grid_rect"]
    grid = np.asarray(info["grid"], np.uint8).astype(np.float32)
    assert (h, w) == grid.shape[:2] and w >= 3 * size and h >= 2 * size
    region = shot[y : y + h, x : x + w]
    assert region.shape == grid.shape
    diff = np.abs(region - grid).mean()
    assert diff < 8, f"the dialog does not show the grid (mean abs diff {diff:.1f})"
    assert (grid < 100).sum() > 500  # the labels are drawn: dark text on the white margins


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parents[2]))
    sys.exit(drive(*sys.argv[1:6]))
