"""The Steps strip under the canvas: one thumbnail per step of the chosen run, a slider to scrub
through them (during the run too), and beside it "Use settings" and "Branch from here"."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QHBoxLayout,
    QLabel,
    QListView,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QSizePolicy,
    QSlider,
    QVBoxLayout,
    QWidget,
)

from studio.qt.common.images import to_qimage
from studio.session.step_history import KeptStep, RunRecord, StepHistory, resolve_step

THUMB = 52
BRANCH_TIP = (
    "Start a new run from this step's latent with the Prompt panel's current prompt, guidance, scheduler "
    "and seed: only the remaining steps are made. Everything else stays the parent's: model, size, steps, "
    "VAE, LoRAs and ControlNet units — and for an edit, its input image, mask and strength."
)
NO_LATENT_TIP = (
    "This step's latent is not kept, so it cannot be branched from: the gallery keeps the latents of its "
    "newest images within the budget in Gallery ▸ Kept steps…, and the session's memory budget trims old runs."
)
STATUS_TEXT = {
    "queued": "queued",
    "loading": "loading",
    "running": "running",
    "done": "done",
    "cancelled": "cancelled",
    "failed": "failed",
}


def run_label(rec: RunRecord) -> str:
    prompt = rec.request.prompt or "(no prompt)"
    if len(prompt) > 38:
        prompt = prompt[:37] + "…"
    status = "from the gallery" if rec.restored else STATUS_TEXT.get(rec.status, rec.status)
    label = f"#{rec.number}  {prompt}  ·  {status}"
    if rec.branch_step is not None:
        label += f"  ·  branch @ {rec.branch_step}"
    return label


class StepsStrip(QWidget):
    stepSelected = Signal(str, int)  # run id, step
    branchRequested = Signal(str, int)
    useSettingsRequested = Signal(str)

    def __init__(self, history: StepHistory, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("StepsStrip")
        self.history = history
        self.run_id: str | None = None
        self.following = True  # the slider follows the newest step until the user scrubs back

        top = QHBoxLayout()
        top.setSpacing(8)
        title = QLabel("STEPS", objectName="Section")
        top.addWidget(title)
        self.runs = QComboBox(objectName="RunPicker")
        self.runs.setAccessibleName("Run")
        self.runs.setToolTip("Every run of this session is kept: pick one to scrub through its steps.")
        self.runs.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.runs.setMinimumContentsLength(10)
        self.runs.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.runs.activated.connect(lambda i: self.show_run(self.runs.itemData(i), follow=False))
        top.addWidget(self.runs, 1)
        self.step_label = QLabel("", objectName="StepLabel")
        self.step_label.setMinimumWidth(80)
        self.step_label.setAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        top.addWidget(self.step_label)
        self.use_settings = QPushButton("Use settings", objectName="UseSettings")
        self.use_settings.setToolTip("Load this run's prompt and settings into the Prompt panel.")
        self.use_settings.clicked.connect(lambda: self.run_id and self.useSettingsRequested.emit(self.run_id))
        self.branch = QPushButton("Branch from here", objectName="Branch")
        self.branch.setToolTip(BRANCH_TIP)
        self.branch.clicked.connect(self._branch)

        self.slider = QSlider(Qt.Orientation.Horizontal, objectName="StepSlider")
        self.slider.setAccessibleName("Step")
        self.slider.setToolTip("Scrub through the steps (←/→ step by step). Works while the run goes on.")
        self.slider.setRange(1, 1)
        self.slider.setPageStep(5)
        self.slider.valueChanged.connect(self._slider_moved)

        self.thumbs = QListWidget(objectName="StepThumbs")
        self.thumbs.setAccessibleName("Steps of the run")
        self.thumbs.setViewMode(QListView.ViewMode.IconMode)
        self.thumbs.setFlow(QListView.Flow.LeftToRight)
        self.thumbs.setWrapping(False)
        self.thumbs.setMovement(QListView.Movement.Static)
        self.thumbs.setUniformItemSizes(True)
        self.thumbs.setIconSize(QSize(THUMB, THUMB))
        self.thumbs.setGridSize(QSize(THUMB + 10, THUMB + 22))
        self.thumbs.setFixedHeight(THUMB + 36)
        self.thumbs.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.thumbs.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.thumbs.currentRowChanged.connect(self._thumb_clicked)
        self.thumbs.setToolTip("Every step of the chosen run. Click one to see it on the canvas.")

        # the buttons act on the slider's step, so they sit beside it: the header row stays short and
        # the strip fits a narrow centre (a 1366 px screen with both dock columns open)
        bottom = QHBoxLayout()
        bottom.setSpacing(8)
        bottom.addWidget(self.slider, 1)
        bottom.addWidget(self.use_settings)
        bottom.addWidget(self.branch)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(12, 8, 12, 8)
        lay.setSpacing(6)
        lay.addLayout(top)
        lay.addWidget(self.thumbs)
        lay.addLayout(bottom)
        self._update_buttons()

    # -- runs -----------------------------------------------------------------------------------------
    def refresh_runs(self) -> None:
        self.runs.blockSignals(True)
        self.runs.clear()
        for rec in reversed(self.history.runs.values()):
            self.runs.addItem(run_label(rec), rec.run_id)
        idx = self.runs.findData(self.run_id)
        if idx >= 0:
            self.runs.setCurrentIndex(idx)
        self.runs.blockSignals(False)
        self._update_buttons()

    def show_run(self, run_id: str | None, follow: bool = True) -> None:
        keep = self.selected_step() if (run_id == self.run_id and not follow) else None
        self.run_id = run_id
        self.following = follow
        self.thumbs.blockSignals(True)
        self.thumbs.clear()
        rec = self.history.get(run_id)
        if rec is not None:
            for step in self._steps_of(rec):
                kept = resolve_step(self.history, rec.run_id, step)
                self._add_thumb(step, kept, inherited=rec.branch_step is not None and step <= rec.branch_step)
        self.thumbs.blockSignals(False)
        self.refresh_runs()
        if keep is not None and keep in self.kept_steps():
            self._sync_slider(select_last=False)
            self.select_step(keep)
        else:
            self._sync_slider(select_last=True)

    def refresh_current(self) -> None:
        """The shown run changed state (finished, cancelled): relabel, re-enable, re-show the selection."""
        self.refresh_runs()
        row = self.thumbs.currentRow()
        if row >= 0:
            self._emit_selected(row)

    def _steps_of(self, rec: RunRecord) -> list[int]:
        own = rec.kept_steps()
        if rec.branch_step is None:
            return own
        inherited = [s for s in range(1, rec.branch_step + 1) if resolve_step(self.history, rec.run_id, s) is not None]
        return inherited + own

    def add_steps(self, run_id: str, kept: list[KeptStep]) -> None:
        """New steps of `run_id` arrived (a batch; only the newest is selected)."""
        if run_id != self.run_id:
            return
        self.thumbs.blockSignals(True)
        for k in kept:
            self._add_thumb(k.step, k)
        self.thumbs.blockSignals(False)
        self._sync_slider(select_last=self.following)

    def _add_thumb(self, step: int, kept: KeptStep | None, inherited: bool = False) -> None:
        item = QListWidgetItem(str(step))
        item.setData(Qt.ItemDataRole.UserRole, step)
        img = to_qimage(kept.image) if kept is not None else None
        if img is not None:
            pm = QPixmap.fromImage(
                img.scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation)
            )
            item.setIcon(QIcon(pm))
        tip = f"Step {step}"
        if inherited:
            tip += " (from the parent run)"
            item.setForeground(Qt.GlobalColor.gray)
        item.setToolTip(tip)
        self.thumbs.addItem(item)

    # -- selection ------------------------------------------------------------------------------------
    def kept_steps(self) -> list[int]:
        return [self.thumbs.item(i).data(Qt.ItemDataRole.UserRole) for i in range(self.thumbs.count())]

    def selected_step(self) -> int | None:
        item = self.thumbs.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    def select_step(self, step: int) -> bool:
        """Scrub to `step` (as the user would); False when that step is not kept."""
        steps = self.kept_steps()
        if step not in steps:
            return False
        self.following = step == steps[-1]
        self.slider.blockSignals(True)
        self.slider.setValue(steps.index(step) + 1)
        self.slider.blockSignals(False)
        self._select_row(steps.index(step))
        return True

    def _sync_slider(self, select_last: bool) -> None:
        n = self.thumbs.count()
        self.slider.blockSignals(True)
        self.slider.setRange(1, max(1, n))
        self.slider.setEnabled(n > 0)
        if select_last and n:
            self.slider.setValue(n)
        self.slider.blockSignals(False)
        if select_last and n:
            self._select_row(n - 1)
        self._update_label()

    def _slider_moved(self, value: int) -> None:
        n = self.thumbs.count()
        self.following = value >= n
        self._select_row(value - 1)

    def _thumb_clicked(self, row: int) -> None:
        if row < 0:
            return
        self.slider.blockSignals(True)
        self.slider.setValue(row + 1)
        self.slider.blockSignals(False)
        self.following = row == self.thumbs.count() - 1
        self._emit_selected(row)

    def _select_row(self, row: int) -> None:
        if not 0 <= row < self.thumbs.count():
            return
        self.thumbs.blockSignals(True)
        self.thumbs.setCurrentRow(row)
        self.thumbs.blockSignals(False)
        self.thumbs.scrollToItem(self.thumbs.item(row))
        self._emit_selected(row)

    def _emit_selected(self, row: int) -> None:
        self._update_label()
        self._update_buttons()
        step = self.thumbs.item(row).data(Qt.ItemDataRole.UserRole)
        if self.run_id:
            self.stepSelected.emit(self.run_id, step)

    def _update_label(self) -> None:
        rec = self.history.get(self.run_id)
        step = self.selected_step()
        self.step_label.setText(f"Step {step} / {rec.total}" if rec and step else "")

    def _update_buttons(self) -> None:
        rec = self.history.get(self.run_id)
        step = self.selected_step()
        kept = resolve_step(self.history, rec.run_id, step) if rec is not None and step else None
        upscale = rec is not None and rec.request.upscale is not None
        # a hires fix's second pass starts from the first one, upscaled: branching continues the first pass
        second_pass = bool(rec and rec.request.hires is not None and step and step >= rec.request.steps)
        can = bool(
            rec
            and not upscale
            and not second_pass
            and rec.status in ("done", "cancelled")
            and step
            and step < rec.total
            and kept is not None
            and kept.latent is not None
        )
        self.branch.setEnabled(can)
        if upscale:
            tip = "An upscale has no steps to branch from: its steps are tiles."
        elif second_pass and rec is not None:
            tip = (
                f"This step is in the hires fix's second pass (steps {rec.request.steps + 1}–{rec.total}); "
                f"branching continues the first pass: pick a step before {rec.request.steps}."
            )
        elif rec is not None and step and step < rec.total and kept is not None and kept.latent is None:
            tip = NO_LATENT_TIP
        else:
            tip = BRANCH_TIP
        self.branch.setToolTip(tip)
        self.use_settings.setEnabled(rec is not None)

    def _branch(self) -> None:
        """The button's action, and the Generate menu's (Ctrl+B): nothing while the button is disabled."""
        step = self.selected_step()
        if self.run_id and step and self.branch.isEnabled():
            self.branchRequested.emit(self.run_id, step)

    def image_for(self, run_id: str, step: int) -> QImage | None:
        kept = resolve_step(self.history, run_id, step)
        return to_qimage(kept.image) if kept is not None else None
