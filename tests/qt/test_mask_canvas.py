"""The mask canvas: brush/eraser drags paint the pixels under the cursor at several zoom levels,
selections, exact undo/redo, the history bound, autosave and crash restore, bad inputs, keys, and one
screenshot under Xvfb (run as a subprocess of this same file on a real X display)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("PySide6")
from PySide6.QtCore import QMimeData, QPoint, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent, QGuiApplication

from studio.qt.common.images import from_qimage, to_qimage
from studio.qt.edit.mask_canvas import CanvasSession, MaskCanvas

W, H = 160, 120
A, B = (42.0, 32.0), (122.0, 92.0)  # centres of the red and green 4×4 markers, in image pixels
RED, GREEN = (255, 0, 0), (0, 255, 0)


def test_image() -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    img = np.stack([xx % 200, yy % 200, (xx + yy) % 97 + 60], axis=2).astype(np.uint8)
    img[30:34, 40:44] = RED
    img[90:94, 120:124] = GREEN
    return img


test_image.__test__ = False  # a helper, not a test


@pytest.fixture
def canvas(qtbot):
    c = MaskCanvas(size=(W, H))
    qtbot.addWidget(c)
    c.resize(400, 300)
    c.show()
    qtbot.waitExposed(c)
    assert c.set_image(test_image())
    c.set_hardness(1.0)
    c.set_opacity(1.0)
    c.set_brush_size(12)
    c.history.clear()
    return c


def seen_at(c: MaskCanvas, color) -> QPoint:
    """Where the canvas *shows* a colour (from a grab of the widget), as a widget point."""
    shot = from_qimage(c.grab().toImage())
    ys, xs = np.nonzero((shot == np.array(color, np.uint8)).all(axis=2))
    assert xs.size, f"colour {color} not visible on the canvas"
    return QPoint(int(xs.mean() + 0.5), int(ys.mean() + 0.5))


def to_widget(c: MaskCanvas, x: float, y: float) -> QPoint:
    p = c.map_from_image(QPointF(x, y))
    return QPoint(round(p.x()), round(p.y()))


def drag(qtbot, c, points, button=Qt.MouseButton.LeftButton, mods=Qt.KeyboardModifier.NoModifier):
    qtbot.mousePress(c, button, mods, points[0])
    for p in points[1:]:
        qtbot.mouseMove(c, p)
    qtbot.mouseRelease(c, button, mods, points[-1])


def seg_distance(a, b) -> np.ndarray:
    """Distance of every pixel centre to the segment a→b, in image pixels."""
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64) + 0.5
    (ax, ay), (bx, by) = a, b
    dx, dy = bx - ax, by - ay
    t = np.clip(((xx - ax) * dx + (yy - ay) * dy) / (dx * dx + dy * dy), 0, 1)
    return np.hypot(xx - ax - t * dx, yy - ay - t * dy)


@pytest.mark.parametrize("zoom", [0.5, 1.0, 2.0])
def test_brush_drag_paints_along_the_line_at_each_zoom(qtbot, canvas, zoom):
    canvas.set_zoom(zoom)
    assert canvas.zoom() == zoom
    a, b = seen_at(canvas, RED), seen_at(canvas, GREEN)  # press where the markers are on screen
    mid = QPoint((a.x() + b.x()) // 2, (a.y() + b.y()) // 2)
    drag(qtbot, canvas, [a, mid, b])
    m, r, tol = canvas.mask(), 6.0, 1.0 + 1.0 / zoom  # ±half a screen pixel, and the anti-aliased rim
    d = seg_distance(A, B)
    assert (m[d <= r - tol] == 255).all()
    assert (m[d >= r + tol] == 0).all()
    assert np.array_equal(canvas.image(), test_image())  # the brush paints the mask, never the image


def test_eraser_clears_only_along_its_path(qtbot, canvas):
    canvas.fill_mask()
    canvas.set_tool("eraser")
    drag(qtbot, canvas, [to_widget(canvas, *A), to_widget(canvas, *B)])
    m, d, tol = canvas.mask(), seg_distance(A, B), 1.0 + 1.0 / canvas.zoom()
    assert (m[d <= 6 - tol] == 0).all()
    assert (m[d >= 6 + tol] == 255).all()


def test_soft_brush_and_opacity(qtbot, canvas):
    canvas.set_opacity(0.5)
    canvas.set_hardness(0.0)
    canvas.set_brush_size(30)
    drag(qtbot, canvas, [to_widget(canvas, 80, 60)])
    m = canvas.mask()
    assert 120 <= m.max() <= 128  # opacity caps the stroke
    assert 0 < m[60, 80 + 11] < m[60, 80]  # soft: falls off towards the rim
    assert m[60, 80 + 17] == 0


def test_rectangle_and_lasso(qtbot, canvas):
    canvas.set_tool("rect")
    drag(qtbot, canvas, [to_widget(canvas, 10, 20), to_widget(canvas, 30, 25), to_widget(canvas, 50, 60)])
    expect = np.zeros((H, W), np.uint8)
    expect[20:60, 10:50] = 255
    assert np.array_equal(canvas.mask(), expect)
    canvas.set_tool("lasso")
    tri = [(100, 10), (150, 10), (150, 60)]
    drag(qtbot, canvas, [to_widget(canvas, *p) for p in tri])
    m = canvas.mask()
    assert m[15, 145] == 255 and m[50, 148] == 255  # inside the triangle
    assert m[50, 105] == 0 and m[5, 120] == 0  # outside it
    assert np.array_equal(m[:, :90], expect[:, :90])
    # Alt-drag subtracts
    canvas.set_tool("rect")
    drag(qtbot, canvas, [to_widget(canvas, 0, 0), to_widget(canvas, 30, 40)], mods=Qt.KeyboardModifier.AltModifier)
    assert canvas.mask()[20:40, 10:30].max() == 0 and canvas.mask()[45, 20] == 255


def test_fill_invert_clear(canvas):
    canvas.mask_rect(0, 0, 40, 30)
    canvas.invert_mask()
    m = canvas.mask()
    assert m[:30, :40].max() == 0 and m[30:, :].min() == 255 and m[:, 40:].min() == 255
    canvas.fill_mask()
    assert canvas.mask().min() == 255
    canvas.clear_mask()
    assert canvas.mask().max() == 0


def test_undo_redo_restore_exact_pixels(qtbot, canvas):
    states = [(canvas.image(), canvas.mask())]

    def snap():
        states.append((canvas.image(), canvas.mask()))

    drag(qtbot, canvas, [to_widget(canvas, *A), to_widget(canvas, *B)])
    snap()
    canvas.set_hardness(0.2)
    canvas.set_opacity(0.6)
    drag(qtbot, canvas, [to_widget(canvas, 20, 100), to_widget(canvas, 140, 20)])  # soft, over the first
    snap()
    canvas.mask_rect(5, 5, 30, 20)
    snap()
    canvas.invert_mask()
    snap()
    canvas.set_tool("eraser")
    drag(qtbot, canvas, [to_widget(canvas, 0, 60), to_widget(canvas, 159, 60)])
    snap()
    canvas.expand(16, 0, 8, 24)
    snap()
    canvas.set_tool("brush")
    drag(qtbot, canvas, [to_widget(canvas, 2, 2), to_widget(canvas, 30, 3)])
    snap()
    canvas.set_image(np.zeros((64, 48, 3), np.uint8))
    snap()
    assert len({s[1].tobytes() for s in states}) == len(states)  # every step changed something

    for i in range(len(states) - 1, 0, -1):
        assert np.array_equal(canvas.image(), states[i][0]) and np.array_equal(canvas.mask(), states[i][1]), i
        qtbot.keyClick(canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert np.array_equal(canvas.image(), states[0][0]) and np.array_equal(canvas.mask(), states[0][1])
    assert not canvas.undo()
    for i in range(1, len(states)):
        qtbot.keyClick(canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier | Qt.KeyboardModifier.ShiftModifier)
        assert np.array_equal(canvas.image(), states[i][0]) and np.array_equal(canvas.mask(), states[i][1]), i
    assert not canvas.redo()
    # a new edit after undo drops the redo branch
    canvas.undo()
    canvas.fill_mask()
    assert not canvas.history.can_redo()


def test_edits_arriving_mid_stroke(qtbot, canvas):
    canvas.mask_rect(0, 0, 10, 10)
    before = canvas.mask()
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=to_widget(canvas, *A))
    qtbot.mouseMove(canvas, to_widget(canvas, *B))
    assert canvas.mask()[int(B[1]), int(B[0])] == 255
    qtbot.keyClick(canvas, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)  # cancels just the stroke
    assert np.array_equal(canvas.mask(), before) and canvas.history.index == 1
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=to_widget(canvas, *B))
    assert np.array_equal(canvas.mask(), before) and canvas.history.index == 1
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=to_widget(canvas, *A))
    qtbot.mouseMove(canvas, to_widget(canvas, *B))
    canvas.invert_mask()  # a toolbar button mid-stroke: the stroke is kept, then inverted
    assert canvas.history.index == 3 and canvas.mask()[int(B[1]), int(B[0])] == 0
    qtbot.mouseMove(canvas, to_widget(canvas, 20, 100))  # the rest of the drag no longer paints
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=to_widget(canvas, 20, 100))
    assert canvas.history.index == 3 and canvas.mask()[100, 20] == 255
    qtbot.mousePress(canvas, Qt.MouseButton.LeftButton, pos=to_widget(canvas, *A))
    canvas.set_image(np.zeros((50, 60, 3), np.uint8))  # "use as input" arriving mid-stroke
    qtbot.mouseMove(canvas, to_widget(canvas, 30, 30))
    qtbot.mouseRelease(canvas, Qt.MouseButton.LeftButton, pos=to_widget(canvas, 30, 30))
    assert canvas.image_size() == (60, 50) and canvas.mask().max() == 0
    assert canvas.undo() and canvas.undo()
    assert np.array_equal(canvas.image(), test_image())


def test_history_is_bounded_and_stores_patches(qtbot):
    c = MaskCanvas(size=(W, H), history_steps=5)
    qtbot.addWidget(c)
    states = [c.mask()]
    for i in range(8):
        c.mask_rect(i * 10, i * 5, 6, 6)
        states.append(c.mask())
    assert len(c.history) == 5
    assert all(p.after.shape == (6, 6) for e in c.history.entries for p in e.patches)  # bbox, not a full copy
    for _ in range(5):
        assert c.undo()
    assert not c.undo()
    assert np.array_equal(c.mask(), states[3])
    while c.redo():
        pass
    assert np.array_equal(c.mask(), states[8])
    c.history.max_bytes = 3 * 2 * 36  # room for three 6×6 before/after patches
    c.mask_rect(0, 100, 6, 6)
    assert len(c.history) == 3 and c.history.nbytes <= c.history.max_bytes


def test_autosave_restores_after_a_crash(qtbot, studio_home):
    from studio.core import paths

    c = MaskCanvas(size=(W, H))
    c.resize(300, 200)
    s = CanvasSession(c, delay_ms=30)
    assert s.folder == paths.data_dir() / "session"
    c.set_image(test_image())
    c.mask_rect(10, 10, 30, 30)
    c.mask_rect(60, 40, 30, 30)
    c.undo()  # the history position is part of the session
    with qtbot.waitSignal(s.saved, timeout=3000):
        pass
    image, mask, index = c.image(), c.mask(), c.history.index
    c.mask_rect(100, 100, 5, 5)  # an edit not yet saved when the "crash" comes
    c.deleteLater()  # the window goes away without session.close()
    qtbot.wait(60)
    files = s.state()["files"]
    assert sorted(f.name for f in s.folder.iterdir()) == sorted(
        [*files.values(), "state.json"]
    )  # no temp or stale files

    c2 = MaskCanvas(size=(32, 32))
    qtbot.addWidget(c2)
    s2 = CanvasSession(c2, delay_ms=30)
    assert s2.crashed()
    assert s2.restore()
    assert np.array_equal(c2.image(), image) and np.array_equal(c2.mask(), mask)
    assert c2.history.index == index == 2 and c2.history.can_redo()
    c2.redo()
    assert c2.mask()[50, 70] == 255
    c2.undo()
    c2.undo()
    assert np.array_equal(c2.image(), test_image()) and c2.mask().max() == 0
    s2.close()
    assert not s2.crashed()


def test_autosave_failure_is_reported(qtbot, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the session folder should be")
    c = MaskCanvas(size=(W, H))
    qtbot.addWidget(c)
    s = CanvasSession(c, blocker, delay_ms=10)
    with qtbot.waitSignal(s.failed, timeout=3000) as sig:
        c.fill_mask()
    assert "Autosave failed" in sig.args[0]
    assert c.mask().min() == 255 and c.undo()  # the canvas is untouched by the failed save


def test_bad_inputs_report_a_problem_and_keep_the_canvas(qtbot, canvas, tmp_path):
    canvas.mask_rect(10, 10, 20, 20)
    img0, mask0 = canvas.image(), canvas.mask()
    notes = []
    canvas.problem.connect(notes.append)

    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    assert not canvas.load_image(text)
    assert "notes.png" in notes[-1] and "not an image" in notes[-1]
    assert not canvas.load_image(tmp_path / "missing.png")
    wrong = tmp_path / "wrong.png"
    Image.new("L", (W + 1, H), 255).save(wrong)
    assert not canvas.load_mask(wrong)
    assert f"{W + 1}×{H}" in notes[-1] and f"{W}×{H}" in notes[-1]
    assert not canvas.set_mask(np.zeros((5, 5), np.uint8))
    assert not canvas.set_image(np.zeros((4, 4, 2), np.uint8))
    assert not canvas.expand(-5, 0, 0, 0)
    assert len(notes) == 6
    assert np.array_equal(canvas.image(), img0) and np.array_equal(canvas.mask(), mask0)


def test_unusual_images_are_converted(canvas, tmp_path):
    p16 = tmp_path / "deep.png"
    deep = np.full((20, 30), 32896, np.uint16)  # 0x8080: mid grey in 16 bits
    deep[:, :10] = 65535
    Image.fromarray(deep).save(p16)
    assert canvas.load_image(p16)
    got = canvas.image()
    assert got.shape == (20, 30, 3) and (got[:, :10] == 255).all() and (got[:, 10:] == 128).all()  # scaled, not clipped
    cmyk = tmp_path / "print.tif"
    Image.new("CMYK", (12, 10), (0, 255, 255, 0)).save(cmyk)  # pure red in CMYK
    assert canvas.load_image(cmyk)
    px = canvas.image()[5, 5]
    assert px[0] > 200 and px[1] < 60 and px[2] < 60
    rgba = tmp_path / "cut.png"
    Image.new("RGBA", (8, 6), (0, 0, 0, 0)).save(rgba)  # fully transparent: flattened over white
    assert canvas.load_image(rgba)
    assert canvas.image().min() == 255
    good = tmp_path / "m.png"
    Image.new("L", (8, 6), 200).save(good)
    assert canvas.load_mask(good) and canvas.mask().min() == 200


def test_brackets_change_brush_size_and_keys_pick_tools(qtbot, canvas):
    canvas.set_brush_size(40)
    qtbot.keyClick(canvas, Qt.Key.Key_BracketRight)
    assert canvas.brush_size() == 50
    qtbot.keyClick(canvas, Qt.Key.Key_BracketLeft)
    qtbot.keyClick(canvas, Qt.Key.Key_BracketLeft)
    assert canvas.brush_size() == 32
    qtbot.keyClick(canvas, Qt.Key.Key_E)
    assert canvas.tool() == "eraser"


def test_canvas_keys_win_over_a_window_shortcut(qtbot):
    from PySide6.QtGui import QAction, QKeySequence
    from PySide6.QtWidgets import QVBoxLayout, QWidget

    window = QWidget()
    qtbot.addWidget(window)
    hits = []
    act = QAction("Undo send", window)
    act.setShortcut(QKeySequence("Ctrl+Z"))
    act.triggered.connect(lambda: hits.append(1))
    window.addAction(act)
    c = MaskCanvas(size=(W, H))
    QVBoxLayout(window).addWidget(c)
    window.show()
    window.activateWindow()
    qtbot.waitUntil(window.isActiveWindow)
    c.setFocus()
    c.fill_mask()
    qtbot.keyClick(c, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert c.mask().max() == 0 and hits == []  # the canvas undid; the window's shortcut did not fire
    c.clearFocus()
    qtbot.keyClick(window, Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)
    assert hits == [1]  # outside the canvas the window's shortcut still works


def test_wheel_zooms_around_the_cursor_and_space_drag_pans(qtbot, canvas):
    from PySide6.QtCore import QPoint as P
    from PySide6.QtGui import QWheelEvent
    from PySide6.QtWidgets import QApplication

    at = QPointF(150, 100)
    under = canvas.map_to_image(at)
    z0 = canvas.zoom()
    ev = QWheelEvent(
        at,
        canvas.mapToGlobal(at),
        P(0, 0),
        P(0, 240),
        Qt.MouseButton.NoButton,
        Qt.KeyboardModifier.NoModifier,
        Qt.ScrollPhase.NoScrollPhase,
        False,
    )
    QApplication.sendEvent(canvas, ev)
    assert abs(canvas.zoom() - z0 * 1.25**2) < 1e-9
    again = canvas.map_to_image(at)
    assert abs(again.x() - under.x()) < 1e-6 and abs(again.y() - under.y()) < 1e-6
    r0 = canvas.image_rect()
    qtbot.keyPress(canvas, Qt.Key.Key_Space)
    drag(qtbot, canvas, [P(100, 100), P(140, 130)])
    qtbot.keyRelease(canvas, Qt.Key.Key_Space)
    r1 = canvas.image_rect()
    assert (r1.x() - r0.x(), r1.y() - r0.y()) == (40, 30)
    assert canvas.mask().max() == 0  # space-drag pans instead of painting
    drag(qtbot, canvas, [P(100, 100), P(140, 130)])
    assert canvas.mask().max() == 255  # space released: the brush paints again


def test_zoom_pan_fit_and_100(qtbot, canvas):
    at = QPointF(123, 77)
    before = canvas.map_to_image(at)
    canvas.set_zoom(3.0, at)
    after = canvas.map_to_image(at)
    assert abs(before.x() - after.x()) < 1e-6 and abs(before.y() - after.y()) < 1e-6
    rect0 = canvas.image_rect()
    drag(qtbot, canvas, [QPoint(200, 150), QPoint(230, 140)], button=Qt.MouseButton.MiddleButton)
    rect1 = canvas.image_rect()
    assert (rect1.x() - rect0.x(), rect1.y() - rect0.y()) == (30, -10)
    assert canvas.mask().max() == 0  # panning does not paint
    canvas.actual_size()
    assert canvas.image_rect().width() == W
    canvas.fit()
    r = canvas.image_rect()
    assert r.width() <= canvas.width() and r.height() <= canvas.height() and canvas.zoom() > 2


def test_expand_handles_and_numbers(qtbot, canvas):
    canvas.set_zoom(1.0)
    qtbot.keyClick(canvas, Qt.Key.Key_X)
    assert canvas.tool() == "expand"
    r = canvas.image_rect()
    right_edge = QPoint(round(r.right()), round(r.center().y()))
    drag(qtbot, canvas, [right_edge, right_edge + QPoint(20, 0), right_edge + QPoint(43, 5)])  # 43 px → 40 (snap 8)
    assert canvas.image_size() == (W + 40, H) and canvas.expansion() == (0, 0, 40, 0)
    assert np.array_equal(canvas.image()[:, :W], test_image())  # the original sits where it was
    assert (canvas.mask()[:, W:] == 255).all() and canvas.mask()[:, :W].max() == 0
    assert abs(canvas.image_rect().x() - r.x()) < 1e-6  # and stays put on screen
    inside = QPoint(round(r.center().x()), round(r.center().y()))
    drag(qtbot, canvas, [inside, inside + QPoint(60, 60)])  # not on an edge: nothing happens
    assert canvas.image_size() == (W + 40, H)
    assert canvas.expand(8, 16, 0, 0) and canvas.image_size() == (W + 48, H + 16)
    assert canvas.image_rect().topLeft() == r.topLeft() - QPointF(8, 16)  # the old pixels did not move on screen
    assert canvas.expansion() == (8, 16, 40, 0)
    assert np.array_equal(canvas.image()[16:, 8 : 8 + W], test_image())
    canvas.undo()
    canvas.undo()
    assert canvas.image_size() == (W, H) and canvas.expansion() == (0, 0, 0, 0)


def test_toolbar_drives_the_canvas(qtbot, canvas):
    from studio.qt.edit.toolbar import MaskToolBar

    bar = MaskToolBar(canvas)
    qtbot.addWidget(bar)
    assert all(a.toolTip() for a in bar.actions() if a.text())
    bar.tool_actions["lasso"].trigger()
    assert canvas.tool() == "lasso"
    canvas.set_tool("eraser")
    assert bar.tool_actions["eraser"].isChecked()
    bar.size_box.setValue(77)
    assert canvas.brush_size() == 77
    qtbot.keyClick(canvas, Qt.Key.Key_BracketRight)
    assert bar.size_box.value() == round(77 * 1.25)
    bar.hardness_box.setValue(25)
    assert canvas.hardness() == 0.25
    assert not bar.undo_action.isEnabled()
    bar.fill_action.trigger()
    assert canvas.mask().min() == 255 and bar.undo_action.isEnabled() and "Fill" in bar.undo_action.toolTip()
    bar.undo_action.trigger()
    assert canvas.mask().max() == 0 and bar.redo_action.isEnabled()
    bar.overlay_action.trigger()
    assert not canvas.overlay_visible()
    bar.outpaint_boxes["left"].setValue(16)
    bar.outpaint_boxes["bottom"].setValue(8)
    assert bar.apply_outpaint()
    assert canvas.image_size() == (W + 16, H + 8) and canvas.expansion() == (16, 0, 0, 8)
    assert bar.outpaint_boxes["left"].value() == 0 and not bar.apply_outpaint()  # all zero: nothing to do


def test_paste_drop_export_and_preview(qtbot, canvas, tmp_path):
    other = np.zeros((24, 32, 3), np.uint8)
    other[:, :, 2] = 200
    QGuiApplication.clipboard().setImage(to_qimage(other))
    qtbot.keyClick(canvas, Qt.Key.Key_V, Qt.KeyboardModifier.ControlModifier)
    assert np.array_equal(canvas.image(), other)

    f = tmp_path / "dropped.png"
    Image.fromarray(test_image()).save(f)
    md = QMimeData()
    md.setUrls([QUrl.fromLocalFile(str(f))])
    ev = QDropEvent(
        QPointF(50, 50), Qt.DropAction.CopyAction, md, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
    )
    canvas.dropEvent(ev)
    assert np.array_equal(canvas.image(), test_image())

    img_path, mask_path = canvas.export_inputs(tmp_path / "inputs")
    assert mask_path is None and np.array_equal(np.asarray(Image.open(img_path)), test_image())
    canvas.mask_rect(0, 0, 10, 10)
    img_ref, mask_ref = canvas.export_refs(tmp_path / "inputs")
    assert np.array_equal(np.asarray(Image.open(mask_ref.path)), canvas.mask()) and len(mask_ref.sha256) == 64

    canvas.set_overlay_color("#00ff00", 1.0)
    c00 = to_widget(canvas, 4, 4)  # inside the masked 10×10 corner
    assert tuple(from_qimage(canvas.grab().toImage())[c00.y(), c00.x()]) == (0, 255, 0)
    canvas.set_overlay_visible(False)
    assert tuple(from_qimage(canvas.grab().toImage())[c00.y(), c00.x()]) == tuple(test_image()[4, 4])
    canvas.show_preview(np.full((H // 2, W // 2, 3), (0, 0, 255), np.uint8))  # any size: scaled to the canvas
    shot = from_qimage(canvas.grab().toImage())
    c = to_widget(canvas, 80, 60)
    assert tuple(shot[c.y(), c.x()]) == (0, 0, 255)


# -- screenshot under Xvfb -----------------------------------------------------------------------


XVFB_SCREEN = (800, 600)  # for the shared xvfb_display fixture (tests/conftest.py)


def test_screenshot_shows_overlay_over_preview(xvfb_display, tmp_path):
    out = tmp_path / "mask-canvas.png"
    env = dict(os.environ, DISPLAY=xvfb_display, QT_QPA_PLATFORM="xcb", STUDIO_HOME=str(tmp_path / "home"))
    env.pop("WAYLAND_DISPLAY", None)
    proc = subprocess.run([sys.executable, __file__, str(out)], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]
    dest = os.environ.get("STUDIO_SCREENSHOT_DIR")
    if dest:
        Path(dest).mkdir(parents=True, exist_ok=True)
        shutil.copy2(out, Path(dest) / out.name)
    info = json.loads(out.with_suffix(".json").read_text())
    assert info["platform"] == "xcb"
    shot = np.asarray(Image.open(out).convert("RGB")).astype(float)
    with np.load(out.with_suffix(".npz")) as z:
        mask, preview = z["mask"], z["preview"].astype(float)
    x0, y0, zoom = info["x"], info["y"], info["zoom"]
    iy, ix = np.mgrid[2 : mask.shape[0] - 2 : 3, 2 : mask.shape[1] - 2 : 3]
    seen = shot[(y0 + (iy + 0.5) * zoom).astype(int), (x0 + (ix + 0.5) * zoom).astype(int)]
    m, p = mask[iy, ix], preview[iy, ix]
    full, empty = m == 255, m == 0
    assert full.sum() > 100 and empty.sum() > 1000
    # outside the mask the screen shows the preview itself; inside, the preview tinted by the overlay colour
    assert np.abs(seen[empty] - p[empty]).mean() < 4
    expect = p[full] * (1 - info["opacity"]) + np.array(info["overlay"]) * info["opacity"]
    assert np.abs(seen[full] - expect).mean() < 6
    assert (seen[full][:, 0] - p[full][:, 0]).mean() > 40  # visibly redder where masked


def scene(h: int = 192, w: int = 256):
    """A small landscape, the preview of a tree being inpainted into it, and the brushed mask's path."""
    yy, xx = np.mgrid[0:h, 0:w].astype(float)
    img = np.stack([90 + yy * 0.8, 140 + yy * 0.5, 225 - yy * 0.3], axis=2)
    ground = yy > 125 + 9 * np.sin(xx / 28)
    img[ground] = np.stack([60 + 0 * yy, 125 - (yy - 125) * 0.6, 55 + 0 * yy], axis=2)[ground]
    img[np.hypot(xx - 205, yy - 38) < 17] = (255, 228, 150)
    preview = img.copy()
    preview[(np.abs(xx - 92) < 5) & (yy > 105) & (yy < 150)] = (95, 65, 40)  # trunk
    crown = np.hypot((xx - 92) / 1.1, yy - 92) < 26
    preview[crown] = np.stack([40 + 20 * np.sin(xx / 3), 95 + 25 * np.cos(yy / 4), 45 + 0 * xx], axis=2)[crown]
    path = [(92, 70), (92, 100), (92, 135), (92, 148)]
    return img.clip(0, 255).astype(np.uint8), preview.clip(0, 255).astype(np.uint8), path


