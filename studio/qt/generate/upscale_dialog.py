"""The Upscale dialog: an image (a gallery item, or the finished image on the canvas) through an
upscaler model. It builds the recipe (`studio.core.upscalers.upscale_request`); the window queues it
like any run, so it shows progress per tile, can be cancelled, and joins the gallery as an "upscale"
of its source."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import (
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from studio.core import upscalers
from studio.core.errors import StudioError
from studio.core.request import GenerationRequest


def find_upscalers() -> list[tuple[str, upscalers.UpscalerInfo]]:
    """Usable upscalers in the models library and the extra folders (headers only), by name."""
    from studio.core.library import scan_all

    entries, _problems = scan_all()
    found = []
    for e in entries:
        if e.kind == "upscaler" and e.usable:
            try:
                found.append((e.path, upscalers.read(e.path)))
            except StudioError:
                continue
    return sorted(found, key=lambda pair: Path(pair[0]).name.lower())


class UpscaleDialog(QDialog):
    """Pick the upscaler, the factor and the tile size for `source`; `request()` is the recipe."""

    size: tuple[int, int]  # type: ignore[assignment]  # the source's (width, height), in place of QWidget.size()

    def __init__(
        self,
        source: str | Path,
        size: tuple[int, int],
        models: list[tuple[str, upscalers.UpscalerInfo]] | None = None,
        *,
        chosen: GenerationRequest | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Upscale")
        self.setObjectName("UpscaleDialog")
        self.source, self.size = Path(source), size
        self.model = QComboBox(objectName="UpscalerModel")
        self.model.setMinimumContentsLength(24)
        self.model.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        for path, info in models if models is not None else find_upscalers():
            self._add_model(path, info)
        browse = QPushButton("Browse…")
        browse.clicked.connect(self._browse)
        row = QHBoxLayout()
        row.addWidget(self.model, 1)
        row.addWidget(browse)
        self.scale = QDoubleSpinBox(objectName="UpscaleFactor", decimals=2, minimum=0.25, maximum=16.0, singleStep=0.5)
        self.scale.setSuffix(" ×")
        self.tile = QSpinBox(objectName="UpscaleTile", minimum=0, maximum=4096, singleStep=64)
        self.tile.setSpecialValueText("whole image")
        self.tile.setValue(512)
        self.tile.setToolTip(
            "Input pixels per tile: large images are upscaled in overlapping tiles, cross-faded so no seam "
            "shows. Smaller tiles need less memory; 0 upscales the whole image at once."
        )
        self.out_label = QLabel(objectName="UpscaleOutput")
        self.problem = QLabel(objectName="UpscaleProblem", wordWrap=True)
        self.problem.hide()
        form = QFormLayout()
        form.addRow("Image", QLabel(f"{self.source.name} ({size[0]}×{size[1]})"))
        form.addRow("Upscaler", row)
        form.addRow("Factor", self.scale)
        form.addRow("Tile size", self.tile)
        form.addRow("Result", self.out_label)
        self.buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setText("Upscale")
        self.buttons.accepted.connect(self._accept)
        self.buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.problem)
        lay.addWidget(self.buttons)
        self.model.currentIndexChanged.connect(self._model_changed)
        self.scale.valueChanged.connect(self._update)
        self.tile.valueChanged.connect(self._update)
        self._request: GenerationRequest | None = None
        if chosen is not None and chosen.upscale is not None:  # Recreate: the same upscaler, factor, tiles
            self.choose_model(chosen.upscale.model)
            self.scale.setValue(chosen.upscale.scale)
            self.tile.setValue(chosen.upscale.tile)
        else:
            self._model_changed()
        self._update()

    def _add_model(self, path: str, info: upscalers.UpscalerInfo) -> None:
        self.model.addItem(f"{Path(path).stem}  ·  {info.label}", (str(path), info.scale))

    def choose_model(self, path: str | Path) -> bool:
        """Select `path` in the list (added when it is not there). False when it is not an upscaler."""
        path = str(Path(path).expanduser())
        for i in range(self.model.count()):
            if self.model.itemData(i)[0] == path:
                self.model.setCurrentIndex(i)
                return True
        try:
            info = upscalers.read(path)
        except StudioError as exc:
            self._say(str(exc))
            return False
        self._add_model(path, info)
        self.model.setCurrentIndex(self.model.count() - 1)
        return True

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose an upscaler", "", "Upscalers (*.safetensors)")
        if path:
            self.choose_model(path)

    def _model_changed(self) -> None:
        data = self.model.currentData()
        if data:
            self.scale.setValue(float(data[1]))
        self._update()

    def _update(self) -> None:
        w, h = (max(1, round(v * self.scale.value())) for v in self.size)
        self.out_label.setText(f"{w}×{h}")
        has_model = self.model.currentData() is not None
        self.buttons.button(QDialogButtonBox.StandardButton.Ok).setEnabled(has_model)
        if not has_model:
            self._say(
                "No upscaler found in the models library or the extra folders. Put a Real-ESRGAN or ESRGAN "
                ".safetensors there (Models ▸ Models…), or Browse… for one."
            )
        else:
            self.problem.hide()

    def _say(self, text: str) -> None:
        self.problem.setText(text)
        self.problem.show()

    def _accept(self) -> None:
        data = self.model.currentData()
        if data is None:
            return
        try:
            self._request = upscalers.upscale_request(self.source, data[0], self.scale.value(), self.tile.value())
        except StudioError as exc:
            self._say(str(exc))
            return
        self.accept()

    def request(self) -> GenerationRequest | None:
        """The upscale recipe once accepted (None before, or when cancelled)."""
        return self._request


class Upscaling:
    """The window's Upscale actions: from a file (a gallery item, Recreate of an upscale) or from the
    finished image on the canvas; the dialog opens window-modal and an accepted recipe is queued
    through the run controller (`queue_request`). `dialog` is the open one (tests drive it)."""

    def __init__(self, window: QWidget, controller, models=find_upscalers) -> None:
        self.window, self.controller, self.models = window, controller, models
        self.dialog: UpscaleDialog | None = None
        self.queued: list[str] = []  # run ids of the upscales queued from here

    def from_file(self, path: str | Path, chosen: GenerationRequest | None = None) -> UpscaleDialog | None:
        from PIL import Image

        try:
            with Image.open(path) as im:
                size = im.size
        except OSError as exc:
            self.controller.session.say(f"{Path(path).name} cannot be upscaled: {exc}", "", kind="warning")
            return None
        dlg = UpscaleDialog(path, size, self.models(), chosen=chosen, parent=self.window)
        dlg.accepted.connect(lambda: self._queue(dlg))
        self.dialog = dlg
        dlg.open()
        return dlg

    def from_canvas(self, array) -> UpscaleDialog | None:
        """The finished image on the canvas: its gallery file (so the upscale records its parent), or,
        for a result the gallery did not keep, a copy written to the data folder."""
        path = self._gallery_path(self.controller.strip.run_id)
        if path is None:
            from PIL import Image

            from studio.core.hashing import sha256_bytes
            from studio.core.paths import data_dir

            folder = data_dir() / "upscale-inputs"
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"{sha256_bytes(array.tobytes())[:16]}.png"
            Image.fromarray(array).save(path)
        return self.from_file(path)

    def _gallery_path(self, run_id: str | None) -> Path | None:
        rec = self.controller.history.get(run_id) if run_id else None
        gallery = self.controller.gallery
        if rec is None or not rec.gallery_ids or gallery is None:
            return None
        try:
            return Path(gallery.gallery.get(rec.gallery_ids[0]).path)
        except Exception:  # noqa: BLE001 — trashed or gone: fall back to a copy
            return None

    def _queue(self, dlg: UpscaleDialog) -> None:
        request = dlg.request()
        if request is not None:
            self.queued.append(self.controller.queue_request(request))
