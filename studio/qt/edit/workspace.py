"""The Edit tab: the mask canvas with its toolbar, the autosaved canvas session, and a result bar
("Use result as input" / "Discard") shown after an img2img or inpaint run finishes (the mask
overlay is hidden meanwhile, so the repainted part can be judged; the Overlay button shows it).

The window puts this beside the Generate view; the Prompt panel's Image input section reads it to
fill a request's `init_image` / `mask` (once the canvas was grown: the picture before it grew, the
mask painted on it, and `outpaint` with the amounts and fill, so the engine outpaints and the recipe
says so); the run controller sends it the (already composited, full-canvas) previews and the result
of runs that started from it. `load_request` puts a recipe's input back (the gallery's Recreate)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image
from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from studio.core import paths
from studio.core.request import GenerationRequest, ImageRef
from studio.engine import inpaint as geo  # numpy/PIL geometry only (no torch): the engine's own grow/feather
from studio.qt.edit.mask_canvas import CanvasSession, MaskCanvas, MaskToolBar

PREVIEW_MAX = 1024  # px: previews are composited at most this large (the screen shows no more)


def snap8(v: int) -> int:
    return max(8, int(round(v / 8)) * 8)


class EditWorkspace(QWidget):
    """Mask canvas + toolbar + result bar. `has_image()` is True once an image arrived (file, paste,
    drop, "use as input", a restored session); `serial` changes whenever the canvas image does, so a
    run's previews are only drawn over the picture they were made from."""

    inputChanged = Signal()  # an image arrived or the mask changed: what a Generate would run changed

    def __init__(self, parent: QWidget | None = None, session_folder: str | Path | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("EditWorkspace")
        self.canvas = MaskCanvas()
        self.canvas.setObjectName("MaskCanvas")
        self.toolbar = MaskToolBar(self.canvas)
        self.session = CanvasSession(self.canvas, session_folder)
        self._has_image = False
        self.serial = 0
        self.previews_shown = 0
        self.last_preview: np.ndarray | None = None  # the last step preview drawn over the canvas
        self.result: np.ndarray | None = None  # the last finished result shown over the input
        self.result_serial = -1
        self._overlay_before: bool | None = None  # the overlay's state before a result hid it
        self._runs: dict[str, tuple[np.ndarray, np.ndarray | None]] = {}  # run id -> (input, blend mask) at work size

        self.result_bar = QWidget(objectName="ResultBar")
        bar = QHBoxLayout(self.result_bar)
        bar.setContentsMargins(10, 4, 10, 4)
        self.result_label = QLabel("")
        self.use_result_button = QPushButton("Use result as input", objectName="UseResult")
        self.use_result_button.setToolTip("Put the result on the canvas (undoable with Ctrl+Z) to keep editing it.")
        self.discard_button = QPushButton("Discard", objectName="DiscardResult")
        self.discard_button.setToolTip("Hide the result and show the input again.")
        self.use_result_button.clicked.connect(self.use_result)
        self.discard_button.clicked.connect(self.discard_result)
        bar.addWidget(self.result_label, 1)
        bar.addWidget(self.use_result_button)
        bar.addWidget(self.discard_button)
        self.result_bar.hide()

        self.empty_hint = QLabel(
            "Open an image (toolbar “Open…”), paste it (Ctrl+V), drop it here, or use a result as input; "
            "then paint over what should change.",
            objectName="EditHint",
        )
        self.empty_hint.setWordWrap(True)
        self.empty_hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty_hint.setContentsMargins(10, 6, 10, 6)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.toolbar)
        lay.addWidget(self.empty_hint)
        lay.addWidget(self.canvas, 1)
        lay.addWidget(self.result_bar)
        self.canvas.imageChanged.connect(self._image_changed)
        self.canvas.maskChanged.connect(self.inputChanged)

    # -- state ------------------------------------------------------------------------------------------
    def has_image(self) -> bool:
        return self._has_image

    def has_mask(self) -> bool:
        return bool(self.canvas._session_state()[1].any())  # the live mask: no copy per check

    def image_size(self) -> tuple[int, int]:
        return self.canvas.image_size()

    def _image_changed(self) -> None:
        self._has_image = True
        self.serial += 1
        self.empty_hint.hide()
        self._hide_result()
        self.inputChanged.emit()

    def restore_session(self) -> bool:
        """After a crash: bring the autosaved canvas back. True when something was restored."""
        if not self.session.crashed():
            return False
        return self.session.restore()

    # -- inputs -----------------------------------------------------------------------------------------
    def set_input(self, array: np.ndarray) -> bool:
        return self.canvas.set_image(array)

    def load_input(self, path: str | Path) -> bool:
        return self.canvas.load_image(path)

    def grown(self) -> bool:
        """The canvas was expanded (Expand tool, Outpaint…) since its image was set: Generate outpaints."""
        return any(self.canvas.expansion())

    def export_refs(
        self, folder: str | Path | None = None, *, original: bool = False
    ) -> tuple[ImageRef, ImageRef | None]:
        """The canvas (or, with `original`, the picture before it was grown, and the mask painted on
        it) as PNG files for a request's `init_image` / `mask`."""
        return self.canvas.export_refs(folder or paths.data_dir() / "inputs", original=original)

    def load_request(self, request: GenerationRequest) -> bool:
        """Put a recipe's input back on the canvas (Recreate): its image, its mask, and for an
        outpaint the same growth and fill, so Generate sends the same request again. False (and the
        canvas's `problem` said why) when its files cannot be read."""
        if request.init_image is None or not self.canvas.load_image(request.init_image.path):
            return False
        if request.mask is not None and not self.canvas.load_mask(request.mask.path):
            return False
        if request.outpaint is not None:
            self.toolbar.fill_buttons[request.outpaint_fill].setChecked(True)  # the Outpaint… menu shows it
            self.canvas.set_outpaint_fill(request.outpaint_fill)
            self.canvas.expand(*request.outpaint)
        return True

    # -- runs -------------------------------------------------------------------------------------------
    def begin_run(self, run_id: str, request: GenerationRequest) -> None:
        """Remember the input and the grown + feathered mask of a run just queued from this canvas, at
        a working size (≤ PREVIEW_MAX px), so its small previews can be shown sharp outside the mask."""
        img, mask, _, _ = self.canvas._session_state()
        if request.outpaint is not None:  # what the engine grows and fills: the original, its mask, the seed's fill
            x0, y0, x1, y1 = self.canvas.original_box()
            painted = mask[y0:y1, x0:x1] if request.mask is not None else None
            img, mask, _ = geo.outpaint_with_mask(
                img[y0:y1, x0:x1],
                request.outpaint,
                request.outpaint_fill,
                request.seed,
                geo.outpaint_band(request.mask_blur),
                painted,
            )
        h, w = mask.shape
        k = min(1.0, PREVIEW_MAX / max(w, h))
        size = (max(1, round(w * k)), max(1, round(h * k)))
        base = geo.resize(img, size) if k < 1 else img.copy()
        blend = None
        if request.mask is not None or request.outpaint is not None:
            blend = geo.feather(geo.grow(mask, request.mask_grow), request.mask_blur)
            if k < 1:
                blend = geo.resize(blend, size)
        self._runs[run_id] = (base, blend)
        while len(self._runs) > 8:  # scrubbing old runs falls back to the plain preview
            self._runs.pop(next(iter(self._runs)))

    def end_run(self, run_id: str) -> None:
        self._runs.pop(run_id, None)

    def compose(self, run_id: str | None, image: np.ndarray) -> np.ndarray:
        """A (small, already composited) preview scaled smoothly to the canvas, and for an inpaint
        composited again over the sharp input, so the untouched part never looks blocky."""
        base, blend = self._runs.get(run_id, (None, None)) if run_id else (None, None)
        if base is None or image.ndim != 3:
            return image
        h, w = base.shape[:2]
        up = (
            image
            if image.shape[:2] == (h, w)
            else np.asarray(Image.fromarray(image).resize((w, h), Image.Resampling.BILINEAR))
        )
        return up if blend is None else geo.composite(base, up, blend)

    def show_step(self, image: np.ndarray | None, serial: int, run_id: str | None = None) -> bool:
        """A preview of a run made from canvas state `serial`; ignored if the canvas image changed since."""
        if serial != self.serial or image is None:
            return False
        self.last_preview = self.compose(run_id, image)
        self.canvas.show_preview(self.last_preview)
        self.previews_shown += 1
        return True

    def show_result(self, image: np.ndarray, serial: int, caption: str) -> bool:
        if serial != self.serial:
            return False
        self.canvas.show_preview(image)
        self.result, self.result_serial = image, serial
        self.result_label.setText(caption)
        self.result_bar.show()
        if self._overlay_before is None:  # show the result clearly: the mask overlay would tint the new part
            self._overlay_before = self.canvas.overlay_visible()
            self.canvas.set_overlay_visible(False)
        return True

    def use_result(self) -> bool:
        if self.result is None:
            return False
        image = self.result
        self._hide_result()
        return self.canvas.set_image(image, keep_mask=True)  # same mask: re-roll the same area, or Clear it

    def discard_result(self) -> None:
        self._hide_result()
        self.canvas.clear_preview()

    def _hide_result(self) -> None:
        self.result = None
        self.result_bar.hide()
        if self._overlay_before is not None:  # the mask shows again (unless the user chose otherwise meanwhile)
            if not self.canvas.overlay_visible():
                self.canvas.set_overlay_visible(self._overlay_before)
            self._overlay_before = None
