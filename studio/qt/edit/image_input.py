"""The Prompt panel's "Image input" section: strength, mask grow and blur, "only masked area" with
padding, colour correction, and a line saying what Generate will run (img2img / inpaint /
outpaint). Visible while the Edit tab is open with an image on it; `request_fields` adds the
input image (and mask; for a grown canvas the picture before it grew and `outpaint` with the
amounts and fill) to a request."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import QCheckBox, QFormLayout, QLabel, QSpinBox, QVBoxLayout, QWidget
from superqt import QLabeledDoubleSlider

from studio.core.errors import InvalidRequest
from studio.core.request import GenerationRequest
from studio.qt.edit.workspace import EditWorkspace, snap8

IMG2IMG_STRENGTH = 0.75
INPAINT_STRENGTH = 1.0


class ImageInputSection(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ImageInput")
        self.workspace: EditWorkspace | None = None
        self._edit_mode = False
        self._strength_touched = False
        self._masked = False
        self._auto = False
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(6)
        title = QLabel("IMAGE INPUT", objectName="Section")
        lay.addWidget(title)
        self.note = QLabel("", objectName="InputNote")
        self.note.setWordWrap(True)
        lay.addWidget(self.note)
        form = QFormLayout()
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)  # labels above fields in a narrow panel
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.strength = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.strength.setRange(0.0, 1.0)
        self.strength.setSingleStep(0.05)
        self.strength.setDecimals(2)
        self._auto = True
        self.strength.setValue(IMG2IMG_STRENGTH)
        self._auto = False
        self.strength.setToolTip(
            "How much to change: 0 keeps the input, 1 repaints it completely "
            "(0.75 is a good start for img2img; 1.0 for a painted mask)."
        )
        self.strength.valueChanged.connect(self._touched)
        form.addRow("Strength", self.strength)
        self.grow = _px_spin(0, 512, 4, "Grow the mask by this many pixels before generating.")
        form.addRow("Mask grow", self.grow)
        self.blur = _px_spin(0, 512, 8, "Feather the mask edge over this many pixels, so the new part blends in.")
        form.addRow("Mask blur", self.blur)
        self.only_masked = QCheckBox("Only masked area")
        self.only_masked.setToolTip(
            "Generate just the masked part plus padding, at the Size fields' resolution, "
            "and paste it back: more detail for small areas of a big picture."
        )
        self.only_masked.toggled.connect(self._refresh)
        form.addRow("", self.only_masked)
        self.padding = _px_spin(0, 2048, 32, "Pixels of context around the masked area (Only masked area).")
        form.addRow("Padding", self.padding)
        self.color_correction = QCheckBox("Colour correction")
        self.color_correction.setChecked(True)
        self.color_correction.setToolTip(
            "Match the repainted colours to the picture around the mask before blending it in, so the "
            "edge shows no colour step (the model's colour cast is measured where nothing should change)."
        )
        form.addRow("", self.color_correction)
        lay.addLayout(form)
        self._timer = QTimer(self, singleShot=True, interval=80)  # mask strokes arrive fast: check once
        self._timer.timeout.connect(self._refresh)
        self.setVisible(False)

    # -- wiring -----------------------------------------------------------------------------------------
    def attach(self, workspace: EditWorkspace) -> None:
        self.workspace = workspace
        workspace.inputChanged.connect(self._timer.start)
        self._refresh()

    def set_edit_mode(self, on: bool) -> None:
        """The window calls this when the Edit tab is shown or hidden."""
        self._edit_mode = bool(on)
        self._refresh()

    @property
    def _ws(self) -> EditWorkspace:
        """The Edit tab, once attached (every caller runs only while the section is active)."""
        assert self.workspace is not None
        return self.workspace

    def active(self) -> bool:
        return self._edit_mode and self.workspace is not None and self._ws.has_image()

    def _touched(self, *_: Any) -> None:
        if not self._auto:  # the user moved it: leave it alone from now on
            self._strength_touched = True

    def kind(self) -> str:
        if not self.active():
            return "txt2img"
        if self._ws.grown():
            return "outpaint"
        return "inpaint" if self._ws.has_mask() else "img2img"

    def _refresh(self, *_: Any) -> None:
        active = self.active()
        self.setVisible(active)
        if not active:
            return
        masked = self._ws.has_mask() or self._ws.grown()
        if masked != self._masked:
            self._masked = masked
            if not self._strength_touched:
                self._auto = True
                self.strength.setValue(INPAINT_STRENGTH if masked else IMG2IMG_STRENGTH)
                self._auto = False
        for control in (self.grow, self.blur, self.only_masked, self.color_correction):
            control.setEnabled(masked)
        self.padding.setEnabled(masked and self.only_masked.isChecked())
        w, h = self._ws.image_size()
        if self._ws.grown():
            grown = ", ".join(
                f"{n} px {side}"
                for n, side in zip(self._ws.canvas.expansion(), ("left", "top", "right", "bottom"))
                if n
            )
            fill = self._ws.canvas.outpaint_fill()
            where = " (masked area only, at the Size fields' resolution)" if self.only_masked.isChecked() else ""
            text = (
                f"Generate runs <b>outpaint</b> to {w}×{h}: the picture grows by {grown} from a {fill} fill; "
                f"the new area, a band along the old edge and any mask on the picture are repainted{where}."
            )
        elif not masked:
            text = f"Generate runs <b>img2img</b> on the {w}×{h} Edit canvas (paint a mask to inpaint instead)."
        elif self.only_masked.isChecked():
            text = (
                "Generate runs <b>inpaint</b> of the masked area only, at the Size fields' resolution, "
                f"pasted back into the {w}×{h} canvas."
            )
        else:
            text = f"Generate runs <b>inpaint</b> over the whole {w}×{h} Edit canvas; pixels outside the mask are kept."
        self.note.setText(text)

    # -- request ----------------------------------------------------------------------------------------
    def set_request(self, request: GenerationRequest) -> None:
        """Show a recipe's image-input settings (Recreate); its strength stays until the user moves it."""
        self._strength_touched = True
        self.strength.setValue(request.strength)
        self.grow.setValue(request.mask_grow)
        self.blur.setValue(request.mask_blur)
        self.only_masked.setChecked(request.inpaint_area == "only_masked")
        self.padding.setValue(request.inpaint_padding)
        self.color_correction.setChecked(request.color_correction)

    def request_fields(self, width: int, height: int, folder=None) -> dict[str, Any]:
        """Fields to add to a request built from the Prompt panel ({} when there is no image input)."""
        if not self.active():
            return {}
        grown = self._ws.grown()
        try:  # an outpaint sends the picture before it grew (and the mask painted on it); the engine grows it
            image_ref, mask_ref = self._ws.export_refs(folder, original=grown)
        except OSError as exc:
            raise InvalidRequest(
                f"The Edit canvas could not be saved as the input image: {exc}",
                "Check that the studio's data folder is writable and has free space.",
            ) from exc
        w, h = self._ws.image_size()
        fields: dict[str, Any] = dict(
            init_image=image_ref, mask=mask_ref, strength=round(float(self.strength.value()), 2)
        )
        only = (mask_ref is not None or grown) and self.only_masked.isChecked()
        fields["width"], fields["height"] = (width, height) if only else (snap8(w), snap8(h))
        if grown:
            fields.update(outpaint=self._ws.canvas.expansion(), outpaint_fill=self._ws.canvas.outpaint_fill())
        if mask_ref is not None or grown:
            fields.update(
                mask_grow=self.grow.value(),
                mask_blur=self.blur.value(),
                inpaint_area="only_masked" if only else "whole",
                inpaint_padding=self.padding.value(),
                color_correction=self.color_correction.isChecked(),
            )
        return fields


def _px_spin(lo: int, hi: int, value: int, tip: str) -> QSpinBox:
    s = QSpinBox(minimum=lo, maximum=hi, value=value)
    s.setSuffix(" px")
    s.setToolTip(tip)
    return s
