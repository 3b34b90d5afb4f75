"""The LoRA panel: the library a `LoraPlugin` finds (header-only scan), a search filter, and the
active LoRAs, each with a weight −2…2.

API: `LoraPanel(plugin, settings=None)`; `loras() -> tuple[LoraRef, ...]`, `set_loras(refs)`,
`add_folder(path)`, `rescan()`; signals `changed()` and `insertText(str)` (`<lora:name:weight>`).
Folders the user adds are saved under `lora/folders` in the QSettings given, or
`config_dir()/plugins.ini`."""

from __future__ import annotations

import html
import os
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, QSize, Qt, Signal
from PySide6.QtGui import QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from superqt import QLabeledDoubleSlider

from studio.core.request import LoraRef
from studio.plugin_ui import MessageBar, colour, plugin_settings

WEIGHT_MIN, WEIGHT_MAX, WEIGHT_STEP = -2.0, 2.0, 0.05
ICON = 48
FOLDERS_KEY = "lora/folders"


def _placeholder_icon() -> QIcon:
    pm = QPixmap(ICON, ICON)
    pm.fill(QColor(colour("raised")))
    return QIcon(pm)


class ActiveLora(QFrame):
    """One active LoRA: name, weight slider, insert-into-prompt and remove buttons."""

    changed = Signal()
    removed = Signal(object)
    insert = Signal(str)

    def __init__(self, name: str, path: str, weight: float, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ActiveLora")
        self.setProperty("card", "row")  # framed like the studio's cards, a little tighter
        self.lora_name, self.path = name, path
        self.label = QLabel(f"<b>{html.escape(name)}</b>")
        self.label.setToolTip(path or name)
        self.weight = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.weight.setRange(WEIGHT_MIN, WEIGHT_MAX)
        self.weight.setSingleStep(WEIGHT_STEP)
        self.weight.setDecimals(2)
        self.weight.setValue(weight)
        self.weight.setToolTip("LoRA weight, −2…2 (0 = off, 1 = as trained).")
        self.weight.valueChanged.connect(lambda _v: self.changed.emit())
        ins = QToolButton(text="Insert", objectName="LoraInsert", toolTip="Insert <lora:name:weight> into the prompt.")
        ins.clicked.connect(lambda: self.insert.emit(self.tag()))
        rm = QToolButton(text="✕", objectName="LoraRemove", toolTip="Remove this LoRA.")
        rm.clicked.connect(lambda: self.removed.emit(self))
        self.remove_button, self.insert_button = rm, ins
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.label, 1)
        top.addWidget(ins)
        top.addWidget(rm)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 6, 8, 6)
        lay.setSpacing(2)
        lay.addLayout(top)
        lay.addWidget(self.weight)

    def value(self) -> float:
        return round(round(self.weight.value() / WEIGHT_STEP) * WEIGHT_STEP, 2)

    def tag(self) -> str:
        return f"<lora:{self.lora_name}:{self.value():g}>"

    def ref(self) -> LoraRef:
        return LoraRef(name=self.lora_name, path=self.path, weight=self.value())


