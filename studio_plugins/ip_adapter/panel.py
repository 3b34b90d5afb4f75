"""The IP-Adapter panel (the plugin's `panel(host)`): image prompts. Units of (IP-Adapter file, CLIP
vision encoder, reference images each with a weight, the unit's weight, start…end); what it gives is the
recipe's `plugins["ip_adapter"]`, every image named by path and SHA-256. Built on `studio.plugin_ui`,
`studio.plugin_api` and `studio.core` only, as a third-party panel would be.

API: `IPAdapterPanel(plugin, host=None)`; `units() -> list[dict]` (complete, switched-on units only),
`set_units(list[dict])`, `request_fields()`, `load_request(request)`, `add_unit()`,
`add_image(path, unit=0)`, `add_image_array(array, unit=0)` (saved to `data_dir()/inputs/`); signal
`changed()`. It adds *Plugins ▸ Use Edit canvas as reference image*. The model and encoder boxes list
the IP-Adapters and image encoders the catalogue finds in the models library and extra folders the
first time they open (`find_models` is swappable for tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from superqt import QLabeledDoubleRangeSlider, QLabeledDoubleSlider

from studio.core.hashing import file_sha256, sha256_file
from studio.plugin_api import PanelHost
from studio.plugin_ui import to_qimage

THUMB = 64
IMAGE_FILTER = "Images (*.png *.jpg *.jpeg *.webp *.bmp)"
FROM_CANVAS = "Use Edit canvas as reference image"


def check_image(path: str | Path) -> None:
    """A readable image (its header parses), else ValueError saying so."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"The reference image {p} does not exist.")
    try:
        with Image.open(p) as im:
            im.size  # noqa: B018 — the header parses
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"{p.name} is not an image this studio can read ({exc.__class__.__name__}).") from None


def thumbnail(path: str | Path, side: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        im.thumbnail((side, side))
        return np.asarray(im).copy()


def save_input_array(array: np.ndarray) -> tuple[str, str]:
    """A picture from the window as a PNG under `data_dir()/inputs`, named by its hash: (path, sha256)."""
    import io

    from PIL import Image

    from studio.core.files import atomic_write
    from studio.core.hashing import sha256_bytes
    from studio.core.paths import data_dir, ensure

    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(np.asarray(array, np.uint8)[:, :, :3])).save(buf, "PNG", compress_level=4)
    data = buf.getvalue()
    sha = sha256_bytes(data)
    target = ensure(data_dir() / "inputs") / f"reference-{sha[:16]}.png"
    if not target.exists():
        atomic_write(target, data)
    return str(target), sha


def library_models() -> dict[str, list[str]]:
    """{"IP-Adapter": [paths], "image encoder": [paths]} in the models library and extra folders."""
    from studio.core.library import scan_all

    entries, _ = scan_all()
    out: dict[str, list[str]] = {"IP-Adapter": [], "image encoder": []}
    for e in entries:
        if e.kind in out and e.usable:
            out[e.kind].append(e.path)
    return out


class _ScanBox(QComboBox):
    """An editable path box that lists the library's files of one kind the first time it opens."""

    def __init__(self, panel: IPAdapterPanel, kind: str, name: str) -> None:
        super().__init__(objectName=name, editable=True)
        self.panel, self.kind, self.scanned = panel, kind, False
        self.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.setMinimumContentsLength(10)

    def showPopup(self) -> None:  # noqa: N802
        if not self.scanned:
            self.scanned = True
            current = self.currentText()
            for path in self.panel.find_models().get(self.kind, []):
                if self.findText(path) < 0:
                    self.addItem(path)
            self.setCurrentText(current)
        super().showPopup()


class ReferenceImage(QFrame):
    """One reference image: its thumbnail, name, weight and a remove button."""

    removeRequested = Signal(object)
    changed = Signal()

    def __init__(self, path: str, sha256: str, weight: float = 1.0) -> None:
        super().__init__(objectName="IPReference")
        self.path, self.sha256 = path, sha256
        lay = QHBoxLayout(self)
        lay.setContentsMargins(2, 2, 2, 2)
        self.thumb = QLabel(objectName="IPThumb")
        self.thumb.setFixedSize(THUMB, THUMB)
        try:
            pix = QPixmap.fromImage(to_qimage(thumbnail(path, THUMB * 2)))
            self.thumb.setPixmap(pix.scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio))
        except OSError as exc:
            self.thumb.setText("?")
            self.thumb.setToolTip(str(exc))
        lay.addWidget(self.thumb)
        name = QLabel(Path(path).name, wordWrap=True)
        name.setToolTip(f"{path}\nSHA-256 {sha256}")
        lay.addWidget(name, 1)
        self.weight = QDoubleSpinBox(minimum=0.0, maximum=2.0, singleStep=0.1, decimals=2, value=weight)
        self.weight.setToolTip("How much this image counts (scales its CLIP embedding; 0: a blank image).")
        self.weight.valueChanged.connect(self.changed)
        lay.addWidget(self.weight)
        remove = QToolButton(text="✕", toolTip="Remove this image.")
        remove.clicked.connect(lambda: self.removeRequested.emit(self))
        lay.addWidget(remove)


