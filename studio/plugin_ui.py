"""The window side of the plugin API: what a plugin's `panel()` widget may use from the studio.

Qt (PySide6) widgets only; imported by plugin panels, never by the engine. First-party panels
(`studio_plugins.lora.panel`, `studio_plugins.controlnet.panel`) use only this, `studio.plugin_api`
and `studio.core`, as a third-party panel would.

- `MessageBar` — the studio's inline message (error / warning / info, with a hint);
- `to_qimage(array)` — an (H, W, 3) uint8 array as a QImage;
- `plugin_settings(settings=None)` — the QSettings plugins keep their choices in
  (`config_dir()/plugins.ini`), or the one given (tests);
- `colour(name)` — a colour of the scheme in use (`studio.qt.common.style`: "text", "text_dim",
  "accent", "card" …), so a panel looks right in the dark and the light theme. Frames with the
  property `card` (True, or "row"), labels with `thumb` or `role` "status" / "symbol" /
  "error-box" are styled by the studio's style sheet.
"""

from __future__ import annotations

from PySide6.QtCore import QSettings

from studio.core.paths import config_dir, ensure
from studio.plugin_api import PanelHost
from studio.qt.common.images import to_qimage
from studio.qt.common.style import colour
from studio.qt.common.widgets import MessageBar

__all__ = ["MessageBar", "PanelHost", "colour", "plugin_settings", "to_qimage"]


def plugin_settings(settings: QSettings | None = None) -> QSettings:
    """The QSettings given, or `config_dir()/plugins.ini`."""
    if settings is not None:
        return settings
    return QSettings(str(ensure(config_dir()) / "plugins.ini"), QSettings.Format.IniFormat)
