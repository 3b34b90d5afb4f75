"""A layout that wraps its widgets onto as many rows as the width needs, keeping groups together.

Widgets are added with a group number; a group moves to the next row as a whole when it does not
fit on the current one, and only a group wider than the whole layout is broken between its widgets.
The layout reports `heightForWidth`, so a box layout above it gives it exactly the rows it needs,
and its minimum width is that of its widest widget: it never forces its window wider.
"""

from __future__ import annotations

from PySide6.QtCore import QPoint, QRect, QSize, Qt
from PySide6.QtWidgets import QLayout, QLayoutItem, QWidget, QWidgetItem


class FlowLayout(QLayout):
    def __init__(self, parent: QWidget | None = None, spacing: int = 4, group_gap: int = 14) -> None:
        super().__init__(parent)
        self._items: list[QLayoutItem] = []
        self._groups: list[int] = []
        self._spacing, self._gap = spacing, group_gap
        self._next_group = 0

    # -- building ---------------------------------------------------------------------------------
    def addWidget(self, widget: QWidget, group: int | None = None) -> None:  # noqa: N802 (Qt naming)
        self.addChildWidget(widget)
        self._add(QWidgetItem(widget), group)

    def addItem(self, item: QLayoutItem) -> None:  # noqa: N802
        self._add(item, None)

    def new_group(self) -> int:
        """Start a group: widgets added without a group number from now on belong to it."""
        self._next_group += 1
        return self._next_group

    def _add(self, item: QLayoutItem, group: int | None) -> None:
        self._items.append(item)
        self._groups.append(self._next_group if group is None else group)
        self.invalidate()

    # -- QLayout ----------------------------------------------------------------------------------
    def count(self) -> int:
        return len(self._items)

    def itemAt(self, index: int) -> QLayoutItem | None:  # noqa: N802
        return self._items[index] if 0 <= index < len(self._items) else None

    def takeAt(self, index: int) -> QLayoutItem | None:  # noqa: N802
        if not 0 <= index < len(self._items):
            return None
        self._groups.pop(index)
        return self._items.pop(index)

    def expandingDirections(self) -> Qt.Orientation:  # noqa: N802
        return Qt.Orientation(0)

    def hasHeightForWidth(self) -> bool:  # noqa: N802
        return True

    def heightForWidth(self, width: int) -> int:  # noqa: N802
        return self._place(QRect(0, 0, width, 0), apply=False)

    def setGeometry(self, rect: QRect) -> None:  # noqa: N802
        super().setGeometry(rect)
        self._place(rect, apply=True)

    def sizeHint(self) -> QSize:  # noqa: N802
        return self.minimumSize()

    def minimumSize(self) -> QSize:  # noqa: N802
        size = QSize()
        for item in self._items:
            if not item.isEmpty():
                size = size.expandedTo(item.minimumSize().expandedTo(item.sizeHint()))
        m = self.contentsMargins()
        return size + QSize(m.left() + m.right(), m.top() + m.bottom())

    # -- placing ----------------------------------------------------------------------------------
    def rows(self, width: int) -> list[list[int]]:
        """Indices of the visible items on each row at this width (for tests and `_place`)."""
        m = self.contentsMargins()
        avail = max(1, width - m.left() - m.right())
        rows: list[list[int]] = [[]]
        x = 0
        for group in self._visible_groups():
            widths = [self._items[i].sizeHint().width() for i in group]
            need = sum(widths) + self._spacing * (len(group) - 1)
            start = x + (self._gap if rows[-1] else 0)
            if rows[-1] and start + need > avail:  # the group goes to the next row as a whole
                rows.append([])
                start = 0
            if need <= avail - start:
                rows[-1].extend(group)
                x = start + need
                continue
            for n, (i, w) in enumerate(zip(group, widths)):  # wider than a row (which it starts): break it
                pos = x + self._spacing if n else 0
                if rows[-1] and pos + w > avail:
                    rows.append([])
                    pos = 0
                rows[-1].append(i)
                x = pos + w
        return [r for r in rows if r]

    def _visible_groups(self) -> list[list[int]]:
        groups: list[list[int]] = []
        last = None
        for i, item in enumerate(self._items):
            if item.isEmpty():
                continue
            if not groups or self._groups[i] != last:
                groups.append([])
            groups[-1].append(i)
            last = self._groups[i]
        return groups

    def _place(self, rect: QRect, apply: bool) -> int:
        m = self.contentsMargins()
        rows = self.rows(rect.width())
        if not rows:
            return m.top() + m.bottom()
        y = rect.y() + m.top()
        for row in rows:
            height = max(self._items[i].sizeHint().height() for i in row)
            x = rect.x() + m.left()
            prev = None
            for i in row:
                if prev is not None:
                    x += self._gap if self._groups[i] != self._groups[prev] else self._spacing
                hint = self._items[i].sizeHint()
                if apply:
                    self._items[i].setGeometry(QRect(QPoint(x, y + (height - hint.height()) // 2), hint))
                x += hint.width()
                prev = i
            y += height + self._spacing
        return y - self._spacing - rect.y() + m.bottom()


class FlowBox(QWidget):
    """A widget laid out by a `FlowLayout` that keeps its minimum height at what its current width
    needs, so parents that ignore height-for-width (a QSplitter pane, a scroll area) never squeeze
    a wrapped row out of sight."""

    def __init__(self, parent: QWidget | None = None, spacing: int = 4, group_gap: int = 14) -> None:
        super().__init__(parent)
        self.flow = FlowLayout(self, spacing=spacing, group_gap=group_gap)

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        need = self.flow.heightForWidth(self.width())
        if need != self.minimumHeight():
            self.setMinimumHeight(need)
