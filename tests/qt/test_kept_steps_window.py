"""Steps that last: a gallery image's steps come back after the window closes (scrub and branch as
before the restart, to the same pixels), the budget is shown and set in View ▸ Kept steps…, edit
runs branch, and the gallery's lineage shows the tree."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt

from studio.qt.common.images import from_qimage, to_qimage

RUN_TIMEOUT_MS = 90_000


def run_and_wait(qtbot, window, trigger=None):
    with qtbot.waitSignal(window.controller.runFinished, timeout=RUN_TIMEOUT_MS) as blocker:
        trigger() if trigger else window.controller.generate()
    return blocker.args


def same_pixels(qimage, array) -> bool:
    return qimage is not None and np.array_equal(from_qimage(qimage), from_qimage(to_qimage(array)))


def _branch_click(qtbot, w):
    return lambda: qtbot.mouseClick(w.strip.branch, Qt.MouseButton.LeftButton)


def test_a_gallery_images_steps_survive_a_restart(qtbot, make_window, fill_request, tiny_sd15):
    w = make_window(with_gallery=True, record_to_gallery=True)
    fill_request(w, tiny_sd15, steps=4, seed=3)
    parent_id, status = run_and_wait(qtbot, w)
    assert status == "done"
    parent = w.history.get(parent_id)
    qtbot.waitUntil(lambda: bool(parent.gallery_ids), timeout=10_000)
    gallery_id = parent.gallery_ids[0]
    previews = {s: parent.steps[s].image.copy() for s in parent.kept_steps()}
    assert sorted(previews) == [1, 2, 3, 4]
    assert w.strip.select_step(2)
    fill_request(w, tiny_sd15, prompt="a green square on a yellow background", steps=4, seed=11)
    child_id, status = run_and_wait(qtbot, w, _branch_click(qtbot, w))
    assert status == "done"
    before = w.history.get(child_id).images[0].copy()
    w.shutdown()
    w.close()

    w2 = make_window(with_gallery=True, record_to_gallery=True)
    assert w2.history.get(parent_id) is None  # a new session: nothing in memory
    assert w2.gallery.select(gallery_id)
    qtbot.waitUntil(lambda: w2.strip.run_id == parent_id, timeout=10_000)
    assert w2.strip.kept_steps() == [1, 2, 3, 4]
    for s in (1, 2, 3):  # scrub: the very pixels the first session showed
        assert w2.strip.select_step(s)
        assert same_pixels(w2.canvas.image(), previews[s]), s
    assert w2.strip.select_step(2) and w2.strip.branch.isEnabled()
    fill_request(w2, tiny_sd15, prompt="a green square on a yellow background", steps=4, seed=11)
    assert w2.strip.select_step(2)
    again_id, status = run_and_wait(qtbot, w2, _branch_click(qtbot, w2))
    assert status == "done"
    again = w2.history.get(again_id)
    assert again.parent_id == parent_id and again.branch_step == 2
    assert np.array_equal(again.images[0], before)  # the same pixels as branching before the restart
    # the lineage shows the tree: the parent image at the top, both branches under it
    qtbot.waitUntil(lambda: len(again.gallery_ids) > 0, timeout=10_000)
    assert w2.gallery.select(gallery_id)
    top = w2.gallery.lineage.topLevelItem(0)
    assert top is not None and top.childCount() == 2
    assert all("branch @ step 2" in top.child(i).text(0) for i in range(2))


def test_kept_steps_dialog_shows_the_budget_and_enforces_it(qtbot, make_window, fill_request, tiny_sd15):
    from studio.core import settings as core_settings
    from studio.qt.app.kept_steps import KeptStepsDialog

    w = make_window(with_gallery=True, record_to_gallery=True)
    runs = []
    for seed in (1, 2, 3):
        fill_request(w, tiny_sd15, steps=3, seed=seed)
        run_id, status = run_and_wait(qtbot, w)
        assert status == "done"
        runs.append(run_id)
    store = w.gallery.gallery.steps
    qtbot.waitUntil(lambda: all(store.get(r) is not None for r in runs), timeout=10_000)
    assert [a.text() for a in w.view_menu.actions() if a.text() == "Kept steps…"]
    dlg = KeptStepsDialog(w.gallery.gallery, w)
    qtbot.addWidget(dlg)
    assert dlg.images.value() == 200 and dlg.gb.value() == 2.0  # the defaults
    assert "latents of 3 images" in dlg.usage.text()
    dlg.images.setValue(2)
    dlg.accept()
    assert core_settings.load().steps_keep_images == 2
    assert store.get(runs[0]).latent_bytes == 0  # the oldest run's latents went first
    assert all(store.get(r).latent_bytes > 0 for r in runs[1:])
    assert store.get(runs[0]).image(1) is not None  # its previews stay


def test_an_edit_run_can_be_branched_from_the_strip(qtbot, make_window, fake_engine, tmp_path):
    from studio.core.request import GenerationRequest, ImageRef
    from studio.qt.generate.steps_strip import BRANCH_TIP

    w = make_window(engine_factory=fake_engine)
    base = GenerationRequest.create(model=str(tmp_path / "m"), prompt="a kite", steps=4, width=64, height=64)
    init, mask = ImageRef(path=str(tmp_path / "in.png")), ImageRef(path=str(tmp_path / "mask.png"))
    for kind, req in [
        ("img2img", base.replace(init_image=init, strength=0.6)),
        ("inpaint", base.replace(init_image=init, mask=mask)),
        ("outpaint", base.replace(init_image=init, outpaint=(16, 0, 0, 0))),
    ]:
        assert req.kind == kind
        with qtbot.waitSignal(w.controller.runFinished, timeout=RUN_TIMEOUT_MS) as blocker:
            run_id = w.controller._submit(req)
        assert blocker.args == [run_id, "done"]
        w.strip.show_run(run_id, follow=False)
        assert w.strip.select_step(2)
        assert w.strip.branch.isEnabled() and w.strip.branch.toolTip() == BRANCH_TIP, kind
        with qtbot.waitSignal(w.controller.runFinished, timeout=RUN_TIMEOUT_MS) as blocker:
            w.strip._branch()
        child = w.history.get(blocker.args[0])
        assert child.request.kind == kind and child.branch_step == 2
        # the branch keeps the parent's input image, mask and strength
        assert (child.request.init_image, child.request.mask, child.request.strength) == (
            req.init_image,
            req.mask,
            req.strength,
        )
