"""What the parts of the window built beside the main window (the Models menu's ModelSetup, the
plugin docks) may use of it: this typed surface and nothing else. The main window satisfies it;
the parts never import it, so they cannot reach its other members."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QDockWidget, QMenu, QMenuBar, QStackedWidget, QStatusBar, QWidget

from studio.qt.common.session import Session
from studio.qt.common.widgets import ProgressGroup


class StudioWindow(Protocol):
    session: Session  # the draft, the chosen model, the queue, the history, messages
    bridge: Any  # generate.engine_worker.EngineBridge: the engine thread (configure, preload, device)
    controller: Any  # generate.controller.RunController: runStarted
    settings: Any  # app.settings.StudioSettings: window.ini
    progress: ProgressGroup
    central_stack: QStackedWidget  # the welcome page is one of its pages
    prompt_dock: QDockWidget  # plugin panels are docked as tabs beside it

    def edit_image(self) -> Any: ...  # the Edit canvas's picture, or None when it is empty
    def device_text(self) -> str: ...
    def add_menu_action(
        self, menu: QMenu, text: str, slot: Callable[[], Any], shortcut: Any = None, tip: str = ""
    ) -> QAction: ...
    def window(self) -> QWidget: ...  # the main window itself, as the parent of dialogs
    def menuBar(self) -> QMenuBar: ...  # noqa: N802 — Qt's names
    def statusBar(self) -> QStatusBar: ...  # noqa: N802
    def addAction(self, action: QAction) -> None: ...  # noqa: N802
    def addDockWidget(self, area: Qt.DockWidgetArea, dock: QDockWidget) -> None: ...  # noqa: N802
    def tabifyDockWidget(self, first: QDockWidget, second: QDockWidget) -> None: ...  # noqa: N802
