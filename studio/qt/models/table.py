"""The Models dialog's list: a table model over catalogue entries and the filter in front of it
(kind, architecture, text in the name or path, usable only)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, QSortFilterProxyModel, Qt

from studio.core.catalogue import CatalogueEntry
from studio.core.library import display_name
from studio.core.settings import ARCH_LABELS
from studio.qt.common import style

COLUMNS = ("Name", "Kind", "Architecture", "Precision", "Size", "Found in")
KINDS = (
    "checkpoint",
    "inpaint checkpoint",
    "LoRA",
    "ControlNet",
    "VAE",
    "tiny autoencoder",
    "text encoder",
    "embedding",
    "UNet",
    "upscaler",
    "IP-Adapter",
    "image encoder",
    "unknown",
)
ENTRY_ROLE = Qt.ItemDataRole.UserRole + 1
SORT_ROLE = Qt.ItemDataRole.UserRole + 2


def arch_label(entry: CatalogueEntry) -> str:
    if not entry.arch and entry.variant:  # a text encoder (CLIP-L, T5-XXL) or a 16-channel VAE
        return entry.variant
    label = ARCH_LABELS.get(entry.arch, entry.arch)
    if entry.variant:
        label += f" ({entry.variant})"
    return label if entry.arch or entry.variant else "—"


def fmt_size(n: int) -> str:
    if n >= 2**30:
        return f"{n / 2**30:.2f} GB"
    if n >= 2**20:
        return f"{n / 2**20:.1f} MB"
    return f"{n / 2**10:.0f} KB"


class ModelsTableModel(QAbstractTableModel):
    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.entries: list[CatalogueEntry] = []

    def set_entries(self, entries: list[CatalogueEntry]) -> None:
        self.beginResetModel()
        self.entries = list(entries)
        self.endResetModel()

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(self.entries)

    def columnCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: N802, B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(self, section: int, orientation, role=Qt.ItemDataRole.DisplayRole) -> Any:  # noqa: N802
        if orientation == Qt.Orientation.Horizontal and role == Qt.ItemDataRole.DisplayRole:
            return COLUMNS[section]
        return None

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        e = self.entries[index.row()]
        col = index.column()
        if role == ENTRY_ROLE:
            return e
        if role in (Qt.ItemDataRole.DisplayRole, SORT_ROLE):
            if col == 0:
                name = display_name(e.path)
                return name.lower() if role == SORT_ROLE else ("✗ " if not e.usable else "") + name
            if col == 1:
                return e.kind
            if col == 2:
                return arch_label(e)
            if col == 3:
                return e.precision or "—"
            if col == 4:
                return e.size_bytes if role == SORT_ROLE else fmt_size(e.size_bytes)
            if col == 5:
                return e.source.split(":")[0] if e.source else ""
        if role == Qt.ItemDataRole.ToolTipRole:
            return f"{e.path}\n{e.reason}" if e.reason else e.path
        if role == Qt.ItemDataRole.ForegroundRole and not e.usable:
            return style.qcolour("error_text")
        if role == Qt.ItemDataRole.TextAlignmentRole and col == 4:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def row_of(self, path: str) -> int:
        return next((i for i, e in enumerate(self.entries) if e.path == path), -1)


class ModelsFilter(QSortFilterProxyModel):
    """Kind ("" = all), architecture ("" = all, "?" = unknown), text, usable only."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.kind = ""
        self.arch = ""
        self.text = ""
        self.usable_only = False
        self.setSortRole(SORT_ROLE)
        self.setSortCaseSensitivity(Qt.CaseSensitivity.CaseInsensitive)

    def set_filter(
        self,
        *,
        kind: str | None = None,
        arch: str | None = None,
        text: str | None = None,
        usable_only: bool | None = None,
    ) -> None:
        if hasattr(self, "beginFilterChange"):  # Qt ≥ 6.9 (invalidateRowsFilter is deprecated there)
            self.beginFilterChange()
        if kind is not None:
            self.kind = kind
        if arch is not None:
            self.arch = arch
        if text is not None:
            self.text = text.strip().lower()
        if usable_only is not None:
            self.usable_only = usable_only
        if hasattr(self, "endFilterChange"):
            self.endFilterChange(QSortFilterProxyModel.Direction.Rows)
        else:
            self.invalidateRowsFilter()

    def filterAcceptsRow(self, row: int, parent: QModelIndex | QPersistentModelIndex) -> bool:  # noqa: N802
        source = self.sourceModel()
        assert isinstance(source, ModelsTableModel)
        e: CatalogueEntry = source.entries[row]
        if self.kind and e.kind != self.kind:
            return False
        if self.arch and (e.arch or "?") != self.arch:
            return False
        if self.usable_only and not e.usable:
            return False
        if self.text:
            hay = f"{display_name(e.path)} {Path(e.path).parent} {e.variant}".lower()
            if not all(word in hay for word in self.text.split()):
                return False
        return True
