"""The Edit tab in the real window on the tiny SD1.5 pipeline: inpaint and img2img from the mask
canvas, live composited previews, "Use as input" from a result and from the gallery, and the canvas
session restored after a crash. Runs are short (≤ 4 steps, ~64 px) for a 2-core CPU."""

from __future__ import annotations

import numpy as np
from PIL import Image
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from studio.core.hashing import sha256_bytes

RUN_TIMEOUT_MS = 90_000


def recording_engine(got: list):
    """An engine factory whose engine records every request it is asked to generate."""

    def factory():
        from studio.engine.engine import Engine

        engine = Engine(device="cpu")
        orig = engine.generate

        def generate(request, *args, **kwargs):
            got.append(request)
            return orig(request, *args, **kwargs)

        engine.generate = generate
        return engine

    return factory


def picture(w: int, h: int) -> np.ndarray:
    """A smooth, non-flat test picture (gradients), so 'unchanged' means something."""
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // max(1, w - 1), y * 255 // max(1, h - 1), (x + y) * 3 % 256], -1).astype(np.uint8)


def run_and_wait(qtbot, window, trigger):
    seen: list[tuple[str, int]] = []
    window.controller.stepReceived.connect(lambda rid, step: seen.append((rid, step)))
    with qtbot.waitSignal(window.controller.runFinished, timeout=RUN_TIMEOUT_MS) as blocker:
        trigger()
    run_id, status = blocker.args
    return run_id, status, [s for rid, s in seen if rid == run_id]


def file_pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_inpaint_from_the_edit_canvas(qtbot, make_window, fill_request, tiny_sd15):
    from studio.engine.inpaint import feather, grow

    got: list = []
    w = make_window(engine_factory=recording_engine(got))
    fill_request(w, tiny_sd15, steps=4, size=64, seed=5)
    assert not w.prompt.image_input.isVisible()  # txt2img: no image input section
    src = picture(68, 60)  # not multiples of 8: the engine generates at 64×64 and restores 68×60
    assert w.use_image_as_input(src)
    assert w.edit_mode() and w.prompt.image_input.isVisible()
    assert w.prompt.image_input.strength.value() == 0.75  # img2img default before any mask
    w.edit.canvas.set_brush_size(12)
    w.edit.canvas.paint_stroke([(20, 20), (40, 30)])
    qtbot.waitUntil(lambda: w.prompt.image_input.kind() == "inpaint", timeout=3000)
    qtbot.waitUntil(lambda: w.prompt.image_input.strength.value() == 1.0, timeout=3000)
    assert "inpaint" in w.prompt.image_input.note.text()
    w.prompt.image_input.grow.setValue(2)
    w.prompt.image_input.blur.setValue(4)
    mask = w.edit.canvas.mask()
    shown_previews: list[tuple] = []
    orig_show = w.edit.canvas.show_preview
    w.edit.canvas.show_preview = lambda a: (shown_previews.append(None if a is None else a.shape), orig_show(a))
    step_previews: list[np.ndarray] = []
    orig_step = w.edit.show_step
    w.edit.show_step = lambda img, serial, rid=None: (
        orig_step(img, serial, rid) and (step_previews.append(w.edit.last_preview) or True)
    )

    def ctrl_enter_on_canvas():  # Ctrl+Enter generates even while the canvas has the keyboard
        w.activateWindow()
        qtbot.waitUntil(lambda: QApplication.activeWindow() is w, timeout=5000)
        w.edit.canvas.setFocus()
        qtbot.waitUntil(w.edit.canvas.hasFocus, timeout=3000)
        qtbot.keyClick(w.edit.canvas, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)

    run_id, status, steps = run_and_wait(qtbot, w, ctrl_enter_on_canvas)
    assert status == "done"
    assert steps == [1, 2, 3, 4]  # one preview per step
    (req,) = got
    assert req.kind == "inpaint" and req.strength == 1.0
    assert (req.mask_grow, req.mask_blur, req.inpaint_area) == (2, 4, "whole")
    assert (req.width, req.height) == (64, 64)
    init = Image.open(req.init_image.path)
    assert np.array_equal(np.asarray(init), src)
    assert sha256_bytes(open(req.init_image.path, "rb").read()) == req.init_image.sha256  # noqa: SIM115
    assert np.array_equal(file_pixels(req.mask.path), mask)
    # live previews went to the Edit canvas: full-canvas (composited) pictures with the canvas's aspect
    rec = w.history.get(run_id)
    result = rec.images[0]
    assert result.shape == (60, 68, 3)
    blend = feather(grow(mask, 2), 4)
    outside = blend == 0
    # live previews went to the Edit canvas: the whole canvas, sharp input outside the mask, the step inside
    assert len(step_previews) >= 2, len(step_previews)
    for pv in step_previews:
        assert pv.shape == (60, 68, 3)
        assert np.array_equal(pv[outside], src[outside])
    assert np.abs(step_previews[-1][mask > 127].astype(int) - src[mask > 127]).mean() > 3
    assert outside.sum() > 1000 and np.array_equal(result[outside], src[outside])
    assert np.abs(result[mask > 127].astype(int) - src[mask > 127]).mean() > 3  # the masked part was repainted
    # the result is shown over the input, with a way to keep it
    assert w.edit.result is not None and np.array_equal(w.edit.result, result)
    assert shown_previews[-1] == result.shape  # the last picture drawn over the canvas is the result
    assert w.edit.result_bar.isVisible()
    assert not w.edit.canvas.overlay_visible()  # the result is seen untinted …
    assert not w.edit.toolbar.overlay_action.isChecked()
    assert np.array_equal(w.edit.canvas.image(), src)  # not applied until asked
    qtbot.mouseClick(w.edit.use_result_button, Qt.MouseButton.LeftButton)
    assert np.array_equal(w.edit.canvas.image(), result)
    assert not w.edit.result_bar.isVisible()
    assert w.edit.canvas.overlay_visible()  # … and the mask shows again once it is used (or discarded)
    w.edit.canvas.undo()  # "use result" is an ordinary undoable edit
    assert np.array_equal(w.edit.canvas.image(), src)