class LoraPanel(QWidget):
    changed = Signal()
    insertText = Signal(str)

    def __init__(self, plugin: Any, settings: QSettings | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("LoraPanel")
        self.plugin = plugin
        self.settings = plugin_settings(settings)
        self.files: list[Any] = []
        self.active: list[ActiveLora] = []
        for folder in self._saved_folders():
            if folder not in plugin.folders:
                plugin.folders.append(folder)

        self.message = MessageBar(self)
        self.search = QLineEdit(placeholderText="Filter by name, trigger word or tag…", objectName="LoraSearch")
        self.search.setClearButtonEnabled(True)
        self.search.textChanged.connect(self._filter)
        self.library = QListWidget(objectName="LoraLibrary")
        self.library.setAccessibleName("LoRA library")
        self.library.setIconSize(QSize(ICON, ICON))
        self.library.setWordWrap(True)
        self.library.setUniformItemSizes(False)
        self.library.setTextElideMode(Qt.TextElideMode.ElideRight)
        self.library.itemDoubleClicked.connect(lambda it: self.add_file(it.data(Qt.ItemDataRole.UserRole)))
        self.count = QLabel(objectName="Hint")
        self.count.setStyleSheet("padding: 0 2px;")
        self.count.setWordWrap(True)  # texts wrap rather than widen the dock (it shares a column with the Prompt panel)
        add_folder = QPushButton("Add folder…", objectName="LoraAddFolder")
        add_folder.setToolTip("Add a LoRA folder (A1111 models/Lora, ComfyUI models/loras, …).")
        add_folder.clicked.connect(self._pick_folder)
        rescan = QToolButton(text="⟳", objectName="LoraRescan", toolTip="Scan the LoRA folders again.")
        rescan.clicked.connect(self.rescan)
        self.add_button = QPushButton(
            "Add ↓", objectName="LoraAdd", toolTip="Use the selected LoRA (or double-click it)."
        )
        self.add_button.clicked.connect(self._add_selected)
        self.active_box = QWidget(objectName="LoraActive")
        self.active_lay = QVBoxLayout(self.active_box)
        self.active_lay.setContentsMargins(0, 0, 0, 0)
        self.active_lay.setSpacing(6)
        self.none_label = QLabel("No LoRA in use. Double-click one above to add it.", objectName="Hint")
        self.none_label.setStyleSheet("padding: 4px 2px;")
        self.none_label.setWordWrap(True)
        self.active_lay.addWidget(self.none_label)

        row = QHBoxLayout()
        row.addWidget(self.search, 1)
        row.addWidget(rescan)
        buttons = QHBoxLayout()
        buttons.addWidget(add_folder)
        buttons.addWidget(self.count, 1)
        buttons.addWidget(self.add_button)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 8, 8, 8)
        lay.setSpacing(6)
        lay.addWidget(QLabel("LORA LIBRARY", objectName="Section"))
        lay.addWidget(self.message)
        lay.addLayout(row)
        lay.addWidget(self.library, 1)
        lay.addLayout(buttons)
        lay.addWidget(QLabel("ACTIVE", objectName="Section"))
        lay.addWidget(self.active_box)
        self.rescan()

    # -- library ----------------------------------------------------------------------------------
    def _saved_folders(self) -> list[Path]:
        v: Any = self.settings.value(FOLDERS_KEY, [])
        if isinstance(v, str):
            v = [v] if v else []
        return [Path(p) for p in (v or [])]

    def _pick_folder(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Add a LoRA folder")
        if folder:
            self.add_folder(folder)

    def add_folder(self, folder: str | os.PathLike[str]) -> None:
        """Add a folder to the plugin's LoRA folders, remember it, and scan again."""
        path = Path(folder).expanduser()
        if not path.is_dir():
            self.message.show_message(f"{path} is not a folder.", "Pick a folder that holds .safetensors LoRA files.")
            return
        if path not in self.plugin.folders:
            self.plugin.folders.append(path)
        saved = self._saved_folders()
        if path not in saved:
            self.settings.setValue(FOLDERS_KEY, [str(p) for p in [*saved, path]])
            self.settings.sync()
        self.rescan()

    def rescan(self) -> None:
        try:
            self.files = list(self.plugin.scan())
        except Exception as exc:  # noqa: BLE001 — a broken folder or plugin: say so, keep the panel
            self.files = []
            self.message.show_message(
                "The LoRA folders could not be scanned.", f"{exc.__class__.__name__}: {exc}", topic="scan"
            )
        else:
            self.message.withdraw("scan")  # the folders scan again: what was said about them is over
        self.library.clear()
        placeholder = _placeholder_icon()
        for lf in self.files:
            item = QListWidgetItem(self._item_text(lf))
            item.setData(Qt.ItemDataRole.UserRole, lf)
            icon = QIcon(str(lf.preview)) if getattr(lf, "preview", None) else QIcon()
            item.setIcon(placeholder if icon.isNull() else icon)
            item.setToolTip(self._tooltip(lf))
            self.library.addItem(item)
        self._filter(self.search.text())

    @staticmethod
    def _item_text(lf: Any) -> str:
        bits = [lf.arch.upper() if lf.arch else "", f"rank {lf.rank}" if lf.rank else ""]
        line2 = " · ".join(b for b in bits if b)
        if lf.trigger_words:
            line2 += "\ntrigger: " + ", ".join(lf.trigger_words)
        return f"{lf.name}\n{line2}"

    @staticmethod
    def _tooltip(lf: Any) -> str:
        parts = [f"<b>{html.escape(lf.name)}</b>", html.escape(str(lf.path))]
        if lf.trigger_words:
            parts.append("Trigger words: " + html.escape(", ".join(lf.trigger_words)))
        if lf.tags:
            parts.append("Tags: " + html.escape(", ".join(lf.tags)))
        return "<br>".join(parts)

    def _filter(self, text: str) -> None:
        words = text.lower().split()
        shown = 0
        for i in range(self.library.count()):
            item = self.library.item(i)
            lf = item.data(Qt.ItemDataRole.UserRole)
            hay = " ".join([lf.name, lf.arch or "", *lf.trigger_words, *lf.tags]).lower()
            hide = any(w not in hay for w in words)
            item.setHidden(hide)
            shown += not hide
        total = self.library.count()
        if not self.plugin.folders:
            self.count.setText("no LoRA folders yet")
        elif total == 0:
            self.count.setText("no LoRAs found")
        else:
            self.count.setText(f"{shown} of {total}" if shown != total else f"{total} LoRA{'s' if total != 1 else ''}")

    def visible_names(self) -> list[str]:
        return [
            self.library.item(i).data(Qt.ItemDataRole.UserRole).name
            for i in range(self.library.count())
            if not self.library.item(i).isHidden()
        ]

    # -- active LoRAs -----------------------------------------------------------------------------
    def _add_selected(self) -> None:
        item = self.library.currentItem()
        if item is None or item.isHidden():
            self.message.show_message("Select a LoRA first.", kind="info")
            return
        self.add_file(item.data(Qt.ItemDataRole.UserRole))

    def add_file(self, lf: Any, weight: float = 1.0) -> None:
        """Use a scanned LoraFile (a second add of the same file is ignored)."""
        if any(a.path == str(lf.path) for a in self.active):
            return
        self._add_row(lf.name, str(lf.path), weight)
        self.changed.emit()

    def _add_row(self, name: str, path: str, weight: float) -> ActiveLora:
        row = ActiveLora(name, path, max(WEIGHT_MIN, min(WEIGHT_MAX, weight)))
        row.changed.connect(self.changed)
        row.removed.connect(self._remove)
        row.insert.connect(self.insertText)
        self.active.append(row)
        self.active_lay.addWidget(row)
        self.none_label.setVisible(False)
        return row

    def _remove(self, row: ActiveLora) -> None:
        self.active.remove(row)
        row.setParent(None)
        row.deleteLater()
        self.none_label.setVisible(not self.active)
        self.changed.emit()

    def loras(self) -> tuple[LoraRef, ...]:
        return tuple(a.ref() for a in self.active)

    # -- the panel hooks (studio.plugin_api) --------------------------------------------------------
    def request_fields(self) -> dict[str, Any]:
        return {"loras": self.loras()}

    def load_request(self, request: Any) -> None:
        self.set_loras(tuple(request.loras))

    def set_loras(self, refs: tuple[LoraRef, ...] | list[LoraRef]) -> None:
        """Replace the active LoRAs (e.g. from a loaded recipe); names are resolved when no path."""
        for row in list(self.active):
            self.active.remove(row)
            row.setParent(None)
            row.deleteLater()
        missing = []
        for ref in refs:
            path = ref.path
            if not path or not Path(path).is_file():
                try:
                    path = str(self.plugin.resolve(ref.path or ref.name))
                except Exception:  # noqa: BLE001 — keep it listed, say it is missing
                    missing.append(ref.name)
                    path = ref.path
            self._add_row(ref.name, path, ref.weight)
        self.none_label.setVisible(not self.active)
        if missing:
            self.message.show_message(
                f"LoRA not found: {', '.join(missing)}",
                "Add the folder that holds it, or remove it from the list.",
                kind="warning",
            )
        self.changed.emit()
