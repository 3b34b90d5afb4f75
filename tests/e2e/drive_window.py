"""Run by test_window_screenshot.py in a subprocess on an Xvfb display (QT_QPA_PLATFORM=xcb):
open the real studio window, generate on the given model, screenshot the whole X screen.

usage: python drive_window.py MODEL OUT_PNG OUT_JSON [SIZE] [STEPS]
"""

from __future__ import annotations

import json
import sys
import time

import numpy as np


def wait(pred, seconds: float) -> bool:
    """Run the Qt event loop until pred() holds or the time is up; returns pred()."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    t = QTimer()
    t.timeout.connect(lambda: pred() and loop.quit())
    t.start(10)
    QTimer.singleShot(int(seconds * 1000), loop.quit)
    loop.exec()
    t.stop()
    return bool(pred())


def rect_of(r, ratio: float) -> list[int]:
    return [round(r.x() * ratio), round(r.y() * ratio), round(r.width() * ratio), round(r.height() * ratio)]


def global_rect(widget, ratio: float) -> list[int] | None:
    """The widget's rectangle on the screen in device pixels (None when it is not shown)."""
    from PySide6.QtCore import QPoint, QRect

    if not widget.isVisible():
        return None
    return rect_of(QRect(widget.mapToGlobal(QPoint(0, 0)), widget.size()), ratio)


def key_controls(w) -> dict:
    """Controls a person must be able to reach, for the small-screen test."""
    p, s, q = w.prompt, w.strip, w.queue
    controls = {
        "Generate": p.generate_button,
        "Cancel": p.cancel_button,
        "model": p.model,
        "prompt": p.prompt,
        "Use settings": s.use_settings,
        "Branch from here": s.branch,
        "step slider": s.slider,
        "queue cancel all": q.cancel_all,
        "progress": w.progress.bar,
        "tabs": w.tabs.tabBar(),
    }
    if w.gallery is not None:
        controls.update({"gallery search": w.gallery.search, "gallery grid": w.gallery.view})
        controls.update({f"gallery {k}": b for k, b in w.gallery.buttons.items()})
    return controls


def spin_button_rects(spin, ratio: float) -> dict:
    """Screen rectangles (device pixels) of a spin box's up and down buttons."""
    from PySide6.QtWidgets import QStyle, QStyleOptionSpinBox

    opt = QStyleOptionSpinBox()
    spin.initStyleOption(opt)
    out = {}
    for name, sub in (("up", QStyle.SubControl.SC_SpinBoxUp), ("down", QStyle.SubControl.SC_SpinBoxDown)):
        r = spin.style().subControlRect(QStyle.ComplexControl.CC_SpinBox, opt, sub, spin)
        r.moveTopLeft(spin.mapToGlobal(r.topLeft()))
        out[name] = rect_of(r, ratio)
    return out


PROMPT = "a large green circle at the top left on a blue background"


def main(model: str, out_png: str, out_json: str, size: str = "64", steps: str = "6") -> int:
    from studio.qt.app.app import ensure_app
    from studio.qt.app.main_window import MainWindow
    from studio.qt.common.images import from_qimage

    app = ensure_app()

    def factory():
        from studio.engine.engine import Engine

        return Engine(device="cpu")

    w = MainWindow(factory, record_to_gallery=True)
    w.setGeometry(w.screen().availableGeometry())  # no window manager under Xvfb: fill the screen ourselves
    w.show()
    w.raise_()
    p = w.prompt
    w._model_chosen(model)  # as picking it in the Models dialog: its recommended CFG and scheduler
    p.prompt.setPlainText(PROMPT)
    p.negative.setPlainText("blurry, noise")
    p.steps.setValue(int(steps))
    p.set_size(int(size), int(size))
    p.seed.setValue(11)
    p.seed_lock.setChecked(True)
    done: dict = {}
    w.controller.runFinished.connect(lambda rid, status: done.update(run=rid, status=status))

    if not wait(lambda: w.bridge.device is not None, 120):
        print("engine did not start", file=sys.stderr)
        return 3
    w.controller.generate()
    if not wait(lambda: "status" in done, 120):
        print("generation did not finish", file=sys.stderr)
        return 4
    rec = w.history.get(done["run"])
    w.strip.select_step(rec.total)  # the finished image on the canvas
    end = time.monotonic() + 1.5  # let the gallery thumbnail and the last paints land
    wait(lambda: time.monotonic() > end, 3)
    screen = w.screen()
    shot = screen.grabWindow(0)  # the real X screen, as a person would see it
    shot.save(out_png)
    r = w.canvas.image_rect()
    top_left = w.canvas.mapToGlobal(r.topLeft().toPoint())
    ratio = shot.devicePixelRatio()
    info = {
        "status": done["status"],
        "steps": rec.kept_steps(),
        "guidance": p.guidance.value(),
        "scheduler": p.scheduler.currentText(),
        "canvas_rect": [
            int(top_left.x() * ratio),
            int(top_left.y() * ratio),
            int(r.width() * ratio),
            int(r.height() * ratio),
        ],
        "image_mean": float(np.mean(rec.images[0])) if rec.images else None,
        "platform": app.platformName(),
        "window": [w.x(), w.y(), w.width(), w.height()],
        "canvas_pixels": from_qimage(w.canvas.image()).tolist() if w.canvas.image() is not None else None,
        "screen": [round(screen.geometry().width() * ratio), round(screen.geometry().height() * ratio)],
        "frame": rect_of(w.frameGeometry(), ratio),
        "controls": {name: global_rect(c, ratio) for name, c in key_controls(w).items()},
        "spin_buttons": spin_button_rects(w.prompt.steps, ratio),
    }
    with open(out_json, "w") as f:
        json.dump(info, f)
    w.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:6]))
