"""Bad input in the Edit tab of the real window (fake engine, no runs): a file that is not an image,
a mask of another size, an empty mask, a mask over everything, images with alpha, 16 bits or CMYK.
Each gets a clear message or sensible handling; none crashes or loses the canvas."""

from __future__ import annotations

import numpy as np
from PIL import Image
from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent


def picture(w: int = 80, h: int = 56) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 3, y * 4, (x + y) % 256], -1).astype(np.uint8)


def drop(canvas, path) -> None:
    md = QMimeData()
    md.setUrls([QUrl.fromLocalFile(str(path))])
    canvas.dropEvent(
        QDropEvent(
            QPointF(20, 20), Qt.DropAction.CopyAction, md, Qt.MouseButton.LeftButton, Qt.KeyboardModifier.NoModifier
        )
    )


def edit_window(make_window, fake_engine):
    w = make_window(engine_factory=fake_engine)
    w.prompt.set_model("fake")
    w.prompt.set_size(64, 64)
    assert w.use_image_as_input(picture())
    return w


def test_files_that_are_not_images_or_masks_of_another_size_keep_the_canvas(qtbot, make_window, fake_engine, tmp_path):
    w = edit_window(make_window, fake_engine)
    c = w.edit.canvas
    c.mask_rect(10, 10, 20, 20)
    img0, mask0, steps0 = c.image(), c.mask(), c.history.index
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    for attempt in (lambda: c.load_image(text), lambda: drop(c, text), lambda: c.load_image(tmp_path / "gone.png")):
        w.messages.hide()
        attempt()
        assert w.messages.isVisible() and w.messages.kind == "warning"
        assert "canvas was kept" in w.messages.hint
    assert "notes.png" in w.messages.message or "gone.png" in w.messages.message
    wrong = tmp_path / "mask-small.png"
    Image.new("L", (40, 28), 255).save(wrong)
    w.messages.hide()
    assert not c.load_mask(wrong)
    assert w.messages.isVisible() and "40×28" in w.messages.message and "80×56" in w.messages.message
    assert np.array_equal(c.image(), img0) and np.array_equal(c.mask(), mask0) and c.history.index == steps0
    req = w.prompt.build_requests()[0]  # and Generate still runs what is on the canvas
    assert req.kind == "inpaint" and np.array_equal(np.asarray(Image.open(req.mask.path)), mask0)


def test_empty_mask_runs_img2img_and_a_full_mask_inpaints_everything(qtbot, make_window, fake_engine):
    w = edit_window(make_window, fake_engine)
    section = w.prompt.image_input
    req = w.prompt.build_requests()[0]
    assert req.kind == "img2img" and req.mask is None and "img2img" in section.note.text()
    w.edit.toolbar.fill_action.trigger()
    qtbot.waitUntil(lambda: section.kind() == "inpaint", timeout=3000)
    req = w.prompt.build_requests()[0]
    assert req.kind == "inpaint" and np.asarray(Image.open(req.mask.path)).min() == 255
    w.edit.toolbar.invert_action.trigger()  # everything unmasked again: back to img2img
    qtbot.waitUntil(lambda: section.kind() == "img2img", timeout=3000)
    assert w.prompt.build_requests()[0].mask is None


def test_alpha_16_bit_and_cmyk_files_open_as_rgb(qtbot, make_window, fake_engine, tmp_path):
    w = edit_window(make_window, fake_engine)
    c = w.edit.canvas
    rgba = np.zeros((30, 40, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, 20:, 3] = 255  # left half transparent: flattened over white
    Image.fromarray(rgba).save(tmp_path / "cut.png")
    Image.fromarray(np.full((30, 40), 65535, np.uint16)).save(tmp_path / "deep.png")
    Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(tmp_path / "print.tif")
    for name in ("cut.png", "deep.png", "print.tif"):
        drop(c, tmp_path / name)
        img = c.image()
        assert img.shape == (30, 40, 3) and img.dtype == np.uint8, name
        init = np.asarray(Image.open(w.prompt.build_requests()[0].init_image.path))
        assert init.shape == (30, 40, 3) and np.array_equal(init, img), name  # what the engine gets
    assert not w.messages.isVisible()
    c.undo()
    c.undo()  # each one was an ordinary, undoable "Set image"
    assert tuple(c.image()[5, 5]) == (255, 255, 255) and tuple(c.image()[5, 30]) == (200, 0, 0)
