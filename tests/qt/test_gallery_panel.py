"""The Gallery panel: lazy grid at 10,000 rows, badges, search, details, actions, drops."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import numpy as np
import pytest
from PIL import Image, PngImagePlugin

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QMimeData, QPointF, Qt, QUrl
from PySide6.QtGui import QDropEvent, QGuiApplication

from studio.core.errors import MetadataError
from studio.core.gallery import Gallery
from studio.core.gallery import search_bench as bench
from studio.core.metadata import read_metadata
from studio.core.request import GenerationRequest, ImageRef
from studio.qt.gallery.panel import BadgeRole, GalleryPanel, read_dropped_file


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))


def img(v: int) -> np.ndarray:
    return np.random.default_rng(v).integers(0, 256, (32, 32, 3), dtype=np.uint8)


@pytest.fixture
def library(tmp_path):
    lib = tmp_path / "lib"
    with Gallery(lib) as g:
        root = g.add_image(img(1), GenerationRequest.create(prompt="a harbour at night", seed=1))
        g.add_image(img(2), GenerationRequest.create(prompt="a desert caravan", seed=2, model="dreamshaper"))
        g.add_image(
            img(3),
            GenerationRequest.create(
                prompt="the harbour, repainted",
                init_image=ImageRef(path=str(root.path), sha256=root.sha256),
                strength=0.5,
            ),
        )
    return lib


@pytest.fixture
def panel(qtbot, library):
    p = GalleryPanel(library)
    qtbot.addWidget(p)
    p.resize(900, 700)
    p.show()
    yield p
    p.shutdown()


def test_grid_badges_and_thumbnails(panel, qtbot):
    model = panel.model
    assert model.rowCount() == 3
    badges = {model.item(r).prompt: model.index(r).data(BadgeRole) for r in range(3)}
    assert badges == {"the harbour, repainted": "AI · edited", "a harbour at night": "AI", "a desert caravan": "AI"}
    qtbot.waitUntil(lambda: len(model._thumbs) == 3, timeout=5000)
    panel.grab()  # paints thumbnails with badges without error
    # The badge is really drawn: blue "AI", orange "AI · edited".
    from PySide6.QtGui import QImage, QPainter
    from PySide6.QtWidgets import QStyleOptionViewItem

    for r in range(3):
        canvas = QImage(200, 200, QImage.Format.Format_RGB32)
        canvas.fill(0)
        option = QStyleOptionViewItem()
        option.rect = canvas.rect()
        painter = QPainter(canvas)
        panel.view.itemDelegate().paint(painter, option, model.index(r))
        painter.end()
        edited = model.index(r).data(BadgeRole) == "AI · edited"
        want = (200, 120, 20) if edited else (30, 110, 200)
        pixel = canvas.pixelColor(10, 200 - 4 - 20 + 2)
        assert (pixel.red(), pixel.green(), pixel.blue()) == want
    assert all((panel.gallery.root / ".thumbs" / f"{model.item(r).id}.jpg").exists() for r in range(3))


def test_search_and_filters(panel, qtbot):
    panel.search.setText("harbour")
    qtbot.waitUntil(lambda: panel.model.rowCount() == 2, timeout=2000)
    panel.kind_filter.setCurrentIndex(panel.kind_filter.findData("img2img"))
    assert [panel.model.item(r).prompt for r in range(panel.model.rowCount())] == ["the harbour, repainted"]
    panel.search.setText("")
    panel.kind_filter.setCurrentIndex(0)
    qtbot.waitUntil(lambda: panel.model.rowCount() == 3, timeout=2000)
    panel.model_filter.setCurrentIndex(panel.model_filter.findData("dreamshaper"))
    assert panel.model.rowCount() == 1
    panel.model_filter.setCurrentIndex(0)
    panel.date_filter.setCurrentIndex(panel.date_filter.findData(0))  # today
    assert panel.model.rowCount() == 3
    with Gallery(panel.gallery.root) as g:  # an old image, recorded by another process
        g.add_image(
            img(9),
            GenerationRequest.create(prompt="an old photo"),
            info={"sign": False, "created": datetime(2020, 1, 1, tzinfo=timezone.utc)},
        )
    panel.refresh()
    assert panel.model.rowCount() == 3
    panel.date_filter.setCurrentIndex(0)
    assert panel.model.rowCount() == 4


def _select_prompt(panel, prompt):
    for r in range(panel.model.rowCount()):
        if panel.model.item(r).prompt == prompt:
            panel.view.setCurrentIndex(panel.model.index(r))
            return panel.model.item(r)
    raise AssertionError(prompt)


def test_details_lineage_and_provenance(panel):
    child = _select_prompt(panel, "the harbour, repainted")
    text = panel.details.text()
    assert "edited from an input image" in text and "the harbour, repainted" in text and "strength 0.5" in text
    assert panel.path_label.text() == str(child.path)
    assert "valid" in panel.provenance.text()
    # the family as a tree: the source image at the top, the selected edit under it (in bold)
    top = panel.lineage.topLevelItem(0)
    assert panel.lineage.topLevelItemCount() == 1 and top.text(0) == "txt2img: a harbour at night"
    assert top.childCount() == 1 and top.child(0).text(0) == "img2img: the harbour, repainted"
    assert top.child(0).font(0).bold() and not top.font(0).bold()
    panel._jump_to_lineage(top)
    assert panel.current_item().prompt == "a harbour at night"


def test_actions_emit_and_copy(panel, qtbot, tmp_path):
    item = _select_prompt(panel, "a desert caravan")
    with qtbot.waitSignal(panel.recreateRequested) as sig:
        panel.buttons["recreate"].click()
    assert isinstance(sig.args[0], GenerationRequest) and sig.args[0] == item.request
    with qtbot.waitSignal(panel.useAsInputRequested) as sig:
        panel.buttons["use"].click()
    assert sig.args == [str(item.path)]
    panel.buttons["copy"].click()
    clip = QGuiApplication.clipboard().text()
    assert clip.startswith("a desert caravan\nSteps: 20") and "Model: dreamshaper" in clip
    out = panel.export_to(tmp_path / "caravan.webp")
    assert read_metadata(out).request == item.request
    panel.tag_edit.setText("desert, sand")
    panel.tag_edit.returnPressed.emit()
    assert panel.gallery.get(item.id).tags == ["desert", "sand"] and "Tags: desert, sand" in panel.details.text()
    panel.search.setText("sand")
    qtbot.waitUntil(lambda: panel.model.rowCount() == 1, timeout=2000)
    panel.search.setText("")
    qtbot.waitUntil(lambda: panel.model.rowCount() == 3, timeout=2000)
    _select_prompt(panel, "a desert caravan")
    panel.buttons["favourite"].click()
    assert panel.gallery.get(item.id).favourite
    panel.favourites_only.setChecked(True)
    assert panel.model.rowCount() == 1
    panel.favourites_only.setChecked(False)
    _select_prompt(panel, "a desert caravan")
    panel.buttons["trash"].click()
    assert panel.model.rowCount() == 2 and panel.gallery.get(item.id).trashed


def test_lazy_grid_at_ten_thousand_rows(qtbot, tmp_path):
    lib = tmp_path / "big"
    with Gallery(lib) as g:
        bench.fill(g, 10_000)
    t = time.perf_counter()
    p = GalleryPanel(lib)
    qtbot.addWidget(p)
    p.resize(800, 600)
    p.show()
    qtbot.wait(50)
    opened = time.perf_counter() - t
    try:
        assert p.model.rowCount() == 10_000
        assert opened < 3.0
        # Only the visible cells were loaded: a page of rows and a handful of thumbnails.
        assert len(p.model._items) <= 2 * 256
        assert 0 < p.model.thumb_requests < 200
        t = time.perf_counter()
        p.view.scrollToBottom()
        qtbot.wait(20)
        p.view.scrollTo(p.model.index(5000))
        qtbot.wait(20)
        assert time.perf_counter() - t < 2.0
        assert p.model.thumb_requests < 600
        t = time.perf_counter()
        p.search.setText("castle")
        qtbot.waitUntil(lambda: 0 < p.model.rowCount() < 10_000, timeout=2000)
        assert time.perf_counter() - t < 1.5
    finally:
        p.shutdown()


def _png_with(tmp_path, name, texts):
    info = PngImagePlugin.PngInfo()
    for k, v in texts.items():
        info.add_text(k, v)
    path = tmp_path / name
    Image.fromarray(img(0)).save(path, pnginfo=info)
    return path


def test_read_dropped_file(tmp_path):
    a1111 = _png_with(
        tmp_path, "a1111.png",
        {"parameters": "a fox\nNegative prompt: blur\n"
                       "Steps: 9, Sampler: DPM++ SDE, Schedule type: Karras, CFG scale: 4, Seed: 5, Size: 520x512"},
    )  # fmt: skip
    request, norm, notes = read_dropped_file(a1111)
    assert request.prompt == "a fox" and request.seed == 5 and request.width == 520
    assert norm["source"] == "a1111" and norm["sampler"] == "DPM++ SDE Karras"
    assert (request.scheduler, request.schedule_type) == ("DPM++ SDE", "Karras")
    restart = _png_with(
        tmp_path, "restart.png",
        {"parameters": "a fox\nSteps: 9, Sampler: Restart, Schedule type: Karras, CFG scale: 4, Seed: 5, Size: 64x64"},
    )  # fmt: skip
    request, norm, notes = read_dropped_file(restart)
    assert request.scheduler == "Heun" and any("Restart" in n and "closest" in n for n in notes)
    bare = tmp_path / "bare.png"
    Image.fromarray(img(0)).save(bare)
    request, norm, notes = read_dropped_file(bare)
    assert norm["source"] == "none" and notes
    broken = tmp_path / "broken.png"
    broken.write_bytes(a1111.read_bytes()[:100])
    with pytest.raises(MetadataError):
        read_dropped_file(broken)


def test_drop_on_panel_offers_to_load(panel, qtbot, tmp_path):
    path = _png_with(
        tmp_path, "comfy.png", {"parameters": "a whale\nSteps: 3, Sampler: Euler, CFG scale: 2, Seed: 1, Size: 64x64"}
    )
    mime = QMimeData()
    mime.setUrls([QUrl.fromLocalFile(str(path))])
    event = QDropEvent(
        QPointF(10, 10), Qt.DropAction.CopyAction, mime, Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier
    )
    panel.dropEvent(event)
    assert panel.drop_bar.isVisible() and "A1111" in panel.drop_label.text()
    with qtbot.waitSignal(panel.recreateRequested) as sig:
        panel.drop_load.click()
    assert sig.args[0].prompt == "a whale" and sig.args[0].steps == 3
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    panel.show_dropped(bad)
    assert not panel.drop_load.isEnabled() and "truncated" in panel.drop_label.text()
