"""The dark theme: Fusion with a dark palette, plus `resources/qt/dark.qss` for the details.

The style sheet names its images `icons:NAME.png` (spin-box and combo-box arrows): `apply_dark_theme`
points that prefix at `resources/icons`, so the same sheet works from a checkout and an installed build."""

from __future__ import annotations

import logging

from PySide6.QtCore import QDir
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

from studio.core.paths import resources_dir

log = logging.getLogger(__name__)


def style_sheet() -> str:
    path = resources_dir() / "qt" / "dark.qss"
    try:
        return path.read_text(encoding="utf-8")
    except OSError as exc:  # the palette alone still gives a usable dark window
        log.warning("style sheet missing (%s): %s", path, exc)
        return ""


def icons_search_path() -> None:
    """`url(icons:arrow-up.png)` in the style sheet resolves to resources/icons/arrow-up.png."""
    folder = str(resources_dir() / "icons")
    if folder not in QDir.searchPaths("icons"):
        QDir.addSearchPath("icons", folder)


def apply_dark_theme(app: QApplication) -> None:
    icons_search_path()
    app.setStyle("Fusion")
    p = QPalette()
    c = QColor
    roles = {
        QPalette.ColorRole.Window: c("#1b1d23"),
        QPalette.ColorRole.WindowText: c("#d7dbe3"),
        QPalette.ColorRole.Base: c("#15171c"),
        QPalette.ColorRole.AlternateBase: c("#1c1f25"),
        QPalette.ColorRole.Text: c("#d7dbe3"),
        QPalette.ColorRole.Button: c("#2c3039"),
        QPalette.ColorRole.ButtonText: c("#e6e9ef"),
        QPalette.ColorRole.Highlight: c("#e0894a"),
        QPalette.ColorRole.HighlightedText: c("#15171c"),
        QPalette.ColorRole.ToolTipBase: c("#2a2e37"),
        QPalette.ColorRole.ToolTipText: c("#e6e9ef"),
        QPalette.ColorRole.PlaceholderText: c("#6b7282"),
        QPalette.ColorRole.Link: c("#f1b184"),
    }
    for role, color in roles.items():
        p.setColor(role, color)
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText, QPalette.ColorRole.WindowText):
        p.setColor(QPalette.ColorGroup.Disabled, role, c("#5d6370"))
    app.setPalette(p)
    app.setStyleSheet(style_sheet())
