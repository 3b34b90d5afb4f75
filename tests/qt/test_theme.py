"""The dark theme draws what a person needs to see: spin-box arrows and combo-box arrows stand out
from their buttons (the style sheet once styled the buttons and left them blank)."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtWidgets import (
    QComboBox,
    QSpinBox,
    QStyle,
    QStyleOptionComboBox,
    QStyleOptionSpinBox,
    QVBoxLayout,
    QWidget,
)

from studio.qt.common.images import from_qimage

pytestmark = pytest.mark.usefixtures("themed_app")


def luminance(pixels: np.ndarray) -> np.ndarray:
    return pixels[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)


_hosts: list[QWidget] = []  # keeps each test's widget alive (qtbot only closes it at the end)


def shown(qtbot, widget: QWidget) -> np.ndarray:
    host = QWidget()
    _hosts.append(host)
    QVBoxLayout(host).addWidget(widget)
    qtbot.addWidget(host)
    host.resize(220, 60)
    host.show()
    qtbot.waitExposed(host)
    qtbot.waitUntil(lambda: widget.width() > 100)
    return from_qimage(widget.grab().toImage())


def contrast(img: np.ndarray, rect, ratio: float) -> float:
    """Brightest minus the median luminance inside `rect` (device pixels: the grab's own scale)."""
    x, y, w, h = (round(v * ratio) for v in (rect.x(), rect.y(), rect.width(), rect.height()))
    region = luminance(img[y : y + h, x : x + w])
    assert region.size, rect
    return float(region.max() - np.median(region))


def test_spin_box_arrows_are_visible(qtbot):
    spin = QSpinBox(minimum=0, maximum=10, value=5)
    img = shown(qtbot, spin)
    opt = QStyleOptionSpinBox()
    spin.initStyleOption(opt)
    ratio = img.shape[1] / spin.width()
    for sub in (QStyle.SubControl.SC_SpinBoxUp, QStyle.SubControl.SC_SpinBoxDown):
        rect = spin.style().subControlRect(QStyle.ComplexControl.CC_SpinBox, opt, sub, spin)
        assert rect.width() >= 10 and rect.height() >= 6, (sub, rect)
        assert contrast(img, rect, ratio) > 90, f"{sub}: no visible arrow on the button"


def test_spin_box_arrow_at_its_limit_is_dimmed_not_gone(qtbot):
    spin = QSpinBox(minimum=0, maximum=10, value=0)  # down is "off": dimmed, still drawn
    img = shown(qtbot, spin)
    opt = QStyleOptionSpinBox()
    spin.initStyleOption(opt)
    ratio = img.shape[1] / spin.width()
    down = spin.style().subControlRect(QStyle.ComplexControl.CC_SpinBox, opt, QStyle.SubControl.SC_SpinBoxDown, spin)
    up = spin.style().subControlRect(QStyle.ComplexControl.CC_SpinBox, opt, QStyle.SubControl.SC_SpinBoxUp, spin)
    assert 15 < contrast(img, down, ratio) < contrast(img, up, ratio)


def test_combo_box_arrow_is_visible(qtbot):
    combo = QComboBox()
    combo.addItems(["DPM++ 2M", "Euler"])
    img = shown(qtbot, combo)
    opt = QStyleOptionComboBox()
    combo.initStyleOption(opt)
    rect = combo.style().subControlRect(
        QStyle.ComplexControl.CC_ComboBox, opt, QStyle.SubControl.SC_ComboBoxArrow, combo
    )
    assert contrast(img, rect, img.shape[1] / combo.width()) > 90