def test_img2img_without_a_mask(qtbot, make_window, fill_request, tiny_sd15):
    got: list = []
    w = make_window(engine_factory=recording_engine(got))
    fill_request(w, tiny_sd15, steps=4, size=64, seed=9)
    src = picture(64, 56)
    w.edit.set_input(src)
    w.show_edit()
    assert w.prompt.image_input.kind() == "img2img"
    assert "img2img" in w.prompt.image_input.note.text()
    w.prompt.image_input.strength.setValue(0.5)
    run_id, status, steps = run_and_wait(qtbot, w, w.controller.generate)
    assert status == "done" and steps
    (req,) = got
    assert req.kind == "img2img" and req.mask is None and req.strength == 0.5
    assert (req.width, req.height) == (64, 56)
    result = w.history.get(run_id).images[0]
    assert result.shape == src.shape and not np.array_equal(result, src)
    assert w.edit.result_bar.isVisible() and np.array_equal(w.edit.result, result)

    # back on the Generate tab, Generate is plain txt2img again
    w.tabs.setCurrentWidget(w.canvas)
    assert not w.prompt.image_input.isVisible()
    assert w.prompt.build_requests()[0].kind == "txt2img"


def test_use_as_input_from_a_result_and_from_the_gallery(qtbot, make_window, fill_request, tiny_sd15, tmp_path):
    w = make_window(with_gallery=True)
    fill_request(w, tiny_sd15, steps=2, size=64, seed=3)
    assert not w.canvas.use_button.isVisible()
    run_id, status, _ = run_and_wait(qtbot, w, w.controller.generate)
    assert status == "done"
    made = w.history.get(run_id).images[0]
    assert w.canvas.use_button.isVisible()  # the finished image offers "Use as input"
    qtbot.mouseClick(w.canvas.use_button, Qt.MouseButton.LeftButton)
    assert w.edit_mode() and w.edit.has_image()
    assert np.array_equal(w.edit.canvas.image(), made)
    assert w.prompt.image_input.isVisible()

    other = picture(40, 32)
    path = tmp_path / "from-gallery.png"
    Image.fromarray(other).save(path)
    w.tabs.setCurrentWidget(w.canvas)
    if w.gallery is not None:
        w.gallery.useAsInputRequested.emit(str(path))
    else:
        w._use_as_input(str(path))
    assert w.edit_mode()
    assert np.array_equal(w.edit.canvas.image(), other)
    # a broken file is said, and the canvas is kept
    bad = tmp_path / "not-an-image.png"
    bad.write_text("hello")
    w._use_as_input(str(bad))
    assert w.messages.isVisible() and w.messages.kind == "warning"
    assert np.array_equal(w.edit.canvas.image(), other)