class IPUnit(QFrame):
    changed = Signal()
    removeRequested = Signal(object)

    def __init__(self, panel: IPAdapterPanel, index: int) -> None:
        super().__init__(objectName="IPUnit")
        self.setStyleSheet("QFrame#IPUnit { border: 1px solid #2c3039; border-radius: 8px; }")
        self.panel = panel
        lay = QVBoxLayout(self)
        head = QHBoxLayout()
        self.enabled = QCheckBox(f"Unit {index + 1}", checked=True)
        self.enabled.toggled.connect(self.changed)
        head.addWidget(self.enabled, 1)
        remove = QToolButton(text="Remove", toolTip="Remove this unit.")
        remove.clicked.connect(lambda: self.removeRequested.emit(self))
        head.addWidget(remove)
        lay.addLayout(head)
        form = QFormLayout()
        form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
        self.model = _ScanBox(panel, "IP-Adapter", "IPModel")
        self.model.setToolTip("The IP-Adapter .safetensors (ip-adapter_sd15, ip-adapter-plus_sd15, ip-adapter_sdxl …).")
        self.model.currentTextChanged.connect(self.changed)
        form.addRow("IP-Adapter", self._with_browse(self.model, self._browse_model, "Choose an IP-Adapter file."))
        self.encoder = _ScanBox(panel, "image encoder", "IPEncoder")
        self.encoder.setToolTip(
            "The CLIP vision encoder it needs: ViT-H/14 for SD 1.5 and *_vit-h adapters, ViT-bigG/14 for "
            "ip-adapter_sdxl — the image_encoder folder, or one .safetensors (ComfyUI's clip_vision)."
        )
        self.encoder.currentTextChanged.connect(self.changed)
        form.addRow(
            "Image encoder",
            self._with_browse(self.encoder, self._browse_encoder, "Choose the image encoder file or folder."),
        )
        self.images_box = QVBoxLayout()
        self.images_box.setSpacing(2)
        images = QWidget()
        images.setLayout(self.images_box)
        form.addRow("Images", images)
        add = QPushButton("Add images…", objectName="IPAddImages")
        add.clicked.connect(self._browse_images)
        form.addRow("", add)
        self.weight = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.weight.setRange(0.0, 2.0)
        self.weight.setSingleStep(0.05)
        self.weight.setValue(1.0)
        self.weight.setToolTip("How strongly the images steer the picture (0: not at all; 0.5–1 is typical).")
        self.weight.valueChanged.connect(self.changed)
        form.addRow("Weight", self.weight)
        self.range = QLabeledDoubleRangeSlider(Qt.Orientation.Horizontal)
        self.range.setRange(0.0, 1.0)
        self.range.setSingleStep(0.05)
        self.range.setValue((0.0, 1.0))
        self.range.setToolTip("The share of the steps it acts in (start…end), as a ControlNet unit's.")
        self.range.valueChanged.connect(self.changed)
        form.addRow("Start / end", self.range)
        lay.addLayout(form)
        self.problem = QLabel(objectName="IPProblem", wordWrap=True)
        self.problem.setStyleSheet("color: #e06c75;")
        self.problem.hide()
        lay.addWidget(self.problem)
        self.references: list[ReferenceImage] = []

    def _with_browse(self, box: QComboBox, slot, tip: str) -> QWidget:
        w = QWidget()
        row = QHBoxLayout(w)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(box, 1)
        b = QToolButton(text="…", toolTip=tip)
        b.clicked.connect(slot)
        row.addWidget(b)
        return w

    def _browse_model(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose an IP-Adapter", "", "IP-Adapters (*.safetensors)")
        if path:
            self.model.setCurrentText(path)

    def _browse_encoder(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose the image encoder", "", "Encoders (*.safetensors)")
        if not path:
            path = QFileDialog.getExistingDirectory(self, "…or its folder (config.json + weights)")
        if path:
            self.encoder.setCurrentText(path)

    def _browse_images(self) -> None:
        paths, _ = QFileDialog.getOpenFileNames(self, "Reference images", "", IMAGE_FILTER)
        for p in paths:
            self.add_image(p)

    def add_image(self, path: str, weight: float = 1.0, sha256: str = "") -> bool:
        try:
            check_image(path)
        except ValueError as exc:
            self.say(str(exc))
            return False
        ref = ReferenceImage(str(path), sha256 or sha256_file(path), weight)
        ref.removeRequested.connect(self._remove_image)
        ref.changed.connect(self.changed)
        self.references.append(ref)
        self.images_box.addWidget(ref)
        self.say("")
        self.changed.emit()
        return True

    def _remove_image(self, ref: ReferenceImage) -> None:
        self.references.remove(ref)
        ref.setParent(None)
        ref.deleteLater()
        self.changed.emit()

    def say(self, text: str) -> None:
        self.problem.setText(text)
        self.problem.setVisible(bool(text))

    def value(self) -> dict[str, Any] | None:
        """The unit as the recipe holds it, or None when it is off or not complete."""
        model, encoder = self.model.currentText().strip(), self.encoder.currentText().strip()
        if not self.enabled.isChecked() or not model or not encoder or not self.references:
            return None
        start, end = self.range.value()
        return {
            "model": str(Path(model).expanduser()),
            "model_sha256": file_sha256(model) if Path(model).is_file() else "",
            "encoder": str(Path(encoder).expanduser()),
            "images": [
                {"path": r.path, "sha256": r.sha256, "weight": round(r.weight.value(), 2)} for r in self.references
            ],
            "weight": round(float(self.weight.value()), 2),
            "start": round(float(start), 2),
            "end": round(float(end), 2),
        }

    def set_value(self, unit: dict[str, Any]) -> None:
        self.model.setCurrentText(str(unit.get("model", "")))
        self.encoder.setCurrentText(str(unit.get("encoder", "")))
        for ref in list(self.references):
            self._remove_image(ref)
        for image in unit.get("images", []):
            if not self.add_image(
                str(image.get("path", "")), float(image.get("weight", 1.0)), str(image.get("sha256", ""))
            ):
                break
        self.weight.setValue(float(unit.get("weight", 1.0)))
        self.range.setValue((float(unit.get("start", 0.0)), float(unit.get("end", 1.0))))


class IPAdapterPanel(QWidget):
    changed = Signal()

    def __init__(self, plugin: Any = None, host: PanelHost | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("IPAdapterPanel")
        self.plugin, self.host = plugin, host
        if host is not None:
            host.add_action(FROM_CANVAS, self.reference_from_canvas, tip="Add the Edit canvas's picture to unit 1.")
        self.find_models = library_models
        self.unit_widgets: list[IPUnit] = []
        outer = QVBoxLayout(self)
        note = QLabel(
            "Image prompts: reference images steer the picture (IP-Adapter). Each unit needs the adapter, "
            "its CLIP image encoder and one or more images.",
            wordWrap=True,
        )
        outer.addWidget(note)
        inner = QWidget()
        self.units_box = QVBoxLayout(inner)
        self.units_box.addStretch(1)
        scroll = QScrollArea(widgetResizable=True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setWidget(inner)
        outer.addWidget(scroll, 1)
        add = QPushButton("Add unit", objectName="IPAddUnit")
        add.clicked.connect(self.add_unit)
        outer.addWidget(add)
        self.add_unit()

    def add_unit(self) -> IPUnit:
        unit = IPUnit(self, len(self.unit_widgets))
        unit.changed.connect(self.changed)
        unit.removeRequested.connect(self._remove_unit)
        self.unit_widgets.append(unit)
        self.units_box.insertWidget(self.units_box.count() - 1, unit)
        return unit

    def _remove_unit(self, unit: IPUnit) -> None:
        self.unit_widgets.remove(unit)
        unit.setParent(None)
        unit.deleteLater()
        if not self.unit_widgets:
            self.add_unit()
        self.changed.emit()

    def _unit(self, index: int) -> IPUnit:
        while len(self.unit_widgets) <= index:
            self.add_unit()
        return self.unit_widgets[index]

    def add_image(self, path: str, unit: int = 0) -> bool:
        return self._unit(unit).add_image(path)

    def add_image_array(self, array: np.ndarray, unit: int = 0) -> bool:
        """A picture from the window (the Edit canvas, a result), saved under data_dir()/inputs/."""
        path, sha = save_input_array(array)
        return self._unit(unit).add_image(path, sha256=sha)

    def reference_from_canvas(self) -> None:
        """Plugins ▸ Use Edit canvas as reference image."""
        image = self.host.edit_canvas_image() if self.host is not None else None
        if image is None:
            if self.host is not None:
                self.host.show_message("The Edit canvas is empty.", "Open or paste an image there first.")
            return
        self.add_image_array(image, 0)
        if self.host is not None:
            self.host.raise_panel(self)

    def request_fields(self) -> dict[str, Any]:
        units = self.units()
        return {"plugins": {"ip_adapter": {"units": units}}} if units else {}

    def load_request(self, request: Any) -> None:
        self.set_units(list((request.plugins or {}).get("ip_adapter", {}).get("units", [])))

    def units(self) -> list[dict[str, Any]]:
        return [v for u in self.unit_widgets if (v := u.value()) is not None]

    def set_units(self, units: list[dict[str, Any]]) -> None:
        """Recreate: the recipe's units (none: one empty unit)."""
        for u in list(self.unit_widgets):
            self.unit_widgets.remove(u)
            u.setParent(None)
            u.deleteLater()
        for value in units:
            self.add_unit().set_value(value)
        if not self.unit_widgets:
            self.add_unit()
        self.changed.emit()
