"""Gallery images' kept steps in the window: selecting an image shows its run's steps in the Steps
strip (after a restart too: studio.session.kept_runs brings them back from the gallery's kept
steps), and View ▸ Kept steps… sets how many images keep the latents to branch from."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, Qt
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from studio.core import settings as core_settings
from studio.core.gallery.steps import Budget
from studio.qt.common.widgets import fmt_mb
from studio.session.kept_runs import restore_run

log = logging.getLogger(__name__)


class KeptSteps(QObject):
    """Glue the main window owns: the gallery's selection to the Steps strip, and the budget dialog."""

    def __init__(self, window: Any) -> None:
        super().__init__(window)
        self.w = window
        panel = window.gallery
        if panel is not None and hasattr(panel, "itemSelected"):
            panel.itemSelected.connect(self.show_item)
        window.add_menu_action(
            window.view_menu,
            "Kept steps…",
            self.open_dialog,
            None,
            "How many gallery images keep the latents of their steps (to branch from after a restart).",
        )

    @property
    def gallery(self) -> Any:
        panel = self.w.gallery
        return getattr(panel, "gallery", None) if panel is not None else None

    def show_item(self, item: Any) -> bool:
        """Show the steps of the run that made gallery image `item` in the Steps strip (the strip
        keeps the run shown when it is that run already). False when none are kept."""
        gallery = self.gallery
        run_id = getattr(item, "run_id", "")
        if gallery is None or not run_id:
            return False
        if self.w.strip.run_id == run_id:
            return True
        try:
            rec = restore_run(self.w.history, gallery.steps, run_id, self._read_images)
        except Exception as exc:  # noqa: BLE001 — kept steps are a nicety: the gallery still works
            log.warning("kept steps of %s not shown: %s", run_id, exc)
            return False
        if rec is None:
            return False
        self.w.strip.show_run(run_id, follow=False)
        return True

    def _read_images(self, run_id: str) -> tuple[list[np.ndarray], list[str]]:
        from PIL import Image

        images, ids = [], []
        for it in self.gallery.run_items(run_id):
            try:
                with Image.open(it.path) as im:
                    images.append(np.asarray(im.convert("RGB")))
                ids.append(it.id)
            except OSError:
                continue
        return images, ids

    def open_dialog(self) -> None:
        dlg = KeptStepsDialog(self.gallery, self.w)
        dlg.exec()


class KeptStepsDialog(QDialog):
    """How many gallery images keep their step latents (the previews are always kept)."""

    def __init__(self, gallery: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("KeptStepsDialog")
        self.setWindowTitle("Kept steps")
        self.gallery = gallery
        s = core_settings.load()
        intro = QLabel(
            "Every gallery image keeps its step previews, so its steps can be scrubbed after the studio "
            "closes. The latents that “Branch from here” starts from are kept for the newest images "
            "within both limits below; the oldest images' latents are dropped first.",
            wordWrap=True,
        )
        self.images = QSpinBox(objectName="KeepImages", minimum=0, maximum=1_000_000, value=s.steps_keep_images)
        self.images.setSuffix(" images")
        self.gb = QDoubleSpinBox(objectName="KeepGB", minimum=0.0, maximum=10_000.0, decimals=1, value=s.steps_keep_gb)
        self.gb.setSuffix(" GB")
        self.gb.setSingleStep(0.5)
        self.usage = QLabel("", objectName="KeptUsage", wordWrap=True)
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        form.addRow("Latents for the newest", self.images)
        form.addRow("and at most", self.gb)
        form.addRow("Now", self.usage)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(intro)
        lay.addLayout(form)
        lay.addWidget(buttons)
        self.refresh_usage()

    def refresh_usage(self) -> None:
        if self.gallery is None:
            self.usage.setText("No gallery.")
            return
        u = self.gallery.steps.usage()
        self.usage.setText(
            f"latents of {u.images_with_latents} images ({fmt_mb(u.latent_bytes / 2**20)}); "
            f"step previews of {u.runs} runs ({fmt_mb(u.preview_bytes / 2**20)})"
        )

    def accept(self) -> None:
        s = core_settings.update(steps_keep_images=int(self.images.value()), steps_keep_gb=float(self.gb.value()))
        if self.gallery is not None:
            self.gallery.steps.enforce(Budget.from_settings(s))
        super().accept()
