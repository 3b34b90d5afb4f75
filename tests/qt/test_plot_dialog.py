"""The X/Y/Z Plot dialog: queues every cell of the Prompt panel's recipe, fills the grid in as the cells
finish, saves it with its provenance; bad axes are said and queue nothing."""

from __future__ import annotations

import numpy as np

from studio.core import grid
from studio.core.request import GenerationRequest

RUN_TIMEOUT_MS = 120_000


def test_plot_queues_the_cells_and_fills_the_grid(qtbot, make_window, fill_request, tiny_sd15, tmp_path):
    w = make_window(record_to_gallery=True, with_gallery=False)
    fill_request(w, tiny_sd15, steps=2, size=64, seed=5)
    dlg = w.show_plot()
    assert dlg.isVisible() and w.show_plot() is dlg
    dlg.set_axes(["cfg=1,4,7", "seed=1,2"])
    fills: list[int] = []
    w.controller.runFinished.connect(lambda *_: fills.append(len(dlg.images)))
    ids = dlg.queue_cells()
    assert len(ids) == 6 and dlg.status.text() == "0 of 6 cells made"
    assert dlg.grid_image is not None and (dlg.grid_image == grid.EMPTY).all(axis=2).sum() > 6 * 60 * 60
    qtbot.waitUntil(lambda: dlg.complete, timeout=RUN_TIMEOUT_MS)
    assert fills == [1, 2, 3, 4, 5, 6]  # the grid filled in cell by cell
    assert dlg.status.text() == "6 of 6 cells made" and dlg.save_button.isEnabled()
    lay = grid.layout(dlg.axes, (64, 64))
    assert dlg.grid_image.shape == (lay.top + 2 * 64, lay.left + 3 * 64, 3)
    reqs = [w.history.get(i).request for i in ids]
    assert [(r.guidance_scale, r.seed) for r in reqs] == [(1, 1), (4, 1), (7, 1), (1, 2), (4, 2), (7, 2)]
    for cell in dlg.cells:  # each cell's image is where the grid says
        x0, y0 = lay.cell_box(*cell.index)
        assert np.array_equal(dlg.grid_image[y0 : y0 + 64, x0 : x0 + 64], dlg.images[cell.index])
    assert not np.array_equal(dlg.images[(0, 0, 0)], dlg.images[(2, 0, 0)])  # CFG changes the picture
    path = dlg.save(tmp_path / "plot.png")
    record = grid.read_record(path)
    assert len(record["cells"]) == 6 and all(c["gallery_ids"] for c in record["cells"])
    assert GenerationRequest.from_dict(record["cells"][3]["request"]).seed == 2


def test_bad_axes_are_said_and_queue_nothing(qtbot, make_window, fill_request, tiny_sd15):
    w = make_window()
    fill_request(w, tiny_sd15, steps=2, size=64)
    dlg = w.show_plot()
    for axes, words in ((["colour=1"], "unknown plot axis"), (["cfg=1,99"], "cfg=99"), ([], "at least one axis")):
        dlg.set_axes(axes)
        assert dlg.queue_cells() == []
        assert words in dlg.status.text()
    assert not w.bridge.pending and w.bridge.current is None
