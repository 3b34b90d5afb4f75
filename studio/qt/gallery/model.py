"""The Gallery panel's grid: a lazily filled list model of the library and the thumbnail delegate.

Nothing is loaded up front except the list of ids for the current search: item rows are fetched
from the database a page at a time when the view first asks for them, and thumbnails are made/read
on a small thread pool only for the cells being painted (QListView in batched, uniform-size icon
mode asks only for visible rows).
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

from PySide6.QtCore import (
    QAbstractListModel,
    QModelIndex,
    QObject,
    QPersistentModelIndex,
    QRect,
    QRunnable,
    QSize,
    Qt,
    QThreadPool,
    Signal,
)
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPen
from PySide6.QtWidgets import QStyle, QStyledItemDelegate, QStyleOptionViewItem

from studio.core.errors import StudioError
from studio.core.gallery import Gallery, GalleryItem
from studio.core.gallery.store import THUMBS_DIR, make_thumbnail

THUMB = 160
PAGE = 256
ItemRole = Qt.ItemDataRole.UserRole + 1
IdRole = Qt.ItemDataRole.UserRole + 2
BadgeRole = Qt.ItemDataRole.UserRole + 3


# -- thumbnails ------------------------------------------------------------------------------------------


class _ThumbSignals(QObject):
    done = Signal(str, QImage)
    failed = Signal(str)


class _ThumbJob(QRunnable):
    def __init__(self, item_id: str, src: Path, dest: Path, signals: _ThumbSignals) -> None:
        super().__init__()
        self.item_id, self.src, self.dest, self.signals = item_id, src, dest, signals

    def run(self) -> None:
        try:
            if not self.dest.exists():
                make_thumbnail(self.src, self.dest, THUMB * 2)
            image = QImage(str(self.dest))
            if image.isNull():
                raise StudioError("unreadable thumbnail")
            self.signals.done.emit(self.item_id, image)
        except Exception:  # noqa: BLE001 - a missing/corrupt file only leaves the placeholder
            self.signals.failed.emit(self.item_id)


# -- model -------------------------------------------------------------------------------------------------


class GalleryModel(QAbstractListModel):
    """Rows = ids of the current search; items and thumbnails are loaded when first shown."""

    def __init__(self, gallery: Gallery, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.gallery = gallery
        self._ids: list[str] = []
        self._row_of: dict[str, int] = {}
        self._items: OrderedDict[str, GalleryItem] = OrderedDict()
        self._thumbs: OrderedDict[str, QImage] = OrderedDict()
        self._pending: set[str] = set()
        self._failed: set[str] = set()
        self.max_cached_items = 4096
        self.max_cached_thumbs = 1024
        self.pool = QThreadPool(self)
        self.pool.setMaxThreadCount(2)
        self._signals = _ThumbSignals()
        self._signals.done.connect(self._thumb_ready)
        self._signals.failed.connect(self._thumb_failed)
        self.thumb_requests = 0  # for tests and diagnostics
        self.filters: dict[str, Any] = {}
        self.text = ""

    # filtering
    def set_query(self, text: str = "", **filters: Any) -> None:
        self.text, self.filters = text, {k: v for k, v in filters.items() if v not in (None, "", False)}
        self.refresh()

    def refresh(self) -> None:
        self.beginResetModel()
        try:
            self._ids = self.gallery.ids(self.text or None, **self.filters)
        except StudioError:
            self._ids = []
        self._row_of = {i: n for n, i in enumerate(self._ids)}
        self._items.clear()
        self.endResetModel()

    # Qt model API
    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:  # noqa: B008, N802
        return 0 if parent.isValid() else len(self._ids)

    def item(self, row: int) -> GalleryItem | None:
        if not 0 <= row < len(self._ids):
            return None
        item_id = self._ids[row]
        item = self._items.get(item_id)
        if item is None:
            start = (row // PAGE) * PAGE
            page = self._ids[start : start + PAGE]
            try:
                self._items.update(self.gallery.get_many(page))
            except StudioError:
                return None
            while len(self._items) > self.max_cached_items:
                self._items.popitem(last=False)
            item = self._items.get(item_id)
        return item

    def row_of(self, item_id: str) -> int:
        return self._row_of.get(item_id, -1)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        item = self.item(index.row())
        if item is None:
            return None
        if role == Qt.ItemDataRole.DisplayRole:
            return item.prompt.splitlines()[0][:40] if item.prompt else "(no prompt)"
        if role == Qt.ItemDataRole.ToolTipRole:
            return item.prompt
        if role == Qt.ItemDataRole.DecorationRole:
            return self.thumbnail(item)
        if role == ItemRole:
            return item
        if role == IdRole:
            return item.id
        if role == BadgeRole:
            return "AI · edited" if item.is_composite else "AI"
        return None

    def thumbnail(self, item: GalleryItem) -> QImage | None:
        image = self._thumbs.get(item.id)
        if image is not None:
            self._thumbs.move_to_end(item.id)
            return image
        if item.id not in self._pending and item.id not in self._failed:
            self._pending.add(item.id)
            self.thumb_requests += 1
            dest = self.gallery.root / THUMBS_DIR / f"{item.id}.jpg"
            self.pool.start(_ThumbJob(item.id, item.path, dest, self._signals))
        return None

    def _thumb_ready(self, item_id: str, image: QImage) -> None:
        self._pending.discard(item_id)
        self._thumbs[item_id] = image
        while len(self._thumbs) > self.max_cached_thumbs:
            self._thumbs.popitem(last=False)
        row = self._row_of.get(item_id, -1)
        if row >= 0:
            idx = self.index(row)
            self.dataChanged.emit(idx, idx, [Qt.ItemDataRole.DecorationRole])

    def _thumb_failed(self, item_id: str) -> None:
        self._pending.discard(item_id)
        self._failed.add(item_id)

    def forget(self, item_id: str) -> None:
        self._items.pop(item_id, None)
        self._thumbs.pop(item_id, None)
        self._failed.discard(item_id)

    def shutdown(self) -> None:
        self.pool.clear()
        self.pool.waitForDone(5000)
        self.beginResetModel()
        self._ids, self._row_of = [], {}
        self._items.clear()
        self.endResetModel()


# -- delegate --------------------------------------------------------------------------------------------


class GalleryDelegate(QStyledItemDelegate):
    """A thumbnail cell with the provenance badge ("AI", or "AI · edited") and a favourite star."""

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:  # noqa: N802
        return QSize(THUMB + 8, THUMB + 8)

    def paint(
        self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> None:
        painter.save()
        try:
            self._paint(painter, option, index)
        finally:
            painter.restore()

    def _paint(
        self, painter: QPainter, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> None:
        rect = option.rect.adjusted(4, 4, -4, -4)
        selected = bool(option.state & QStyle.StateFlag.State_Selected)
        painter.fillRect(rect, QColor(45, 45, 48))
        image = index.data(Qt.ItemDataRole.DecorationRole)
        if isinstance(image, QImage) and not image.isNull():
            scaled = image.scaled(
                rect.size(), Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
            )
            x = rect.x() + (rect.width() - scaled.width()) // 2
            y = rect.y() + (rect.height() - scaled.height()) // 2
            painter.drawImage(x, y, scaled)
        else:
            painter.setPen(QColor(150, 150, 150))
            painter.drawText(rect, Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, str(index.data() or ""))
        badge = str(index.data(BadgeRole) or "")
        if badge:
            font = QFont(painter.font())
            font.setBold(True)
            font.setPointSizeF(max(7.0, font.pointSizeF() * 0.85))
            painter.setFont(font)
            width = painter.fontMetrics().horizontalAdvance(badge) + 10
            box = QRect(rect.left() + 4, rect.bottom() - 20, width, 16)
            painter.fillRect(box, QColor(200, 120, 20) if "edited" in badge else QColor(30, 110, 200))
            painter.setPen(QColor(255, 255, 255))
            painter.drawText(box, Qt.AlignmentFlag.AlignCenter, badge)
        item = index.data(ItemRole)
        if item is not None and item.favourite:
            painter.setPen(QColor(255, 210, 0))
            painter.drawText(QRect(rect.right() - 20, rect.top() + 2, 18, 18), Qt.AlignmentFlag.AlignCenter, "★")
        if selected:
            painter.setPen(QPen(option.palette.highlight().color(), 3))
            painter.drawRect(rect)
