"""A toolbar for the mask canvas: tools, brush settings, mask operations, view and overlay, outpaint.
It only calls the canvas's public API and follows its signals, so the window can dock it anywhere.

Its groups wrap onto more rows when the centre area is narrow (`FlowLayout`), so every tool stays
on screen at any width instead of disappearing behind an overflow arrow."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QColor, QIcon, QPixmap
from PySide6.QtWidgets import (
    QButtonGroup,
    QColorDialog,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPushButton,
    QRadioButton,
    QSpinBox,
    QToolButton,
    QWidget,
    QWidgetAction,
)

from studio.qt.common.flow_layout import FlowLayout

TOOL_TIPS = {
    "brush": ("Brush", "B", "Paint the mask: white areas are repainted by the generator"),
    "eraser": ("Eraser", "E", "Erase the mask: keep these pixels as they are"),
    "rect": ("Rectangle", "R", "Drag a rectangle to mask it (hold Alt to unmask)"),
    "lasso": ("Lasso", "L", "Draw a free shape to mask it (hold Alt to unmask)"),
    "expand": ("Expand", "X", "Outpaint: drag an edge of the image outwards to grow the canvas"),
}
FILLS = {
    "edge": ("Edge", "Repeat the edge pixels outwards: a neutral start"),
    "mirror": ("Mirror", "Mirror the picture at its edge, blurred: keeps the colours and textures nearby"),
    "noise": ("Noise", "Random noise: the model invents the new area most freely"),
}


class MaskToolBar(QWidget):
    """Tools and settings for one `MaskCanvas`, in groups that wrap onto more rows when narrow."""

    def __init__(self, canvas, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("MaskToolBar")
        self.canvas = canvas
        self.flow = FlowLayout(self, spacing=4, group_gap=10)
        self.flow.setContentsMargins(6, 4, 6, 4)
        self.setStyleSheet("QToolButton { padding: 4px 7px; }")  # compact: more fits on a row
        self.buttons: list[QToolButton] = []

        self.flow.new_group()
        self.tools = QActionGroup(self)
        self.tool_actions: dict[str, QAction] = {}
        for name, (label, key, tip) in TOOL_TIPS.items():
            if name not in canvas.TOOLS:
                continue
            a = self._action(label, f"{tip} ({key})", lambda _=False, n=name: canvas.set_tool(n))
            a.setCheckable(True)
            self.tools.addAction(a)
            self.tool_actions[name] = a
        self.tool_actions[canvas.tool()].setChecked(True)
        canvas.toolChanged.connect(lambda n: self.tool_actions[n].setChecked(True))

        self.flow.new_group()
        self.undo_action = self._action("Undo", "Undo the last edit (Ctrl+Z)", canvas.undo)
        self.redo_action = self._action("Redo", "Redo the edit just undone (Ctrl+Shift+Z)", canvas.redo)
        canvas.historyChanged.connect(self._sync_history)
        self._sync_history()

        self.flow.new_group()
        self.size_box = self._spin("Size", 1, 1024, " px", "Brush size in image pixels ([ smaller, ] larger)")
        self.hardness_box = self._spin(
            "Hardness", 0, 100, " %", "Brush hardness: 100 % is a hard edge, 0 % a soft falloff"
        )
        self.opacity_box = self._spin("Opacity", 1, 100, " %", "Brush opacity: how strongly one stroke masks")
        self.size_box.valueChanged.connect(lambda v: canvas.set_brush_size(v))
        self.hardness_box.valueChanged.connect(lambda v: canvas.set_hardness(v / 100))
        self.opacity_box.valueChanged.connect(lambda v: canvas.set_opacity(v / 100))
        canvas.brushChanged.connect(self._sync_brush)
        self._sync_brush()

        self.flow.new_group()
        self.fit_action = self._action("Fit", "Fit the image in the view (Ctrl+0)", canvas.fit)
        self.actual_action = self._action("100 %", "One image pixel per screen pixel (Ctrl+1)", canvas.actual_size)
        self.flow.new_group()
        self.fill_action = self._action("Fill", "Mask the whole image", canvas.fill_mask)
        self.invert_action = self._action("Invert", "Swap masked and unmasked areas", canvas.invert_mask)
        self.clear_action = self._action("Clear", "Remove the whole mask", canvas.clear_mask)
        self.flow.new_group()
        self.overlay_action = self._action("Overlay", "Show the mask as a coloured overlay", canvas.set_overlay_visible)
        self.overlay_action.setCheckable(True)
        self.overlay_action.setChecked(canvas.overlay_visible())
        self.color_action = self._action("Colour…", "Choose the overlay colour", self.choose_overlay_color)
        self.buttons[-1].setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)  # the colour beside the label
        canvas.overlayChanged.connect(self._sync_overlay)
        self._sync_overlay()

        self.flow.new_group()
        self._build_outpaint()
        self.open_action = self._action(
            "Open…", "Open an image to edit (or drop one on the canvas, or paste with Ctrl+V)", self.open_image
        )
        self.mask_action = self._action(
            "Mask…", "Load a mask image of the same size (white = repaint)", self.open_mask_file
        )

    def _build_outpaint(self) -> None:
        """A drop-down with pixels to add on each side (the numbers way to outpaint; the Expand tool
        is the dragging way) and how to fill the new area (also used by the Expand tool)."""
        button = QToolButton(self)
        button.setText("Outpaint…")
        button.setToolTip("Grow the canvas by a number of pixels on each side; the new area is filled and masked")
        button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        menu = QMenu(button)
        form = QWidget(menu)
        lay = QFormLayout(form)
        self.outpaint_boxes: dict[str, QSpinBox] = {}
        for side in ("Left", "Top", "Right", "Bottom"):
            box = QSpinBox(form)
            box.setRange(0, 4096)
            box.setSingleStep(8)
            box.setSuffix(" px")
            box.setToolTip(f"Pixels to add on the {side.lower()} (multiples of 8 suit the model)")
            lay.addRow(side, box)
            self.outpaint_boxes[side.lower()] = box
        fills = QWidget(form)
        row = QHBoxLayout(fills)
        row.setContentsMargins(0, 0, 0, 0)
        self.fill_group = QButtonGroup(fills)
        self.fill_buttons: dict[str, QRadioButton] = {}
        for name, (label, tip) in FILLS.items():
            rb = QRadioButton(label, fills)
            rb.setToolTip(tip)
            rb.setChecked(name == self.canvas.outpaint_fill())
            rb.toggled.connect(lambda on, n=name: on and self.canvas.set_outpaint_fill(n))
            self.fill_group.addButton(rb)
            self.fill_buttons[name] = rb
            row.addWidget(rb)
        lay.addRow("Fill", fills)
        go = QPushButton("Expand canvas", form)
        go.clicked.connect(self.apply_outpaint)
        lay.addRow(go)
        action = QWidgetAction(menu)
        action.setDefaultWidget(form)
        menu.addAction(action)
        button.setMenu(menu)
        self.outpaint_menu = menu
        self.outpaint_button = button
        self.buttons.append(button)
        self.flow.addWidget(button)

    def apply_outpaint(self) -> bool:
        sides = [self.outpaint_boxes[k].value() for k in ("left", "top", "right", "bottom")]
        if not self.canvas.expand(*sides):
            return False
        for box in self.outpaint_boxes.values():
            box.setValue(0)
        self.outpaint_menu.close()
        return True

    def _spin(self, label: str, lo: int, hi: int, suffix: str, tip: str) -> QSpinBox:
        pair = QWidget(self)  # label and box wrap together
        row = QHBoxLayout(pair)
        row.setContentsMargins(0, 0, 0, 0)
        row.setSpacing(4)
        lab = QLabel(label, pair)
        lab.setToolTip(tip)
        box = QSpinBox(pair)
        box.setRange(lo, hi)
        box.setSuffix(suffix)
        box.setToolTip(tip)
        box.setKeyboardTracking(False)
        row.addWidget(lab)
        row.addWidget(box)
        self.flow.addWidget(pair)
        return box

    def _action(self, label: str, tip: str, slot) -> QAction:
        a = QAction(label, self)
        a.setIconText(label)  # keep the "…" of "Open…" on the button (Qt drops it from the default)
        a.setToolTip(tip)
        a.triggered.connect(slot)
        self.addAction(a)
        button = QToolButton(self)
        button.setDefaultAction(a)
        self.buttons.append(button)
        self.flow.addWidget(button)
        return a

    def _sync_brush(self) -> None:
        c = self.canvas
        for box, value in (
            (self.size_box, round(c.brush_size())),
            (self.hardness_box, round(c.hardness() * 100)),
            (self.opacity_box, round(c.opacity() * 100)),
        ):
            if box.value() != value:
                box.blockSignals(True)
                box.setValue(value)
                box.blockSignals(False)

    def _sync_history(self) -> None:
        h = self.canvas.history
        self.undo_action.setEnabled(h.can_undo())
        self.redo_action.setEnabled(h.can_redo())
        self.undo_action.setToolTip(
            f"Undo {h.entries[h.index - 1].label} (Ctrl+Z)" if h.can_undo() else "Nothing to undo"
        )
        self.redo_action.setToolTip(
            f"Redo {h.entries[h.index].label} (Ctrl+Shift+Z)" if h.can_redo() else "Nothing to redo"
        )

    def _sync_overlay(self) -> None:
        self.overlay_action.setChecked(self.canvas.overlay_visible())
        swatch = QPixmap(14, 14)
        swatch.fill(self.canvas.overlay_color())
        self.color_action.setIcon(QIcon(swatch))

    def choose_overlay_color(self) -> None:
        c = QColorDialog.getColor(self.canvas.overlay_color(), self, "Mask overlay colour")
        if c.isValid():
            self.canvas.set_overlay_color(QColor(c))

    def open_image(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open image", "", "Images (*.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff);;All files (*)"
        )
        if path:
            self.canvas.load_image(path)

    def open_mask_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Load mask", "", "Images (*.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff);;All files (*)"
        )
        if path:
            self.canvas.load_mask(path)