def test_a_crashed_canvas_session_is_restored_on_the_next_start(qtbot, make_window, fake_engine):
    w = make_window(engine_factory=fake_engine)
    src = picture(48, 40)
    w.edit.set_input(src)
    w.edit.canvas.mask_rect(8, 8, 16, 12)
    mask = w.edit.canvas.mask()
    w.edit.session.save_now()  # what the debounced autosave writes while the user works
    w.edit.session.close = lambda: None  # then the process dies: no clean close
    w.shutdown()

    w2 = make_window(engine_factory=fake_engine)
    assert w2.edit_mode() and w2.edit.has_image()
    assert np.array_equal(w2.edit.canvas.image(), src)
    assert np.array_equal(w2.edit.canvas.mask(), mask)
    assert w2.messages.isVisible() and "restored" in w2.messages.message
    assert w2.edit.canvas.undo()  # the undo history came back too: the mask rectangle goes
    assert not w2.edit.canvas.mask().any()
    w2.shutdown()

    w3 = make_window(engine_factory=fake_engine)  # after a clean close: no restore, no message
    assert not w3.edit_mode() and not w3.edit.has_image()
    assert not (w3.messages.isVisible() and "restored" in w3.messages.message)


def test_cancel_an_edit_run_shows_the_input_again(qtbot, make_window, fake_engine):
    w = make_window(engine_factory=lambda: fake_engine(step_s=0.05))
    w.prompt.set_model("fake")
    w.prompt.steps.setValue(200)
    w.prompt.seed_lock.setChecked(True)
    w.use_image_as_input(picture(32, 32))
    w.edit.canvas.fill_mask()
    with qtbot.waitSignal(w.controller.stepReceived, timeout=RUN_TIMEOUT_MS, check_params_cb=lambda rid, s: s >= 2):
        (run_id,) = w.controller.generate()
    qtbot.waitUntil(lambda: w.edit.canvas._preview is not None, timeout=5000)
    with qtbot.waitSignal(w.controller.runFinished, timeout=RUN_TIMEOUT_MS) as blocker:
        w.controller.cancel_current()
    assert blocker.args == [run_id, "cancelled"]
    assert w.edit.canvas._preview is None and not w.edit.result_bar.isVisible()


def test_outpaint_by_expanding_the_canvas(qtbot, make_window, fill_request, tiny_sd15):
    """The Expand tool's outpaint reaches the engine as an outpaint (the picture before it grew, the
    amounts, the fill), the gallery records it so, and Recreate puts it back to send the same request."""
    from studio.engine.inpaint import feather, grow, outpaint_band, outpaint_with_mask

    got: list = []
    w = make_window(engine_factory=recording_engine(got), record_to_gallery=True, with_gallery=True)
    fill_request(w, tiny_sd15, steps=2, size=64, seed=4)
    src = picture(48, 48)
    w.use_image_as_input(src)
    w.edit.toolbar.fill_buttons["mirror"].setChecked(True)
    assert w.edit.canvas.expand(right=16, bottom=8)  # what the X tool's drag does
    qtbot.waitUntil(lambda: "outpaint" in w.prompt.image_input.note.text(), timeout=3000)
    assert "mirror" in w.prompt.image_input.note.text() and w.prompt.image_input.kind() == "outpaint"
    run_id, status, _ = run_and_wait(qtbot, w, w.controller.generate)
    assert status == "done"
    (req,) = got
    assert req.kind == "outpaint" and req.outpaint == (0, 0, 16, 8) and req.outpaint_fill == "mirror"
    assert req.mask is None  # nothing painted on the picture itself
    assert np.array_equal(file_pixels(req.init_image.path), src)  # the picture before it grew: the engine grows it
    assert (req.width, req.height) == (64, 56) and req.strength == 1.0
    result = w.history.get(run_id).images[0]
    assert result.shape == (56, 64, 3)
    _, mask, _ = outpaint_with_mask(src, req.outpaint, "mirror", req.seed, outpaint_band(req.mask_blur))
    keep = feather(grow(mask, req.mask_grow), req.mask_blur)[:48, :48] == 0
    assert keep.sum() > 500
    assert np.array_equal(result[:48, :48][keep], src[keep])  # the original sits where it was
    assert w.edit.result is not None and "outpaint" in w.edit.result_label.text()

    qtbot.waitUntil(lambda: w.gallery.current_item() is not None, timeout=5000)
    item = w.gallery.current_item()
    assert item.kind == "outpaint" and item.request == req
    said = item.describe()
    assert said.startswith("Outpainted") and "16 px right, 8 px bottom" in said and "mirror" in said

    w.use_image_as_input(picture(20, 20))  # something else on the canvas meanwhile
    w.show_edit()
    w.gallery.buttons["recreate"].click()
    assert w.edit_mode() and w.edit.canvas.expansion() == (0, 0, 16, 8) and w.edit.image_size() == (64, 56)
    assert w.edit.canvas.outpaint_fill() == "mirror" and w.edit.toolbar.fill_buttons["mirror"].isChecked()
    assert w.prompt.build_requests()[0] == req  # Generate now sends the very same recipe


