"""The window fits a 1366×768 laptop screen with every dock open (Prompt with its LoRA and
ControlNet tabs, Gallery, Queue), and at that size every main control is on screen, whole and
reachable (a control inside a scroll area counts once the area scrolls to it)."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPoint, QRect
from PySide6.QtWidgets import QAbstractButton, QApplication, QScrollArea, QWidget

SCREEN = (1366, 768)
USABLE = (1366, 768 - 40)  # a taskbar or panel takes a strip of the screen


def enclosing_scroll_area(widget: QWidget) -> QScrollArea | None:
    p = widget.parentWidget()
    while p is not None:
        if isinstance(p, QScrollArea):
            return p
        p = p.parentWidget()
    return None


def problem(window, name: str, widget: QWidget) -> str | None:
    """Why `widget` is not fully usable in `window` at its current size (None when it is)."""
    if not widget.isVisible():
        return f"{name} is hidden"
    scroll = enclosing_scroll_area(widget)
    if scroll is not None:  # scroll to the whole widget (ensureWidgetVisible shows only a text field's cursor)
        top = widget.mapTo(scroll.widget(), QPoint(0, 0)).y()
        bar, view = scroll.verticalScrollBar(), scroll.viewport().height()
        if top + widget.height() > bar.value() + view:
            bar.setValue(top + widget.height() - view)
        if top < bar.value():
            bar.setValue(top)
        QApplication.processEvents()
    rect = QRect(widget.mapTo(window, QPoint(0, 0)), widget.size())
    if not window.rect().contains(rect):
        return f"{name} at {rect.getRect()} is outside the {window.width()}×{window.height()} window"
    seen = QRect(rect)  # what the ancestors' rectangles leave of it (a scroll area's viewport, a splitter pane …)
    parent = widget.parentWidget()
    while parent is not None and parent is not window:
        seen &= QRect(parent.mapTo(window, QPoint(0, 0)), parent.size())
        parent = parent.parentWidget()
    if seen.size() != widget.size():
        return f"{name} is cut: {seen.width()}×{seen.height()} of {widget.width()}×{widget.height()} visible"
    if isinstance(widget, QAbstractButton) and widget.width() < widget.sizeHint().width() - 1:
        return f"{name} is squeezed below its text ({widget.width()} < {widget.sizeHint().width()} px)"
    return None


def main_controls(w) -> dict[str, QWidget]:
    p, s = w.prompt, w.strip
    controls = {
        "model": p.model,
        "model folder": p.browse_folder,
        "model file": p.browse_file,
        "prompt": p.prompt,
        "negative": p.negative,
        "steps": p.steps,
        "guidance": p.guidance,
        "scheduler": p.scheduler,
        "seed": p.seed,
        "random seed": p.dice,
        "seed lock": p.seed_lock,
        "size preset": p.size_preset,
        "width": p.width_,
        "height": p.height_,
        "batch": p.batch,
        "Generate": p.generate_button,
        "Cancel": p.cancel_button,
        "tabs": w.tabs.tabBar(),
        "run picker": s.runs,
        "step thumbnails": s.thumbs,
        "step slider": s.slider,
        "Use settings": s.use_settings,
        "Branch from here": s.branch,
        "queue up": w.queue.up,
        "queue down": w.queue.down,
        "queue cancel": w.queue.cancel_one,
        "queue cancel all": w.queue.cancel_all,
        "progress": w.progress.bar,
    }
    g = w.gallery
    if g is not None:
        controls.update(
            {
                "gallery search": g.search,
                "model filter": g.model_filter,
                "kind filter": g.kind_filter,
                "date filter": g.date_filter,
                "favourites only": g.favourites_only,
                "show trash": g.show_trash,
                "gallery grid": g.view,
                "gallery details": g.details_scroll,
            }
        )
        controls.update({f"gallery {k}": b for k, b in g.buttons.items()})
    return controls


def edit_controls(w) -> dict[str, QWidget]:
    tb, ii = w.edit.toolbar, w.prompt.image_input
    controls = {f"toolbar {b.text() or b.toolTip()}": b for b in tb.findChildren(QAbstractButton) if b.isVisibleTo(tb)}
    controls.update(
        {
            "mask canvas": w.edit.canvas,
            "strength": ii.strength,
            "mask grow": ii.grow,
            "mask blur": ii.blur,
            "only masked": ii.only_masked,
            "padding": ii.padding,
            "colour correction": ii.color_correction,
            "Generate": w.prompt.generate_button,
        }
    )
    return controls


def check_all(window, controls: dict[str, QWidget]) -> list[str]:
    return [msg for name, widget in controls.items() if (msg := problem(window, name, widget))]


def test_the_window_fits_a_1366x768_screen(qtbot, make_window, fake_engine):
    w = make_window(engine_factory=fake_engine, with_gallery=True)
    assert w.gallery is not None and w.findChild(QWidget, "LoraPanel") is not None  # every dock is there
    hint, minimum = w.minimumSizeHint(), w.minimumSize()
    assert max(hint.width(), minimum.width()) <= 1280, f"the window needs {hint.width()} px of width"
    assert max(hint.height(), minimum.height()) <= 720, f"the window needs {hint.height()} px of height"
    w.resize(*USABLE)
    qtbot.waitUntil(lambda: (w.width(), w.height()) == USABLE, timeout=3000)
    for dock in (w.prompt_dock, w.gallery_dock, w.queue_dock):
        assert dock.isVisible() and dock.width() >= 200, dock.objectName()
    assert w.centralWidget().width() >= 300
    problems = check_all(w, main_controls(w))
    assert problems == [], "\n".join(problems)

    # the Edit tab with an image on it: the toolbar (wrapped) and the Image input section
    y, x = np.mgrid[0:96, 0:128]
    assert w.use_image_as_input(np.stack([x * 2, y * 2, x + y], -1).astype(np.uint8))
    w.edit.canvas.mask_rect(10, 10, 30, 30)
    qtbot.waitUntil(lambda: w.prompt.image_input.isVisible(), timeout=3000)
    assert max(w.minimumSizeHint().width(), w.minimumSize().width()) <= 1280  # the section does not widen it
    problems = check_all(w, edit_controls(w))
    assert problems == [], "\n".join(problems)


def test_each_dock_column_stays_narrow(qtbot, make_window, fake_engine):
    """What adds up to the window's minimum: no dock or the centre may claim a wide column."""
    w = make_window(engine_factory=fake_engine, with_gallery=True)
    for name in ("PromptDock", "LoRADock", "ControlNetDock", "GalleryDock", "QueueDock"):
        dock = w.findChild(QWidget, name)
        assert dock is not None, name
        assert dock.minimumSizeHint().width() <= 340, (name, dock.minimumSizeHint().width())
    assert w.centralWidget().minimumSizeHint().width() <= 420
    assert w.strip.minimumSizeHint().width() <= 420
