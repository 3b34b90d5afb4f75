"""Zoom, pan, drawing and input handling for `MaskCanvas` (a mixin: it works on the canvas's layers
and calls its edit methods; the canvas owns all state)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PySide6.QtCore import QEvent, QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QImage, QKeySequence, QPainter, QPen, QPixmap, QPolygonF
from PySide6.QtWidgets import QWidget

from studio.qt.common.images import from_qimage
from studio.session.mask_history import Entry, History, diff_patch
from studio.session.mask_ops import apply_stroke, brush_segment

if TYPE_CHECKING:  # the mixin is a QWidget's (MaskCanvas's): its methods run on the canvas
    _Widget = QWidget
else:
    _Widget = object

TOOLS = ("brush", "eraser", "rect", "lasso", "expand")
HANDLE = 14  # px around an image edge where the expand tool grabs it
SNAP = 8  # outpaint amounts snap to multiples of 8 (the latent grid)
MIN_ZOOM, MAX_ZOOM = 1 / 32, 32.0


class CanvasViewMixin(_Widget):
    """View transform (widget = image · zoom + offset), painting, mouse, keys, drag and drop."""

    TOOLS = TOOLS
    if TYPE_CHECKING:  # what MaskCanvas owns and the view works on
        viewChanged: Any
        _img: np.ndarray
        _mask: np.ndarray
        _pix: QPixmap
        _ov_img: QImage
        _ov_visible: bool
        _preview: QImage | None
        _tool: str
        _size: float
        _hardness: float
        _opacity: float
        _zoom: float
        _offset: QPointF
        _fit_mode: bool
        _drag: str | None
        _space: bool
        _hover: QPointF | None
        _points: list[QPointF]
        _pan_from: QPointF
        _expansion: list[int]
        _pending: list[int]
        _sides: list[bool]
        _press: QPointF
        _subtract: bool
        _stroke: Any
        _base: np.ndarray | None
        _stroke_box: tuple[int, int, int, int] | None

        maskChanged: Any
        historyChanged: Any
        history: History

        def image_size(self) -> tuple[int, int]: ...
        def set_brush_size(self, px: float) -> None: ...
        def set_tool(self, name: str) -> None: ...
        def set_image(self, array: np.ndarray, *, keep_mask: bool = False) -> bool: ...
        def load_image(self, path: str | Path) -> bool: ...
        def paste(self) -> bool: ...
        def undo(self) -> bool: ...
        def redo(self) -> bool: ...
        def mask_rect(self, x: float, y: float, w: float, h: float, subtract: bool = False) -> bool: ...
        def mask_polygon(self, points: Any, subtract: bool = False) -> bool: ...
        def expand(self, left: int = 0, top: int = 0, right: int = 0, bottom: int = 0) -> bool: ...
        def _refresh_overlay(self, box: Any = None) -> None: ...
    # -- view --------------------------------------------------------------------------------------

    def zoom(self) -> float:
        return self._zoom

    def image_rect(self) -> QRectF:
        """Where the image is drawn, in widget coordinates."""
        w, h = self.image_size()
        return QRectF(self._offset.x(), self._offset.y(), w * self._zoom, h * self._zoom)

    def map_to_image(self, p: QPointF) -> QPointF:
        return QPointF((p.x() - self._offset.x()) / self._zoom, (p.y() - self._offset.y()) / self._zoom)

    def map_from_image(self, p: QPointF) -> QPointF:
        return QPointF(p.x() * self._zoom + self._offset.x(), p.y() * self._zoom + self._offset.y())

    def set_zoom(self, z: float, anchor: QPointF | None = None) -> None:
        """Zoom keeping the image point under `anchor` (widget coords; default: the centre) fixed."""
        z = float(min(MAX_ZOOM, max(MIN_ZOOM, z)))
        anchor = QPointF(self.width() / 2, self.height() / 2) if anchor is None else QPointF(anchor)
        at = self.map_to_image(anchor)
        self._zoom = z
        self._offset = QPointF(anchor.x() - at.x() * z, anchor.y() - at.y() * z)
        self._fit_mode = False
        self.viewChanged.emit()
        self.update()

    def fit(self) -> None:
        w, h = self.image_size()
        margin = 8
        z = min((self.width() - 2 * margin) / w, (self.height() - 2 * margin) / h)
        self._zoom = float(min(MAX_ZOOM, max(MIN_ZOOM, z)))
        self._offset = QPointF((self.width() - w * self._zoom) / 2, (self.height() - h * self._zoom) / 2)
        self._fit_mode = True
        self.viewChanged.emit()
        self.update()

    def actual_size(self) -> None:
        """100 %: one image pixel per screen pixel, centred."""
        w, h = self.image_size()
        self._zoom = 1.0
        self._offset = QPointF(round((self.width() - w) / 2), round((self.height() - h) / 2))
        self._fit_mode = False
        self.viewChanged.emit()
        self.update()

    def resizeEvent(self, event) -> None:  # noqa: N802
        if self._fit_mode:
            self.fit()
        QWidget.resizeEvent(self, event)

    def wheelEvent(self, event) -> None:  # noqa: N802
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.set_zoom(self._zoom * (1.25**steps), event.position())
        event.accept()

    # -- painting ---------------------------------------------------------------------------------

    def paintEvent(self, event) -> None:  # noqa: N802
        p = QPainter(self)
        p.fillRect(self.rect(), QColor(38, 38, 42))
        r = self.image_rect()
        p.setPen(QPen(QColor(0, 0, 0, 140), 1))
        p.drawRect(r.adjusted(-1, -1, 0, 0))  # a thin frame so the image edge reads against the backdrop
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, self._zoom < 2.0)  # pixels show when zoomed in
        p.drawPixmap(r, self._pix, QRectF(self._pix.rect()))
        if self._preview is not None:
            p.drawImage(r, self._preview, QRectF(self._preview.rect()))
        if self._ov_visible:
            p.drawImage(r, self._ov_img, QRectF(self._ov_img.rect()))
        p.setRenderHint(QPainter.RenderHint.Antialiasing, True)
        pen = QPen(QColor(255, 255, 255, 220), 1, Qt.PenStyle.DashLine)
        if self._drag == "rect" and len(self._points) == 2:
            p.setPen(pen)
            p.drawRect(QRectF(self.map_from_image(self._points[0]), self.map_from_image(self._points[1])).normalized())
        elif self._drag == "lasso" and len(self._points) > 1:
            p.setPen(pen)
            p.drawPolygon(QPolygonF([self.map_from_image(q) for q in self._points]))
        if self._tool == "expand":
            self._paint_expand(p, r)
        if self._hover is not None and self._tool in ("brush", "eraser") and self._drag != "pan":
            rad = self._size / 2 * self._zoom
            for color, width in ((QColor(0, 0, 0, 160), 3), (QColor(255, 255, 255, 230), 1)):
                p.setPen(QPen(color, width))
                p.drawEllipse(self._hover, rad, rad)
        p.end()

    def _paint_expand(self, p: QPainter, r: QRectF) -> None:
        """Handles on the image edges and, while dragging, the outline and size of the grown canvas."""
        p.setPen(QPen(QColor(0, 0, 0, 180), 1))
        p.setBrush(QColor(255, 255, 255, 230))
        for fx, fy in ((0, 0.5), (1, 0.5), (0.5, 0), (0.5, 1), (0, 0), (1, 0), (0, 1), (1, 1)):
            c = QPointF(r.left() + fx * r.width(), r.top() + fy * r.height())
            p.drawRect(QRectF(c.x() - 4, c.y() - 4, 8, 8))
        p.setBrush(Qt.BrushStyle.NoBrush)
        if self._drag == "expand" and any(self._pending):
            left, top, right, bottom = (v * self._zoom for v in self._pending)
            grown = r.adjusted(-left, -top, right, bottom)
            p.setPen(QPen(QColor(255, 255, 255, 230), 1, Qt.PenStyle.DashLine))
            p.drawRect(grown)
            w, h = self.image_size()
            text = f"{w + self._pending[0] + self._pending[2]} × {h + self._pending[1] + self._pending[3]}"
            p.drawText(grown.adjusted(6, 4, -6, -4), Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignTop, text)

    def _expand_amounts(self, pos: QPointF) -> list[int]:
        d = (pos - self._press) / self._zoom
        left, top, right, bottom = self._sides
        amounts = [-d.x() if left else 0, -d.y() if top else 0, d.x() if right else 0, d.y() if bottom else 0]
        return [int(round(max(0.0, a) / SNAP)) * SNAP for a in amounts]

    # -- mouse and keys -------------------------------------------------------------------------------

    def mousePressEvent(self, event) -> None:  # noqa: N802
        pos = event.position()
        button = event.button()
        if self._drag is not None:  # a second button during a drag: ignore it
            event.accept()
            return
        if button == Qt.MouseButton.MiddleButton or (button == Qt.MouseButton.LeftButton and self._space):
            self._drag, self._pan_from = "pan", pos
            self.setCursor(Qt.CursorShape.ClosedHandCursor)
        elif button == Qt.MouseButton.LeftButton:
            at = self.map_to_image(pos)
            self._points = [at]
            if self._tool == "expand":
                r = self.image_rect().adjusted(HANDLE, HANDLE, -HANDLE, -HANDLE)
                self._sides = [pos.x() <= r.left(), pos.y() <= r.top(), pos.x() >= r.right(), pos.y() >= r.bottom()]
                if any(self._sides):  # pressed on (or beyond) an edge: that edge follows the drag
                    self._drag, self._press, self._pending = "expand", pos, [0, 0, 0, 0]
            elif self._tool in ("brush", "eraser"):
                self._drag, self._stroke_box = "paint", None
                self._stroke = np.zeros(self._mask.shape, np.float32)
                self._base = self._mask.copy()
                self._paint_segment(at, at)
            else:
                self._drag = self._tool
                self._subtract = bool(event.modifiers() & Qt.KeyboardModifier.AltModifier)
                if self._tool == "rect":
                    self._points = [at, at]
        event.accept()

    def _cursor_rect(self):
        if self._hover is None:
            return QRectF().toAlignedRect()
        rad = self._size / 2 * self._zoom + 3
        return QRectF(self._hover.x() - rad, self._hover.y() - rad, 2 * rad, 2 * rad).toAlignedRect()

    def mouseMoveEvent(self, event) -> None:  # noqa: N802
        pos = event.position()
        old_cursor = self._cursor_rect()
        self._hover = pos
        if self._drag in (None, "paint") and self._tool in ("brush", "eraser"):
            self.update(old_cursor)  # the brush outline moves: repaint where it was and where it is
            self.update(self._cursor_rect())
            if self._drag == "paint":
                at = self.map_to_image(pos)
                self._paint_segment(self._points[-1], at)
                self._points.append(at)
            return
        if self._drag == "pan":
            d = pos - self._pan_from
            self._pan_from = pos
            self._offset += d
            self._fit_mode = False
            self.viewChanged.emit()
        elif self._drag == "paint":
            at = self.map_to_image(pos)
            self._paint_segment(self._points[-1], at)
            self._points.append(at)
        elif self._drag == "rect":
            self._points[1] = self.map_to_image(pos)
        elif self._drag == "lasso":
            self._points.append(self.map_to_image(pos))
        elif self._drag == "expand":
            self._pending = self._expand_amounts(pos)
        if self._drag is not None:
            self.update()

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802
        if self._drag == "paint":
            at = self.map_to_image(event.position())
            self._paint_segment(self._points[-1], at)
        elif self._drag == "rect":
            self._points[1] = self.map_to_image(event.position())
        elif self._drag == "lasso":
            self._points.append(self.map_to_image(event.position()))
        elif self._drag == "expand":
            self._pending = self._expand_amounts(event.position())
        self._end_drag(commit=True)
        event.accept()

    def leaveEvent(self, event) -> None:  # noqa: N802
        self._hover = None
        self.update()

    def _paint_segment(self, a: QPointF, b: QPointF) -> None:
        box = brush_segment(self._stroke, (a.x(), a.y()), (b.x(), b.y()), self._size / 2, self._hardness)
        if box is not None:
            apply_stroke(self._mask, self._base, self._stroke, box, self._opacity, self._tool == "eraser")
            self._refresh_overlay(box)
            sb = self._stroke_box or box
            self._stroke_box = (min(sb[0], box[0]), max(sb[1], box[1]), min(sb[2], box[2]), max(sb[3], box[3]))

    def _end_drag(self, commit: bool) -> None:
        drag, pts = self._drag, self._points
        self._drag, self._points = None, []
        self.setCursor(Qt.CursorShape.CrossCursor)
        if drag == "paint":
            base, self._stroke, self._base, box = self._base, None, None, self._stroke_box
            patch = diff_patch("mask", base, self._mask, box) if box is not None and base is not None else None
            if patch is not None and commit:
                self.history.push(Entry("Eraser" if self._tool == "eraser" else "Brush", [patch]))
                self.maskChanged.emit()
                self.historyChanged.emit()
            elif patch is not None and base is not None:  # abandoned stroke: put the pixels back
                np.copyto(self._mask, base)
                self._refresh_overlay()
        elif drag == "rect" and commit and len(pts) == 2:
            r = QRectF(pts[0], pts[1]).normalized()
            self.mask_rect(r.x(), r.y(), r.width(), r.height(), subtract=self._subtract)
        elif drag == "lasso" and commit and len(pts) >= 3:
            self.mask_polygon([(q.x(), q.y()) for q in pts], subtract=self._subtract)
        elif drag == "expand" and commit and any(self._pending):
            self.expand(*self._pending)
        self.update()

    def _shortcut(self, event) -> str | None:
        if event.matches(QKeySequence.StandardKey.Undo):
            return "undo"
        mods = event.modifiers() & ~Qt.KeyboardModifier.KeypadModifier
        ctrl = Qt.KeyboardModifier.ControlModifier
        if event.matches(QKeySequence.StandardKey.Redo) or (
            event.key() == Qt.Key.Key_Z and mods == ctrl | Qt.KeyboardModifier.ShiftModifier
        ):
            return "redo"
        if event.matches(QKeySequence.StandardKey.Paste):
            return "paste"
        if mods == ctrl and event.key() == Qt.Key.Key_0:
            return "fit"
        if mods == ctrl and event.key() == Qt.Key.Key_1:
            return "actual"
        keys = {
            Qt.Key.Key_BracketLeft: "smaller",
            Qt.Key.Key_BracketRight: "bigger",
            Qt.Key.Key_B: "brush",
            Qt.Key.Key_E: "eraser",
            Qt.Key.Key_R: "rect",
            Qt.Key.Key_L: "lasso",
            Qt.Key.Key_X: "expand",
        }
        if (
            not mods
            or mods == Qt.KeyboardModifier.ShiftModifier
            and event.key() in (Qt.Key.Key_BracketLeft, Qt.Key.Key_BracketRight)
        ):
            return keys.get(Qt.Key(event.key()))
        return None

    def event(self, event) -> bool:
        # Claim our keys before a window-wide shortcut (a main-window Ctrl+Z) takes them.
        if event.type() == QEvent.Type.ShortcutOverride and self._shortcut(event):
            event.accept()
            return True
        return QWidget.event(self, event)

    def keyPressEvent(self, event) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Space:
            if not event.isAutoRepeat():
                self._space = True
                self.setCursor(Qt.CursorShape.OpenHandCursor)
            return
        action = self._shortcut(event)
        if action is None:
            QWidget.keyPressEvent(self, event)
            return
        if action in TOOLS:
            self.set_tool(action)
        elif action == "smaller":
            self.set_brush_size(self._size / 1.25 if self._size > 4 else self._size - 1)
        elif action == "bigger":
            self.set_brush_size(self._size * 1.25 if self._size >= 4 else self._size + 1)
        else:
            {"undo": self.undo, "redo": self.redo, "paste": self.paste, "fit": self.fit, "actual": self.actual_size}[
                action
            ]()

    def keyReleaseEvent(self, event) -> None:  # noqa: N802
        if event.key() == Qt.Key.Key_Space and not event.isAutoRepeat():
            self._space = False
            if self._drag != "pan":
                self.setCursor(Qt.CursorShape.CrossCursor)
            return
        QWidget.keyReleaseEvent(self, event)

    # -- drag and drop ----------------------------------------------------------------------------

    def dragEnterEvent(self, event) -> None:  # noqa: N802
        md = event.mimeData()
        if md.hasImage() or any(u.isLocalFile() for u in md.urls()):
            event.acceptProposedAction()

    def dropEvent(self, event) -> None:  # noqa: N802
        md = event.mimeData()
        local = [u.toLocalFile() for u in md.urls() if u.isLocalFile()]
        if local:
            self.load_image(local[0])
        elif md.hasImage():
            self.set_image(from_qimage(QImage(md.imageData())))
        event.acceptProposedAction()
