"""numpy (H, W, 3) uint8 ⇄ QImage, without touching torch."""

from __future__ import annotations

from typing import overload

import numpy as np
from PySide6.QtGui import QImage


@overload
def to_qimage(array: np.ndarray) -> QImage: ...
@overload
def to_qimage(array: None) -> None: ...
def to_qimage(array: np.ndarray | None) -> QImage | None:
    """A QImage that owns a copy of `array` (H, W, 3|4 uint8, or H, W gray)."""
    if array is None:
        return None
    a = np.asarray(array)
    if a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    a = np.ascontiguousarray(a)
    h, w, c = a.shape
    fmt = QImage.Format.Format_RGBA8888 if c == 4 else QImage.Format.Format_RGB888
    return QImage(a.data, w, h, c * w, fmt).copy()


def from_qimage(image: QImage) -> np.ndarray:
    """(H, W, 3) uint8 copy of a QImage."""
    img = image.convertToFormat(QImage.Format.Format_RGB888)
    w, h, bpl = img.width(), img.height(), img.bytesPerLine()
    buf = np.frombuffer(img.constBits(), dtype=np.uint8, count=bpl * h).reshape(h, bpl)
    return buf[:, : w * 3].reshape(h, w, 3).copy()
