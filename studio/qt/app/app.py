"""`studio run`: create the application, theme it, open the window on the default model."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from PySide6.QtCore import QTimer
from PySide6.QtWidgets import QApplication

from studio.qt.app.theme import THEME_KEY, apply_theme
from studio.qt.common import a11y

GIL_SWITCH_INTERVAL_S = 0.002  # the GUI thread gets the GIL back sooner from Python code on the engine thread


def ensure_app(argv: list[str] | None = None) -> QApplication:
    sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_INTERVAL_S))
    app = QApplication.instance()
    if app is None:
        app = QApplication(argv if argv is not None else sys.argv[:1])
        app.setApplicationName("Studio")
        app.setOrganizationName("studio")
        app.setApplicationDisplayName("Studio")
    assert isinstance(app, QApplication), "a QGuiApplication without widgets is already running"
    apply_theme(app, theme_choice())
    a11y.install(app)  # every control gets an accessible name (its label or tooltip) as Qt polishes it
    return app


def theme_choice() -> str:
    """View ▸ Theme as saved in window.ini: "system" (the default), "dark" or "light"."""
    from studio.qt.app.settings import StudioSettings

    return str(StudioSettings().value(THEME_KEY, "system") or "system")


def run_app(args: argparse.Namespace | None = None) -> int:
    """Open the window and run the event loop; returns the exit status."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    app = ensure_app()
    from studio.qt.app.main_window import MainWindow

    model = getattr(args, "model", None) if args is not None else None
    window = MainWindow(model=model)
    if model is None:  # no model asked for: a first start opens on the welcome page
        window.model_setup.welcome_if_first_run()
    window.show()
    _quit_on_signals(app)
    logging.getLogger(__name__).info("window open")
    code = app.exec()
    window.shutdown()  # saves the layout and the last request, stops the engine thread
    return int(code)


def _quit_on_signals(app: QApplication) -> None:
    """Ctrl+C / SIGTERM close the window the normal way (settings saved, engine thread stopped)."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            signal.signal(sig, lambda *_: app.quit())
        except ValueError:  # not the main thread (embedded use): leave signals alone
            return
    tick = QTimer(app)  # Python handles signals only when it runs: wake it now and then
    tick.timeout.connect(lambda: None)
    tick.start(250)
