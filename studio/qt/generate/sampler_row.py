"""The Prompt panel's sampler and schedule-type boxes, side by side (A1111's "Sampling method" and
"Schedule type"): the schedule types offered follow the sampler (studio.core.samplers)."""

from __future__ import annotations

from PySide6.QtWidgets import QComboBox, QHBoxLayout

from studio.core import samplers
from studio.core.request import SCHEDULER_NAMES


class SamplerRow(QHBoxLayout):
    def __init__(self, combo) -> None:
        super().__init__()
        self.sampler: QComboBox = combo()
        self.sampler.addItems(list(SCHEDULER_NAMES))
        self.sampler.setCurrentText("Euler a")
        self.sampler.setToolTip(
            "The sampler, by A1111's names. Euler a: varied and soft; DPM++ 2M with Karras: sharp in few steps; "
            "DDIM: deterministic; Heun, DPM2 and DPM++ SDE run the model twice a step."
        )
        self.addWidget(self.sampler, 3)
        self.schedule: QComboBox = combo()
        self.schedule.setToolTip(
            "Schedule type (A1111's): how the noise levels are spaced. Automatic: the model's own; Karras and "
            "Exponential: more steps at low noise; SGM Uniform: evenly spaced, ending at the last step."
        )
        self.addWidget(self.schedule, 2)
        self.flow = False  # a flow-matching model (FLUX, SD 3) has its own schedule: Automatic only
        self.sampler.currentTextChanged.connect(self.sync)
        self.sync()

    def set(self, name: str, schedule: str | None = None) -> None:
        """Choose a sampler and schedule type; a combined name ("DPM++ 2M Karras") sets both."""
        sampler, from_name = samplers.split(name)
        self.sampler.setCurrentText(sampler)
        self.schedule.setCurrentText(schedule or from_name or samplers.AUTOMATIC)

    def sync(self, *_: object) -> None:
        """Offer the schedule types the chosen sampler runs with (keeping the choice where it still fits)."""
        offered = (samplers.AUTOMATIC,) if self.flow else samplers.schedule_types(self.sampler.currentText())
        keep = self.schedule.currentText() or samplers.AUTOMATIC
        self.schedule.blockSignals(True)
        self.schedule.clear()
        self.schedule.addItems(list(offered))
        self.schedule.setCurrentText(keep if keep in offered else samplers.AUTOMATIC)
        self.schedule.blockSignals(False)
