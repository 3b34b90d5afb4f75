"""The X/Y/Z Plot dialog: up to three axes over the Prompt panel's recipe. "Queue cells" expands the plot
(`studio.core.xyz.expand`, as the CLI does) and queues every cell as a run of its own (each joins the
gallery); the grid (`studio.core.grid.draw`: axis titles and values on it) fills in as the cells
finish, and "Save grid…" writes it with its provenance listing the cells."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QFileDialog,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QVBoxLayout,
    QWidget,
)

from studio.core import grid, xyz
from studio.core.errors import StudioError
from studio.qt.common.images import to_qimage

# What the field boxes offer (any FIELD the CLI takes can be typed: lora:NAME, controlnet:1, plugin:…)
OFFERED = ("cfg", "steps", "seed", "scheduler", "size", "cfg_end", "strength", "prompt_sr", "clip_skip", "hires_scale",
           "lora:", "controlnet", "ip_adapter", "model")  # fmt: skip
EXAMPLES = {"cfg": "1, 4, 7", "steps": "10-30 (+10)", "seed": "1, 2", "scheduler": "Euler a, DPM++ 2M Karras",
            "size": "512x512, 768x512", "cfg_end": "0.3, 0.5, 1", "strength": "0.3, 0.6",
            "prompt_sr": "red, green, blue", "lora:": "0, 0.5, 1", "controlnet": "0.5, 1"}  # fmt: skip


class PlotDialog(QDialog):
    """Non-modal: the window keeps working while the cells run. `controller` is the RunController."""

    def __init__(self, controller, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("X/Y/Z plot")
        self.setObjectName("PlotDialog")
        self.controller = controller
        self.fields: list[QComboBox] = []
        self.values: list[QLineEdit] = []
        form = QGridLayout()
        for row, name in enumerate(("X", "Y", "Z")):
            box = QComboBox(objectName=f"Plot{name}Field", editable=True)
            box.addItem("")
            for key in OFFERED:
                box.addItem(key)
            box.setToolTip(
                "The recipe field on this axis; type lora:NAME for a LoRA's weight, controlnet:N for unit N."
            )
            edit = QLineEdit(objectName=f"Plot{name}Values")
            edit.setToolTip("Values, comma-separated (quote one that holds a comma); ranges: 1-5, 1-9 (+2), 0-1 [5].")
            box.currentTextChanged.connect(lambda key, e=edit: e.setPlaceholderText(EXAMPLES.get(key, "")))
            form.addWidget(QLabel(f"{name} axis"), row, 0)
            form.addWidget(box, row, 1)
            form.addWidget(edit, row, 2)
            self.fields.append(box)
            self.values.append(edit)
        form.setColumnStretch(2, 1)
        self.queue_button = QPushButton("Queue cells", objectName="PlotQueue")
        self.queue_button.setToolTip("Run every cell with the Prompt panel's settings and these axes.")
        self.queue_button.clicked.connect(self.queue_cells)
        self.save_button = QPushButton("Save grid…", objectName="PlotSave", enabled=False)
        self.save_button.clicked.connect(self.save_dialog)
        self.status = QLabel(objectName="PlotStatus", wordWrap=True)
        buttons = QHBoxLayout()
        buttons.addWidget(self.status, 1)
        buttons.addWidget(self.queue_button)
        buttons.addWidget(self.save_button)
        self.picture = QLabel(objectName="PlotGrid", alignment=Qt.AlignmentFlag.AlignCenter)
        self.picture.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Ignored)
        scroll = QScrollArea(objectName="PlotGridScroll", widgetResizable=True)
        scroll.setWidget(self.picture)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addLayout(buttons)
        lay.addWidget(scroll, 1)
        self.resize(720, 560)
        self.axes: list[xyz.Axis] = []
        self.cells: list[xyz.Cell] = []
        self.runs: dict[str, xyz.Cell] = {}  # run id -> its cell
        self.images: dict[tuple[int, int, int], np.ndarray] = {}
        self.made: dict[tuple[int, int, int], dict[str, Any]] = {}
        self.failed: set[tuple[int, int, int]] = set()
        self.grid_image: np.ndarray | None = None
        controller.runFinished.connect(self._run_finished)

    # -- the plot -------------------------------------------------------------------------------------
    def set_axes(self, specs: list[str]) -> None:
        """Fill the rows from `FIELD=VALUES` texts (as `--xyz` takes them)."""
        for i, spec in enumerate(specs[:3] + [""] * (3 - len(specs[:3]))):
            key, _, values = spec.partition("=")
            self.fields[i].setCurrentText(key.strip())
            self.values[i].setText(values.strip())

    def read_axes(self) -> list[xyz.Axis]:
        axes = []
        for box, edit in zip(self.fields, self.values):
            key, text = box.currentText().strip(), edit.text().strip()
            if key or text:
                axes.append(xyz.parse_axis(f"{key}={text}"))
        return axes

    def queue_cells(self) -> list[str]:
        """Expand the plot over the Prompt panel's recipe and queue every cell; [] with a message when
        the axes or a cell's settings are wrong (nothing is queued then)."""
        try:
            axes = self.read_axes()
            base = self.controller.session.build_requests()[0]
            cells = xyz.expand(base, axes)
        except StudioError as exc:
            self._say(str(exc), error=True)
            return []
        self.axes, self.cells = axes, cells
        self.images, self.made, self.failed, self.runs = {}, {}, set(), {}
        ids = []
        for cell in cells:
            run_id = self.controller.queue_request(cell.request)
            self.runs[run_id] = cell
            ids.append(run_id)
        self._redraw()
        return ids

    def _run_finished(self, run_id: str, status: str) -> None:
        cell = self.runs.get(run_id)
        if cell is None:
            return
        rec = self.controller.history.get(run_id)
        if status == "done" and rec is not None and rec.images:
            self.images[cell.index] = rec.images[0]
            self.made[cell.index] = {"run_id": run_id, "gallery_ids": list(rec.gallery_ids), "seed": cell.request.seed}
        else:
            self.failed.add(cell.index)
        self._redraw()

    def _redraw(self) -> None:
        if not self.cells:
            return
        self.grid_image = grid.draw(self.axes, self.images, grid.cell_size(self.cells))
        pix = QPixmap.fromImage(to_qimage(self.grid_image))
        self.picture.setPixmap(pix)
        self.picture.setMinimumSize(pix.size())
        done, total = len(self.images), len(self.cells)
        text = f"{done} of {total} cells made"
        if self.failed:
            text += f"; {len(self.failed)} failed or cancelled (see the queue)"
        self._say(text)
        self.save_button.setEnabled(done > 0)

    @property
    def complete(self) -> bool:
        return bool(self.cells) and len(self.images) + len(self.failed) == len(self.cells)

    def save(self, path: str | Path) -> Path:
        """The grid as it stands, with its provenance listing the cells (and which gallery images they are)."""
        if self.grid_image is None:
            raise StudioError("There is no plot to save yet.")
        return grid.write(
            path, self.grid_image, self.axes, self.cells, grid.provenance(self.axes, self.cells, self.made)
        )

    def save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the plot", "plot.png", "PNG images (*.png)")
        if path:
            try:
                self._say(f"Saved {self.save(Path(path).with_suffix('.png'))}")
            except (StudioError, OSError) as exc:
                self._say(f"The grid could not be saved: {exc}", error=True)

    def _say(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setProperty("error", error)
        self.status.setStyleSheet("color: #e06c75;" if error else "")
