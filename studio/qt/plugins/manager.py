"""The plugin manager: every plugin the host knows, its status and error, and an enable switch.

`PluginManagerDialog(host)` is non-modal (`show()` it); toggling a plugin calls
`host.set_enabled(name, on)` and emits `changed()`. "Reload" runs discovery again into the same
host (plugins already known keep their enabled state)."""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from studio.qt.common import style

STATUS_COLOURS = {"enabled": "ok", "disabled": "text_dim", "failed": "error_text"}  # colours of the scheme


class PluginRow(QFrame):
    toggled = Signal(str, bool)

    def __init__(self, rec: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("PluginRow")
        self.setProperty("card", True)  # framed like every card (studio.qss)
        self.name = rec.name
        manifest = getattr(rec, "manifest", None) or getattr(rec.plugin, "manifest", None)
        title = getattr(manifest, "title", "") or rec.name
        version = getattr(manifest, "version", "") or "?"
        self.status = rec.status
        self.toggle = QCheckBox("Enabled", objectName="PluginToggle")
        self.toggle.setChecked(rec.enabled)
        self.toggle.setEnabled(not rec.error)
        self.toggle.setToolTip(
            "Failed plugins cannot be enabled: fix the error and reload."
            if rec.error
            else f"Turn the {rec.name} plugin on or off."
        )
        self.toggle.toggled.connect(lambda on: self.toggled.emit(self.name, on))

        head = QLabel(
            f"<b style='font-size:{style.font_pt(1.1):g}pt'>{html.escape(title)}</b>&nbsp;&nbsp;"
            f"<span style='color:{style.colour('text_dim')}'>"
            f"{html.escape(rec.name)} · v{html.escape(str(version))}</span>"
        )
        self.badge = QLabel(objectName="PluginStatus")
        self.set_status(rec.status)
        meta = QLabel(
            f"<span style='color:{style.colour('text_dim')}'>{html.escape(rec.source)} — "
            f"{html.escape(str(rec.origin))}</span>"
        )
        meta.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        desc = getattr(manifest, "description", "")
        self.error = QLabel(objectName="PluginError")
        self.error.setWordWrap(True)
        self.error.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.error.setProperty("role", "error-box")  # studio.qss
        self.error.setText(rec.error)
        self.error.setVisible(bool(rec.error))

        top = QHBoxLayout()
        top.addWidget(head, 1)
        top.addWidget(self.badge)
        top.addWidget(self.toggle)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(12, 10, 12, 10)
        lay.setSpacing(4)
        lay.addLayout(top)
        if desc:
            d = QLabel(html.escape(desc))
            d.setWordWrap(True)
            lay.addWidget(d)
        lay.addWidget(meta)
        lay.addWidget(self.error)

    def set_status(self, status: str) -> None:
        self.status = status
        colour = style.colour(STATUS_COLOURS.get(status, "text_dim"))
        self.badge.setText(status)
        self.badge.setStyleSheet(
            f"color: {colour}; border: 1px solid {colour}; border-radius: 8px; padding: 1px 8px;"
            f" font-size: {style.font_pt(0.9):g}pt; font-weight: 600;"
        )


class PluginManagerDialog(QDialog):
    """Non-modal list of plugins with enable/disable; `changed()` after any toggle or reload."""

    changed = Signal()

    def __init__(self, host: Any, parent: QWidget | None = None, discover: Callable[[Any], Any] | None = None) -> None:
        super().__init__(parent)
        self.host = host
        self._discover = discover or (lambda h: h.discover())
        self.setWindowTitle("Plugins")
        self.setModal(False)
        self.setObjectName("PluginManager")
        self.resize(560, 460)
        self.rows: dict[str, PluginRow] = {}

        self.summary = QLabel(objectName="Hint")
        self.summary.setStyleSheet("padding: 2px 2px 6px 2px;")
        self.listing = QWidget(objectName="PluginList")
        self.list_lay = QVBoxLayout(self.listing)
        self.list_lay.setContentsMargins(0, 0, 0, 0)
        self.list_lay.setSpacing(8)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(self.listing)
        self.reload_button = QPushButton("Reload", objectName="PluginReload")
        self.reload_button.setToolTip("Look for plugins again (installed entry points, the user plugins folder).")
        self.reload_button.clicked.connect(self.reload)
        close = QPushButton("Close")
        close.clicked.connect(self.close)
        buttons = QHBoxLayout()
        buttons.addWidget(self.reload_button)
        buttons.addStretch(1)
        buttons.addWidget(close)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(14, 12, 14, 12)
        lay.addWidget(self.summary)
        lay.addWidget(scroll, 1)
        lay.addLayout(buttons)
        self.refresh()

    def refresh(self) -> None:
        """Rebuild the list from `host.records`."""
        while self.list_lay.count():
            item = self.list_lay.takeAt(0)
            widget = item.widget() if item is not None else None
            if widget is not None:
                widget.deleteLater()
        self.rows = {}
        recs = list(self.host.records.values())
        for rec in sorted(recs, key=lambda r: (r.status == "failed", r.name)):
            row = PluginRow(rec)
            row.toggled.connect(self._toggle)
            self.rows[rec.name] = row
            self.list_lay.addWidget(row)
        if not recs:
            empty = QLabel("No plugins found.", objectName="Hint")
            self.list_lay.addWidget(empty)
        self.list_lay.addStretch(1)
        failed = sum(r.status == "failed" for r in recs)
        text = f"{len(recs)} plugin{'s' if len(recs) != 1 else ''}"
        if failed:
            text += f" · <span style='color:{style.colour('error_text')}'>{failed} failed</span>"
        self.summary.setText(text)

    def _toggle(self, name: str, on: bool) -> None:
        self.host.set_enabled(name, on)
        rec = self.host.records[name]
        self.rows[name].set_status(rec.status)
        self.changed.emit()

    def reload(self) -> None:
        was = {n: r.enabled for n, r in self.host.records.items()}
        try:
            self._discover(self.host)
        except Exception as exc:  # noqa: BLE001 — discovery itself must never take the window down
            self.summary.setText(
                f"<span style='color:{style.colour('error_text')}'>Reload failed: "
                f"{html.escape(f'{exc.__class__.__name__}: {exc}')}</span>"
            )
            return
        for name, enabled in was.items():  # discovery makes fresh records: keep the user's choice
            if name in self.host.records and not enabled:
                self.host.set_enabled(name, False)
        self.refresh()
        self.changed.emit()
