"""Accessible names for every control, so a screen reader says what each one is.

`AccessibleNames` watches the whole application (an event filter, installed once by `ensure_app`):
each control, when Qt first polishes it — in the main window, a dialog, a plugin's panel, a row
added later — gets an accessible name if it has none, taken from what a sighted user reads next to
it: its form label, else the first sentence of its tooltip, else its placeholder text. A button
that shows only a symbol (✕, ▲, ⇄ …) is named by its tooltip, never by the symbol. Names set in
code always win.
"""

from __future__ import annotations

import re

from PySide6.QtCore import QEvent, QObject
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QAbstractSlider,
    QAbstractSpinBox,
    QComboBox,
    QFormLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QScrollBar,
    QTabBar,
    QTextEdit,
    QWidget,
)

CONTROLS = (
    QAbstractButton,
    QAbstractSlider,
    QAbstractSpinBox,
    QComboBox,
    QLineEdit,
    QPlainTextEdit,
    QTextEdit,
    QAbstractItemView,
    QTabBar,
)


def is_control(widget: QWidget) -> bool:
    """A control a user operates (not Qt's own parts of one: scroll bars, a spin box's editor …)."""
    if not isinstance(widget, CONTROLS) or isinstance(widget, QScrollBar | QHeaderView):
        return False  # a table's header and scroll bars are presented by the table
    if widget.objectName().startswith("qt_"):
        return False
    parent = widget.parentWidget()
    while parent is not None:  # a combo box's list and editor are presented by the combo box
        if isinstance(parent, QComboBox):
            return False
        parent = parent.parentWidget()
    return True


def symbol_only(text: str) -> bool:
    return bool(text.strip()) and not any(ch.isalnum() for ch in text)


def _clean(text: str) -> str:
    text = re.sub(r"<[^>]+>", "", text).replace("&", "").strip()
    return text.rstrip(":").strip()


def _first_sentence(text: str) -> str:
    """The tooltip's opening phrase: up to its first full stop, colon, semicolon or parenthesis."""
    text = _clean(text).split("\n")[0]
    m = re.match(r"(.+?)(?:[.!?](?:\s|$)|[:;]\s| \()", text)
    return (m.group(1) if m else text).rstrip(".").strip()


def form_label(widget: QWidget) -> str:
    """The label a QFormLayout shows for `widget` (or for the field it is part of)."""
    w: QWidget | None = widget
    while w is not None:
        parent = w.parentWidget()
        layout = parent.layout() if parent is not None else None
        for lay in _layouts(layout):
            if isinstance(lay, QFormLayout):
                text = _row_label(lay, w)
                if text:
                    return text
        if w is not widget and isinstance(w, CONTROLS):
            break  # inside another control: that control's name is the one to look for
        w = parent
        if w is not None and w.isWindow():
            break
    return ""


def _row_label(form: QFormLayout, widget: QWidget) -> str:
    """The label of the form row whose field is `widget`, or a layout holding it (a row of controls)."""
    for row in range(form.rowCount()):
        field = form.itemAt(row, QFormLayout.ItemRole.FieldRole)
        if field is None:
            continue
        inside = field.widget() is widget or (
            field.layout() is not None and any(lay.indexOf(widget) >= 0 for lay in _layouts(field.layout()))
        )
        label_item = form.itemAt(row, QFormLayout.ItemRole.LabelRole)
        label = label_item.widget() if label_item is not None else None
        if inside and isinstance(label, QLabel):
            return _clean(label.text())
    return ""


def _layouts(layout):
    """A layout and every layout nested in it."""
    if layout is None:
        return
    yield layout
    for i in range(layout.count()):
        item = layout.itemAt(i)
        if item is not None and item.layout() is not None:
            yield from _layouts(item.layout())


def derived_name(widget: QWidget) -> str:
    """What a sighted user reads as this control's name."""
    if isinstance(widget, QAbstractButton):
        text = widget.text()
        if text.strip() and not symbol_only(text):
            return ""  # Qt names a button by its text already
        if widget.toolTip():
            return _first_sentence(widget.toolTip())
    owner = _owning_control(widget)
    if owner is not None and owner.accessibleName():
        return owner.accessibleName()
    label = form_label(widget)
    if label:
        return label
    if widget.toolTip():
        return _first_sentence(widget.toolTip())
    editor = widget.lineEdit() if isinstance(widget, QComboBox) else widget
    placeholder = getattr(editor, "placeholderText", None)
    if callable(placeholder) and placeholder():
        return _clean(placeholder())
    return ""


def _owning_control(widget: QWidget) -> QWidget | None:
    """The labelled slider (superqt's QLabeled… sliders) a slider or its value box belongs to."""
    parent = widget.parentWidget()
    if parent is not None and type(parent).__module__.startswith("superqt"):
        if not parent.accessibleName():
            name = form_label(parent) or _first_sentence(parent.toolTip())
            if name:
                parent.setAccessibleName(name)
        return parent
    return None


def _is_labeled_slider(widget: QWidget) -> bool:
    """superqt's QLabeled… sliders: a container of a slider and value boxes, named as one control."""
    return type(widget).__module__.startswith("superqt") and not isinstance(widget, CONTROLS)


def name_control(widget: QWidget) -> None:
    if _is_labeled_slider(widget):
        name = widget.accessibleName() or form_label(widget) or _first_sentence(widget.toolTip())
        if name:
            widget.setAccessibleName(name)
            for part in widget.findChildren(QWidget):
                if is_control(part) and not part.accessibleName():
                    part.setAccessibleName(name)
        return
    if not is_control(widget):
        return
    name = widget.accessibleName() or derived_name(widget)
    if name and not widget.accessibleName():
        widget.setAccessibleName(name)
    if name and type(widget).__module__.startswith("superqt"):  # a labelled slider that is a slider itself
        for part in widget.findChildren(QWidget):
            if is_control(part) and not part.accessibleName():
                part.setAccessibleName(name)


NAMING_EVENTS = (QEvent.Type.Polish, QEvent.Type.Show)  # Show: parts polished before their label existed


class AccessibleNames(QObject):
    """The application-wide event filter that names controls as Qt polishes them (once each)."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:  # noqa: N802 — Qt's name
        if event.type() in NAMING_EVENTS and isinstance(watched, QWidget):
            name_control(watched)
        return False


def install(app: QObject) -> None:
    """Name every control of `app` from now on (once per application)."""
    if not app.property("studio_accessible_names"):
        app.setProperty("studio_accessible_names", True)
        names = AccessibleNames(app)  # parented to the app: lives as long as it
        app.installEventFilter(names)
        # No Python filter while the application tears down (events then may outlive the interpreter).
        quitting = getattr(app, "aboutToQuit", None)
        if quitting is not None:
            quitting.connect(lambda: app.removeEventFilter(names))