def test_outpaint_from_the_menu_with_a_mask_painted_on_the_picture(qtbot, make_window, fake_engine):
    w = make_window(engine_factory=fake_engine)
    w.prompt.set_model("fake")
    w.prompt.seed_lock.setChecked(True)
    src = picture(40, 32)
    w.use_image_as_input(src)
    w.edit.canvas.mask_rect(4, 4, 10, 10)  # before growing: it moves with the picture
    tb = w.edit.toolbar
    tb.fill_buttons["noise"].setChecked(True)
    tb.outpaint_boxes["left"].setValue(24)
    tb.outpaint_boxes["top"].setValue(8)
    assert tb.apply_outpaint()  # Outpaint… ▸ Expand canvas
    w.edit.canvas.mask_rect(30, 20, 6, 6)  # after growing, on the old picture (canvas coordinates)
    qtbot.waitUntil(lambda: w.prompt.image_input.kind() == "outpaint", timeout=3000)
    w.prompt.image_input.blur.setValue(6)
    req = w.prompt.build_requests()[0]
    assert req.kind == "outpaint" and req.outpaint == (24, 8, 0, 0) and req.outpaint_fill == "noise"
    assert (req.width, req.height) == (64, 40) and req.mask_blur == 6
    assert np.array_equal(file_pixels(req.init_image.path), src)
    painted = file_pixels(req.mask.path)  # the mask on the picture only, at its size
    assert painted.shape == (32, 40)
    want = np.zeros((32, 40), np.uint8)
    want[4:14, 4:14] = 255
    want[12:18, 6:12] = 255
    assert np.array_equal(painted, want)
    qtbot.waitUntil(lambda: "24 px left, 8 px top from" in w.prompt.image_input.note.text(), timeout=3000)  # on a timer
    assert "<b>outpaint</b>" in w.prompt.image_input.note.text() and "noise" in w.prompt.image_input.note.text()
    w.edit.canvas.undo()
    w.edit.canvas.undo()  # back before the growth: an inpaint again
    qtbot.waitUntil(lambda: w.prompt.image_input.kind() == "inpaint", timeout=3000)
    assert w.prompt.build_requests()[0].outpaint is None


def test_only_masked_uses_the_size_fields_and_an_empty_edit_tab_generates_text_to_image(
    qtbot, make_window, fake_engine
):
    w = make_window(engine_factory=fake_engine)
    w.prompt.set_model("fake")
    w.prompt.set_size(64, 48)
    w.show_edit()
    assert not w.prompt.image_input.isVisible()  # no image yet: nothing to edit
    assert w.prompt.build_requests()[0].kind == "txt2img"
    with qtbot.waitSignal(w.controller.runStarted, timeout=RUN_TIMEOUT_MS):
        w.controller.generate()
    assert not w.edit_mode()  # the run is drawn on the Generate tab, so that is shown
    w.bridge.cancel_all()

    w.use_image_as_input(picture(200, 120))
    w.edit.canvas.mask_rect(150, 20, 30, 30)
    w.prompt.image_input.only_masked.setChecked(True)
    w.prompt.image_input.padding.setValue(16)
    qtbot.waitUntil(lambda: "masked area only" in w.prompt.image_input.note.text(), timeout=3000)
    req = w.prompt.build_requests()[0]
    assert req.kind == "inpaint" and req.inpaint_area == "only_masked" and req.inpaint_padding == 16
    assert (req.width, req.height) == (64, 48)  # the Size fields, not the canvas
    w.prompt.image_input.only_masked.setChecked(False)
    req = w.prompt.build_requests()[0]
    assert req.inpaint_area == "whole" and (req.width, req.height) == (200, 120)
    cc = w.prompt.image_input.color_correction
    assert cc.isVisible() and cc.isEnabled() and cc.isChecked() and req.color_correction  # on by default
    cc.setChecked(False)
    assert w.prompt.build_requests()[0].color_correction is False
    w.edit.canvas.clear_mask()  # img2img: nothing to correct against, so the box is off-limits
    qtbot.waitUntil(lambda: not cc.isEnabled(), timeout=3000)
