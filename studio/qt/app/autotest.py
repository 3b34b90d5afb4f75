"""`studio run --autotest-screenshot PATH`: open the real window, generate once with the demo
model, save a screenshot of the screen, exit (0, or 1 on failure or time-out).

Used by the packaged build's test under Xvfb, and handy to check what a user sees.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import QTimer
from PySide6.QtGui import QGuiApplication

log = logging.getLogger(__name__)


def run_autotest(
    screenshot: Path, prompt: str = "a red circle at the top left on a blue background", timeout_s: float = 300.0
) -> int:
    from studio.qt.app.app import ensure_app
    from studio.qt.app.main_window import MainWindow, starter_request

    app = ensure_app()
    window = MainWindow(model="demo")
    window.resize(1600, 900)
    window.show()
    outcome = {"code": 1}

    def start() -> None:
        # the first-start request (the demo model's recommended guidance and sampler), with this prompt
        window.prompt.set_request(starter_request().replace(prompt=prompt, steps=16))
        window.controller.generate()

    def finished(run_id: str, status: str) -> None:
        log.info("autotest run %s ended %s", run_id, status)
        if status == "done":
            outcome["code"] = 0
        QTimer.singleShot(1500, shoot)  # let the final image and the gallery row paint

    def shoot() -> None:
        screen = QGuiApplication.primaryScreen()
        pixmap = screen.grabWindow(0) if screen is not None else window.grab()
        if pixmap.isNull() or pixmap.width() < 10:
            pixmap = window.grab()
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        if not pixmap.save(str(screenshot)):
            outcome["code"] = 1
        app.quit()

    def give_up() -> None:
        log.error("autotest: no finished run after %.0f s", timeout_s)
        outcome["code"] = 1
        shoot()

    window.controller.runFinished.connect(finished)
    QTimer.singleShot(1500, start)
    QTimer.singleShot(int(timeout_s * 1000), give_up)
    app.exec()
    window.shutdown()
    return outcome["code"]
