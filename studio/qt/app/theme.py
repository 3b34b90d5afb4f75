"""The theme: Fusion with the palette of the colour scheme in use, plus `resources/qt/studio.qss`.

The scheme follows the system's (Qt's colour-scheme hint, followed live) unless the user chose dark
or light (View ▸ Theme, saved in window.ini); a system that says nothing gets the dark one. The
style sheet is a template: `$name` colours come from `studio.qt.common.style` (DARK / LIGHT) and
`${pt_…}pt` sizes are relative to the system font size, which is never overridden. Images in it are
`icons:NAME.png` (spin-box and combo-box arrows), looked up in `resources/icons/light` first under
the light scheme, then `resources/icons`, so the same sheet works from a checkout and a build."""

from __future__ import annotations

import logging
from string import Template

from PySide6.QtCore import QDir, Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication

from studio.core.paths import resources_dir
from studio.qt.common import style

log = logging.getLogger(__name__)
CHOICES = ("system", "dark", "light")
THEME_KEY = "view/theme"  # window.ini
# Type sizes in the sheet, relative to the system font (the sheet once fixed 10 pt and these at 8 … 20 pt).
SIZES = {"pt_section": 0.85, "pt_small": 0.9, "pt_large": 1.1, "pt_title": 1.2, "pt_icon": 1.4, "pt_headline": 2.0}


def style_sheet() -> str:
    """The style sheet for the scheme in use, at the system's font size."""
    path = resources_dir() / "qt" / "studio.qss"
    try:
        template = Template(path.read_text(encoding="utf-8"))
    except OSError as exc:  # the palette alone still gives a usable window
        log.warning("style sheet missing (%s): %s", path, exc)
        return ""
    values: dict[str, object] = dict(style.SCHEMES[style.scheme()])
    values.update({name: f"{style.font_pt(scale):g}" for name, scale in SIZES.items()})
    return template.safe_substitute(values)


def icons_search_path() -> None:
    """`url(icons:arrow-up.png)` resolves to resources/icons(/light)/arrow-up.png."""
    folders = [str(resources_dir() / "icons")]
    if style.scheme() == "light":
        folders.insert(0, str(resources_dir() / "icons" / "light"))
    QDir.setSearchPaths("icons", folders)


def system_scheme(app: QApplication) -> str:
    return "light" if app.styleHints().colorScheme() == Qt.ColorScheme.Light else "dark"


def palette() -> QPalette:
    c = style.qcolour
    p = QPalette()
    roles = {
        QPalette.ColorRole.Window: c("window"),
        QPalette.ColorRole.WindowText: c("text"),
        QPalette.ColorRole.Base: c("base"),
        QPalette.ColorRole.AlternateBase: c("alt_base"),
        QPalette.ColorRole.Text: c("text"),
        QPalette.ColorRole.Button: c("raised"),
        QPalette.ColorRole.ButtonText: c("text_strong"),
        QPalette.ColorRole.Highlight: c("accent"),
        QPalette.ColorRole.HighlightedText: c("accent_text"),
        QPalette.ColorRole.ToolTipBase: c("tooltip"),
        QPalette.ColorRole.ToolTipText: c("text_strong"),
        QPalette.ColorRole.PlaceholderText: c("placeholder"),
        QPalette.ColorRole.Link: c("accent_soft"),
    }
    for role, color in roles.items():
        p.setColor(role, color)
    for role in (QPalette.ColorRole.Text, QPalette.ColorRole.ButtonText, QPalette.ColorRole.WindowText):
        p.setColor(QPalette.ColorGroup.Disabled, role, QColor(style.colour("text_disabled")))
    return p


def apply_theme(app: QApplication, choice: str = "system") -> str:
    """Theme the application: `choice` is "system", "dark" or "light". Returns the scheme applied."""
    if choice not in CHOICES:
        choice = "system"
    scheme = system_scheme(app) if choice == "system" else choice
    style.set_scheme(scheme)
    icons_search_path()
    app.setStyle("Fusion")
    app.setPalette(palette())
    app.setStyleSheet(style_sheet())
    app.setProperty("studio_theme_choice", choice)
    if not app.property("studio_follows_system"):  # once per application: re-theme when the system switches
        app.setProperty("studio_follows_system", True)
        app.styleHints().colorSchemeChanged.connect(lambda _scheme: _system_changed(app))
    return scheme


def _system_changed(app: QApplication) -> None:
    if app.property("studio_theme_choice") == "system":
        apply_theme(app, "system")


def apply_dark_theme(app: QApplication) -> None:
    """The dark scheme whatever the system says (kept for scripts that call it)."""
    apply_theme(app, "dark")
