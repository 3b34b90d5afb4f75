"""The mask toolbar in a narrow centre area: its groups wrap onto more rows and every tool stays
on screen and clickable; the Outpaint… menu's numbers and fill modes (edge / mirror / noise)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("PySide6")
from PySide6.QtCore import QPoint, QRect, Qt
from PySide6.QtWidgets import QAbstractSpinBox, QToolButton, QWidget

from studio.qt.edit.workspace import EditWorkspace

W, H = 96, 64


def picture() -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W]
    return np.stack([x * 2, y * 3, (x + y) % 256], -1).astype(np.uint8)


@pytest.fixture
def workspace(qtbot, tmp_path):
    ws = EditWorkspace(session_folder=tmp_path / "session")
    qtbot.addWidget(ws)
    ws.resize(1200, 500)
    ws.show()
    qtbot.waitExposed(ws)
    assert ws.set_input(picture())
    return ws


def _controls(bar) -> list[QWidget]:
    """The toolbar's own buttons and boxes (not those inside the Outpaint… drop-down)."""
    found = [*bar.findChildren(QToolButton), *bar.findChildren(QAbstractSpinBox)]
    return [c for c in found if c.window() is bar.window()]


def _on_screen(ws, widget) -> bool:
    """Visible, with its whole rectangle inside the workspace (nothing clipped off the right)."""
    top_left = widget.mapTo(ws, QPoint(0, 0))
    return widget.isVisible() and ws.rect().contains(QRect(top_left, widget.size()))


@pytest.mark.parametrize("width", [300, 420, 640])
def test_every_tool_stays_reachable_in_a_narrow_centre(qtbot, workspace, width):
    ws, bar = workspace, workspace.toolbar
    wide_rows = len(bar.flow.rows(bar.width()))
    ws.resize(width, 500)
    qtbot.waitUntil(lambda: bar.width() == width)
    assert ws.minimumSizeHint().width() <= width  # the toolbar does not force the window wider
    assert len(bar.flow.rows(width)) > wide_rows  # it wrapped onto more rows …
    controls = _controls(bar)
    assert len(controls) >= 20
    for c in controls:
        assert _on_screen(ws, c), c.text() if isinstance(c, QToolButton) else c.toolTip()
    for a, b in zip(controls, controls[1:]):  # … without overlapping
        ra, rb = (QRect(c.mapTo(ws, QPoint(0, 0)), c.size()) for c in (a, b))
        assert not ra.intersects(rb)
    assert ws.canvas.height() > 100  # and the canvas keeps room to paint
    # Clicking the buttons works at this width: tools, mask operations, undo.
    expand = next(b for b in bar.buttons if b.defaultAction() is bar.tool_actions["expand"])
    qtbot.mouseClick(expand, Qt.MouseButton.LeftButton)
    assert ws.canvas.tool() == "expand"
    fill = next(b for b in bar.buttons if b.defaultAction() is bar.fill_action)
    qtbot.mouseClick(fill, Qt.MouseButton.LeftButton)
    assert ws.canvas.mask().min() == 255
    undo = next(b for b in bar.buttons if b.defaultAction() is bar.undo_action)
    qtbot.mouseClick(undo, Qt.MouseButton.LeftButton)
    assert ws.canvas.mask().max() == 0


def test_the_rows_shrink_back_when_wide_again(qtbot, workspace):
    bar = workspace.toolbar
    wide = bar.height()
    workspace.resize(360, 500)
    qtbot.waitUntil(lambda: bar.height() > wide)
    workspace.resize(1200, 500)
    qtbot.waitUntil(lambda: bar.height() == wide)


@pytest.mark.parametrize("fill", ["edge", "mirror", "noise"])
def test_outpaint_numbers_and_fill_modes(qtbot, workspace, fill):
    from studio.engine.inpaint import outpaint_canvas

    ws, bar = workspace, workspace.toolbar
    bar.fill_buttons[fill].setChecked(True)
    assert ws.canvas.outpaint_fill() == fill
    bar.outpaint_boxes["left"].setValue(24)
    bar.outpaint_boxes["top"].setValue(8)
    assert bar.apply_outpaint()
    img, mask = ws.canvas.image(), ws.canvas.mask()
    assert img.shape == (H + 8, W + 24, 3) and ws.canvas.expansion() == (24, 8, 0, 0)
    assert np.array_equal(img[8:, 24:], picture())  # the original where it was
    assert (mask[:8] == 255).all() and (mask[:, :24] == 255).all() and mask[8:, 24:].max() == 0
    want, _, _ = outpaint_canvas(picture(), (24, 8, 0, 0), fill, ws.canvas.history.index - 1, 0)
    assert np.array_equal(img, want)  # filled exactly as the engine fills --outpaint-fill
    if fill == "mirror":
        assert not np.array_equal(img[8:, :24], np.repeat(picture()[:, :1], 24, axis=1))  # not just edge
    if fill == "noise":
        assert img[:8, 24:].std() > 40
    ws.canvas.undo()
    assert ws.canvas.image_size() == (W, H)


def test_the_expand_tool_uses_the_chosen_fill(qtbot, workspace):
    ws = workspace
    ws.toolbar.fill_buttons["mirror"].setChecked(True)
    with pytest.raises(ValueError):
        ws.canvas.set_outpaint_fill("smear")
    assert ws.canvas.expand(0, 0, 16, 0)
    img = ws.canvas.image()
    assert not (img[:, W:] == img[:, W - 1 : W]).all()  # mirrored (blurred), not repeated
