"""Upscale in the window: from a gallery item and from the finished image on the canvas, through the
Upscale dialog and the run queue, into the gallery as an "upscale" of its source; Recreate of an
upscale opens the dialog with its upscaler, factor and tiles."""

from __future__ import annotations

import numpy as np
from PySide6.QtWidgets import QDialogButtonBox

from studio.core.gallery import Gallery
from studio.core.paths import library_dir, models_dir
from studio.core.request import GenerationRequest
from studio.qt.common.images import from_qimage
from studio.testing import save_tiny_upscaler

RUN_TIMEOUT_MS = 90_000


def _accept(qtbot, window, dlg):
    with qtbot.waitSignal(window.controller.runFinished, timeout=RUN_TIMEOUT_MS) as blocker:
        dlg.buttons.button(QDialogButtonBox.StandardButton.Ok).click()
    return blocker.args


def test_upscale_a_gallery_item_then_the_canvas_result(qtbot, make_window, studio_home):
    model = save_tiny_upscaler(models_dir() / "upscalers" / "tiny-compact-x4.safetensors", "compact", 4)
    save_tiny_upscaler(models_dir() / "upscalers" / "tiny-rrdb-x2.safetensors", "rrdb", 2)
    source = np.random.default_rng(0).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    with Gallery(library_dir()) as g:
        parent = g.add_image(source, GenerationRequest.create(prompt="a kite over dunes", seed=5, width=32, height=24))
    w = make_window(with_gallery=True, record_to_gallery=True)
    w.gallery.refresh()
    assert w.gallery.select(parent.id)
    w.gallery.buttons["upscale"].click()
    dlg = w.upscaling.dialog
    assert dlg is not None and dlg.isVisible() and dlg.source == parent.path
    names = [dlg.model.itemText(i) for i in range(dlg.model.count())]
    assert [n.split("  ·  ")[0] for n in names] == ["tiny-compact-x4", "tiny-rrdb-x2"]
    assert "Real-ESRGAN compact ×4" in names[0] and dlg.scale.value() == 4 and dlg.out_label.text() == "128×96"
    dlg.model.setCurrentIndex(1)
    assert dlg.scale.value() == 2 and dlg.out_label.text() == "64×48"
    dlg.model.setCurrentIndex(0)
    run_id, status = _accept(qtbot, w, dlg)
    assert status == "done" and run_id in w.upscaling.queued
    rec = w.history.get(run_id)
    assert rec.request.kind == "upscale" and rec.images[0].shape == (96, 128, 3)
    assert np.array_equal(from_qimage(w.canvas.image()), rec.images[0])
    assert "tiles" in w.progress.bar.format() and not w.strip.branch.isEnabled()
    with Gallery(library_dir()) as g:
        up = g.get(rec.gallery_ids[0])
    assert (up.kind, up.parent_id, up.width, up.height, up.prompt) == (
        "upscale",
        parent.id,
        128,
        96,
        "a kite over dunes",
    )

    # the canvas's finished image: Upscale… opens the dialog on its gallery file
    assert w.canvas.upscale_button.isVisible()
    w.canvas.upscale_button.click()
    dlg2 = w.upscaling.dialog
    assert dlg2 is not dlg and dlg2.source == up.path and dlg2.size == (128, 96)
    dlg2.scale.setValue(0.5)
    run2, status = _accept(qtbot, w, dlg2)
    assert status == "done" and w.history.get(run2).images[0].shape == (48, 64, 3)
    with Gallery(library_dir()) as g:
        assert g.get(w.history.get(run2).gallery_ids[0]).parent_id == up.id

    # Recreate of an upscale: the dialog again, with its upscaler, factor and tiles
    w.gallery.recreateRequested.emit(up.request)
    dlg3 = w.upscaling.dialog
    assert dlg3.source == parent.path and dlg3.model.currentData()[0] == str(model) and dlg3.scale.value() == 4
    dlg3.reject()


def test_no_upscaler_says_where_to_put_one(qtbot, make_window, tmp_path):
    src = tmp_path / "s.png"
    from PIL import Image

    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(src)
    w = make_window()
    dlg = w.upscaling.from_file(src)
    assert not dlg.buttons.button(QDialogButtonBox.StandardButton.Ok).isEnabled()
    assert dlg.problem.isVisibleTo(dlg) and "No upscaler found" in dlg.problem.text()
    bad = tmp_path / "lora.safetensors"
    import torch
    from safetensors.torch import save_file

    save_file({"lora_unet_x.lora_down.weight": torch.zeros(2, 2)}, str(bad))
    assert not dlg.choose_model(bad) and "not an upscaler" in dlg.problem.text()
    good = save_tiny_upscaler(tmp_path / "x2.safetensors", "compact", 2)
    assert dlg.choose_model(good) and dlg.out_label.text() == "32×32"
    assert dlg.buttons.button(QDialogButtonBox.StandardButton.Ok).isEnabled()
    dlg.reject()
