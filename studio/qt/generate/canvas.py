"""The central canvas: shows the newest preview while a run goes, the chosen step when scrubbing,
and the finished image at the end. Paints only on demand; a burst of previews costs one paint."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QRectF, QSize, Qt, Signal
from PySide6.QtGui import QColor, QFont, QImage, QPainter, QPainterPath, QPen
from PySide6.QtWidgets import QMenu, QSizePolicy, QToolButton, QWidget

from studio.qt.common import style
from studio.qt.common.images import to_qimage

EMPTY_TEXT = "Describe an image in the Prompt panel, then press Ctrl+Enter"


class CanvasView(QWidget):
    """Image fitted to the widget with its aspect ratio, a caption chip and an empty state.
    A finished image (`show_array(..., final=True)`) offers "Use as input" and "Upscale…" (buttons
    and context menu)."""

    useAsInputRequested = Signal(object)  # the finished image, (H, W, 3) uint8
    upscaleRequested = Signal(object)  # the finished image, (H, W, 3) uint8

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("Canvas")
        self.setMinimumSize(240, 200)
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setAttribute(Qt.WidgetAttribute.WA_OpaquePaintEvent)
        self._image: QImage | None = None
        self._aspect: tuple[int, int] | None = None  # (w, h) of the image being made
        self.caption = ""
        self.placeholder = EMPTY_TEXT
        self.frames_painted = 0
        self._final: np.ndarray | None = None
        self.setToolTip("The image being made. Drag the Steps slider to look at any earlier step.")
        self.use_button = QToolButton(self, text="Use as input", objectName="UseAsInput")
        self.use_button.setToolTip("Edit this image: put it on the Edit canvas for img2img or inpainting.")
        self.use_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.use_button.clicked.connect(self.use_as_input)
        self.use_button.hide()
        self.upscale_button = QToolButton(self, text="Upscale…", objectName="CanvasUpscale")
        self.upscale_button.setToolTip("Upscale this image with an upscaler model (Real-ESRGAN, ESRGAN).")
        self.upscale_button.setCursor(Qt.CursorShape.PointingHandCursor)
        self.upscale_button.clicked.connect(self.upscale)
        self.upscale_button.hide()

    # -- content --------------------------------------------------------------------------------------
    def show_array(
        self, array: np.ndarray | None, caption: str = "", aspect: tuple[int, int] | None = None, final: bool = False
    ) -> None:
        self.show_image(to_qimage(array), caption, aspect)
        if final and array is not None:
            self._final = array
            self.use_button.show()
            self.upscale_button.show()
            self._place_button()

    def final_image(self) -> np.ndarray | None:
        """The finished image on show (None for a preview step or an empty canvas)."""
        return self._final

    def use_as_input(self) -> bool:
        if self._final is None:
            return False
        self.useAsInputRequested.emit(self._final)
        return True

    def upscale(self) -> bool:
        if self._final is None:
            return False
        self.upscaleRequested.emit(self._final)
        return True

    def contextMenuEvent(self, event) -> None:  # noqa: N802
        if self._final is None:
            return
        menu = QMenu(self)
        menu.addAction("Use as input", self.use_as_input)
        menu.addAction("Upscale…", self.upscale)
        menu.exec(event.globalPos())

    def resizeEvent(self, event) -> None:  # noqa: N802
        super().resizeEvent(event)
        self._place_button()

    def _place_button(self) -> None:
        r = self.image_rect()
        right, top = int(min(r.right(), self.width() - 4)) - 8, int(max(r.top(), 4) + 8)
        for b in (self.use_button, self.upscale_button):
            b.adjustSize()
            b.move(right - b.width(), top)
            right -= b.width() + 6

    def show_image(self, image: QImage | None, caption: str = "", aspect: tuple[int, int] | None = None) -> None:
        self._image = image
        self._final = None
        self.use_button.hide()
        self.upscale_button.hide()
        self.caption = caption
        if aspect:
            self._aspect = aspect
        self.update()  # coalesced by Qt: many calls before the next paint cost one paint

    def clear(self, placeholder: str | None = None) -> None:
        self._image = None
        self._final = None
        self.use_button.hide()
        self.upscale_button.hide()
        self.caption = ""
        if placeholder is not None:
            self.placeholder = placeholder
        self.update()

    def image(self) -> QImage | None:
        return self._image

    def sizeHint(self) -> QSize:  # noqa: N802
        return QSize(640, 560)

    def image_rect(self) -> QRectF:
        """Where the image is drawn (widget coordinates)."""
        margin = 24.0
        area = QRectF(self.rect()).adjusted(margin, margin, -margin, -margin - 8)
        if self._image is not None and not self._image.isNull():
            w, h = self._image.width(), self._image.height()
        elif self._aspect:
            w, h = self._aspect
        else:
            w, h = 1, 1
        scale = min(area.width() / max(w, 1), area.height() / max(h, 1))
        dw, dh = w * scale, h * scale
        return QRectF(area.center().x() - dw / 2, area.center().y() - dh / 2, dw, dh)

    # -- painting -------------------------------------------------------------------------------------
    def paintEvent(self, event) -> None:  # noqa: N802
        self.frames_painted += 1
        p = QPainter(self)
        p.fillRect(self.rect(), style.qcolour("base"))
        p.setRenderHint(QPainter.RenderHint.Antialiasing)
        p.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform)
        if self._image is None or self._image.isNull():
            self._paint_empty(p)
            p.end()
            return
        r = self.image_rect()
        shadow = QPainterPath()
        shadow.addRoundedRect(r.adjusted(-1, -1, 1, 1), 3, 3)
        p.fillPath(shadow, QColor(0, 0, 0, 120))
        p.drawImage(r, self._image)
        if self.caption:
            self._paint_caption(p, r)
        p.end()

    def _paint_empty(self, p: QPainter) -> None:
        r = self.image_rect() if self._aspect else QRectF(self.rect()).adjusted(48, 48, -48, -48)
        pen = QPen(style.qcolour("selection"), 1.5, Qt.PenStyle.DashLine)
        p.setPen(pen)
        p.drawRoundedRect(r, 10, 10)
        f = QFont(self.font())
        f.setPointSizeF(f.pointSizeF() * 1.15)
        p.setFont(f)
        p.setPen(style.qcolour("text_dim"))
        p.drawText(
            r.adjusted(24, 24, -24, -24), Qt.AlignmentFlag.AlignCenter | Qt.TextFlag.TextWordWrap, self.placeholder
        )

    def _paint_caption(self, p: QPainter, r: QRectF) -> None:
        f = QFont(self.font())
        f.setPointSizeF(max(8.0, f.pointSizeF() * 0.9))
        p.setFont(f)
        fm = p.fontMetrics()
        tw = fm.horizontalAdvance(self.caption) + 18
        th = fm.height() + 8
        chip = QRectF(r.left() + 10, r.bottom() - th - 10, tw, th)
        if chip.right() > r.right() - 6:
            chip.setRight(r.right() - 6)
        path = QPainterPath()
        path.addRoundedRect(chip, th / 2, th / 2)
        p.fillPath(path, QColor(12, 13, 16, 200))
        p.setPen(QColor("#e6e9ef"))  # on the dark chip over the image, whatever the scheme
        p.drawText(
            chip,
            Qt.AlignmentFlag.AlignCenter,
            fm.elidedText(self.caption, Qt.TextElideMode.ElideRight, int(chip.width()) - 12),
        )