def _screenshot(out: str) -> None:
    """Subprocess side: the canvas with a preview and a mask overlay on a real display, grabbed."""
    from PySide6.QtWidgets import QApplication

    app = QApplication([])
    img, preview, path = scene()
    c = MaskCanvas(size=(img.shape[1], img.shape[0]))
    c.resize(640, 480)
    c.set_image(img)
    c.set_hardness(1.0)
    c.set_brush_size(64)
    c.paint_stroke(path)
    c.show_preview(preview)
    c.show()
    for _ in range(25):
        app.processEvents()
        time.sleep(0.02)
    c.screen().grabWindow(0).save(out)
    r = c.image_rect()
    origin = c.mapToGlobal(QPoint(0, 0))
    color = c.overlay_color()
    Path(out).with_suffix(".json").write_text(
        json.dumps(
            {
                "platform": QGuiApplication.platformName(),
                "x": origin.x() + r.x(),
                "y": origin.y() + r.y(),
                "zoom": c.zoom(),
                "overlay": [color.red(), color.green(), color.blue()],
                "opacity": c.overlay_opacity(),
            }
        )
    )
    np.savez(Path(out).with_suffix(".npz"), mask=c.mask(), preview=preview)


if __name__ == "__main__":
    _screenshot(sys.argv[1])
