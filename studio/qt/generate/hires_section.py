"""The Prompt panel's "Hires fix" section (A1111's): on, the image is generated at the Size fields, upscaled
by a factor (latent, Lanczos or an upscaler model) and denoised again with its own steps and strength.
A line says the final size and how many steps the run makes across both passes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from superqt import QLabeledDoubleSlider

from studio.core.request import GenerationRequest, HiresFix

BUILT_IN = (("Latent", "latent"), ("Lanczos", "lanczos"))


def library_upscalers() -> list[str]:
    """Usable upscaler files in the models library and the extra folders (headers only)."""
    from studio.core.library import scan_all

    entries, _ = scan_all()
    return sorted((e.path for e in entries if e.kind == "upscaler" and e.usable), key=lambda p: Path(p).name.lower())


class _UpscalerBox(QComboBox):
    """Lists the library's upscaler models the first time it opens (a scan reads file headers)."""

    def __init__(self, section: HiresSection) -> None:
        super().__init__(objectName="HiresUpscaler")
        self.section = section
        self.scanned = False

    def showPopup(self) -> None:  # noqa: N802
        if not self.scanned:
            self.scanned = True
            self.section.set_upscalers(self.section.find_upscalers())
        super().showPopup()


class HiresSection(QWidget):
    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("HiresFix")
        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(6)
        head = QHBoxLayout()
        head.addWidget(QLabel("HIRES FIX", objectName="Section"))
        head.addStretch(1)
        self.enabled = QCheckBox("On", objectName="HiresOn")
        self.enabled.setToolTip(
            "Generate at the Size fields, upscale, and denoise again at the larger size: more detail than "
            "the model draws at once, without the doubled subjects of a large first pass."
        )
        head.addWidget(self.enabled)
        lay.addLayout(head)
        self.body = QWidget()
        form = QFormLayout(self.body)
        form.setContentsMargins(0, 0, 0, 0)
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.scale = QDoubleSpinBox(objectName="HiresScale", decimals=2, minimum=1.05, maximum=8.0, singleStep=0.25)
        self.scale.setValue(2.0)
        self.scale.setSuffix(" ×")
        self.scale.setToolTip("How much larger the final image is than the Size fields (A1111's “Upscale by”).")
        form.addRow("Upscale by", self.scale)
        up_row = QHBoxLayout()
        self.find_upscalers = library_upscalers  # what the upscaler box offers (tests swap it)
        self.upscaler = _UpscalerBox(self)
        self.upscaler.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.upscaler.setMinimumContentsLength(8)
        for label, value in BUILT_IN:
            self.upscaler.addItem(label, value)
        self.upscaler.setToolTip(
            "Latent: the first pass's latents, enlarged (needs strength ≥ 0.5). Lanczos: the image, resized. "
            "Or an upscaler model (Real-ESRGAN / ESRGAN): sharper detail to start the second pass from."
        )
        up_row.addWidget(self.upscaler, 1)
        browse = QToolButton(text="…", toolTip="Choose an upscaler model (.safetensors).")
        browse.clicked.connect(self._browse)
        up_row.addWidget(browse)
        form.addRow("Upscaler", up_row)
        self.steps = QSpinBox(objectName="HiresSteps", minimum=0, maximum=500)
        self.steps.setSpecialValueText("same as first pass")
        self.steps.setToolTip("Steps of the second pass (0: as many as the first); about steps × strength run.")
        form.addRow("Hires steps", self.steps)
        self.strength = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.strength.setObjectName("HiresStrength")
        self.strength.setRange(0.05, 1.0)
        self.strength.setSingleStep(0.05)
        self.strength.setDecimals(2)
        self.strength.setValue(0.7)
        self.strength.setToolTip("Denoising strength of the second pass: how much it may change the first.")
        form.addRow("Denoising", self.strength)
        self.strength.setAccessibleName("Hires denoising strength")
        self.note = QLabel("", objectName="HiresNote", wordWrap=True)
        form.addRow(self.note)
        lay.addWidget(self.body)
        self.base: tuple[int, int, int] = (512, 512, 20)  # the panel's width, height, steps (for the note)
        self.enabled.toggled.connect(self._refresh)
        for w in (self.scale, self.steps):
            w.valueChanged.connect(self._refresh)
        self.strength.valueChanged.connect(self._refresh)
        self._refresh()

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose an upscaler", "", "Upscalers (*.safetensors)")
        if path:
            self.set_upscaler(path)

    def set_upscalers(self, paths: list[str]) -> None:
        """Offer these upscaler models after Latent and Lanczos (keeps the chosen one)."""
        for p in paths:
            self._add(p)

    def _add(self, value: str) -> int:
        i = self.upscaler.findData(value)
        if i < 0:
            self.upscaler.addItem(Path(value).stem, value)
            i = self.upscaler.count() - 1
            self.upscaler.setItemData(i, value, Qt.ItemDataRole.ToolTipRole)
        return i

    def set_upscaler(self, value: str) -> None:
        self.upscaler.setCurrentIndex(self._add(value))

    def set_base(self, width: int, height: int, steps: int) -> None:
        self.base = (width, height, steps)
        self._refresh()

    def _hires(self) -> HiresFix:
        return HiresFix(
            scale=round(self.scale.value(), 2),
            steps=self.steps.value(),
            strength=round(float(self.strength.value()), 2),
            upscaler=self.upscaler.currentData() or "latent",
        )

    def _refresh(self) -> None:
        on = self.enabled.isChecked()
        self.body.setVisible(on)
        if not on:
            return
        w, h, steps = self.base
        try:
            req = GenerationRequest(width=w, height=h, steps=steps, hires=self._hires())
        except Exception:  # noqa: BLE001 — the panel's own fields are being edited; say nothing yet
            self.note.setText("")
            return
        from studio.core import hires

        tw, th = hires.target_size(req)
        self.note.setText(
            f"{w}×{h} → {tw}×{th}; {hires.total_steps(req)} steps in all ({steps} + {hires.second_pass_steps(req)})"
        )

    def request_fields(self) -> dict[str, Any]:
        """{"hires": HiresFix} when on, else {"hires": None}."""
        if not self.enabled.isChecked():
            return {"hires": None}
        hires = self._hires()
        if hires.upscaler not in ("latent", "lanczos"):
            from studio.core.hashing import file_sha256
            from studio.core.upscalers import find_upscaler

            path = find_upscaler(hires.upscaler)  # a recipe from A1111 names it: found in the library
            hires = hires.model_copy(update={"upscaler": str(path), "upscaler_sha256": file_sha256(path)})
        return {"hires": hires}

    def set_request(self, request: GenerationRequest) -> None:
        h = request.hires
        self.enabled.setChecked(h is not None)
        if h is not None:
            self.scale.setValue(h.scale)
            self.steps.setValue(h.steps)
            self.strength.setValue(h.strength)
            if h.upscaler in ("latent", "lanczos"):
                self.upscaler.setCurrentIndex(self.upscaler.findData(h.upscaler))
            else:
                self.set_upscaler(h.upscaler)
        self._refresh()
