"""The ControlNet panel: units of (model, control image, preprocessor, weight, start…end), each with
a live preview of its control map computed off the GUI thread, plus guess mode.

API: `ControlNetPanel(plugin, settings=None)`; `units() -> tuple[ControlNetRef, ...]` (complete,
switched-on units only), `guess_mode() -> bool`, `set_image_from_array(array, unit=0)`,
`set_image_from_path(path, unit=0)`, `add_unit()`, `busy()`, `wait_idle(ms)`, `shutdown()`;
signal `changed()`. Images fed as arrays are saved to `data_dir()/inputs/control-<sha>.png`.
Recent ControlNet models are remembered under `controlnet/recent_models` in the QSettings given,
or `config_dir()/plugins.ini`."""

from __future__ import annotations

import atexit
import os
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QSettings, Qt, QThread, QTimer, Signal, Slot
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPushButton,
    QScrollArea,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from superqt import QLabeledDoubleRangeSlider, QLabeledDoubleSlider

from studio.core import paths
from studio.core.hashing import sha256_file
from studio.core.request import ControlNetRef, ImageRef
from studio.plugin_ui import MessageBar, colour, plugin_settings, to_qimage

from .inputs import check_image, check_model, load_image, save_input_array

THUMB = 120
PREVIEW_MAX_SIDE = 384  # the preview map is made from a downscaled image: HED stays well under 2 s
DEBOUNCE_MS = 250
RECENT_KEY = "controlnet/recent_models"
MAX_RECENT = 10
DEFAULT_PREPROCESSOR = "canny"

_RUNNING: set[QThread] = set()  # preview threads stay referenced until they finish, whatever the panel does


class _Reaper(QObject):
    """Drops finished preview threads on the GUI thread (never from inside the thread itself)."""

    @Slot()
    def reap(self) -> None:
        for t in list(_RUNNING):
            if t.isFinished():
                t.wait()
                _RUNNING.discard(t)


_reaper: _Reaper | None = None


def _get_reaper() -> _Reaper:
    global _reaper
    if _reaper is None:
        _reaper = _Reaper()
    return _reaper


def wait_all_previews(ms: int = 10_000) -> None:
    """Block until every preview thread (of any panel, removed units included) has ended."""
    for t in list(_RUNNING):
        t.wait(ms)


atexit.register(wait_all_previews)  # a QThread destroyed while running aborts the process: let it end first


class PreviewThread(QThread):
    """Loads the control image (downscaled) and runs one preprocessor on it, off the GUI thread."""

    done = Signal(int, object, str)  # token, map (H, W, 3 uint8) or None, error message

    def __init__(self, plugin: Any, preprocessor: str, image_path: str, token: int) -> None:
        super().__init__()
        self.setObjectName(f"controlnet-preview-{preprocessor}")
        self.plugin, self.preprocessor, self.image_path, self.token = plugin, preprocessor, image_path, token

    def run(self) -> None:  # the worker thread
        try:
            image = load_image(self.image_path, PREVIEW_MAX_SIDE)
            out = np.asarray(self.plugin.preprocess(self.preprocessor, image))
            if out.ndim not in (2, 3) or out.size == 0:
                raise ValueError(f"the {self.preprocessor} preprocessor returned an array of shape {out.shape}")
            self.done.emit(self.token, out, "")
        except ValueError as exc:
            self.done.emit(self.token, None, str(exc))
        except Exception as exc:  # noqa: BLE001 — PluginError says it as is; anything else: say what
            from studio.plugin_api import PluginError

            msg = str(exc) if isinstance(exc, PluginError) else f"{exc.__class__.__name__}: {exc}"
            self.done.emit(self.token, None, f"The {self.preprocessor} preprocessor failed: {msg}")


def _thumb(label: QLabel, array: np.ndarray | None, empty: str) -> None:
    if array is None:
        label.setPixmap(QPixmap())
        label.setText(empty)
        return
    pm = QPixmap.fromImage(to_qimage(array)).scaled(
        THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio, Qt.TransformationMode.SmoothTransformation
    )
    label.setText("")
    label.setPixmap(pm)


class ControlUnit(QFrame):
    changed = Signal()
    removeRequested = Signal(object)

    def __init__(self, panel: ControlNetPanel, index: int) -> None:
        super().__init__()
        self.setObjectName("ControlUnit")
        self.setProperty("card", True)  # framed like the studio's cards (its style sheet)
        self.panel = panel
        self.plugin = panel.plugin
        self.image_ref: ImageRef | None = None
        self.preview_array: np.ndarray | None = None
        self._token = 0
        self._thread: PreviewThread | None = None
        self._pending = False
        self._model_error = ""
        self._preview_error = ""
        self._debounce = QTimer(self, singleShot=True, interval=DEBOUNCE_MS)
        self._debounce.timeout.connect(self._start_preview)

        self.enabled = QCheckBox(f"Unit {index + 1}", objectName="ControlEnabled")
        self.enabled.setChecked(True)
        self.enabled.setStyleSheet("font-weight: 600;")
        self.enabled.setToolTip("Use this unit in the next run.")
        self.enabled.toggled.connect(self._changed)
        rm = QToolButton(text="✕", objectName="ControlRemove", toolTip="Remove this unit.")
        rm.clicked.connect(lambda: self.removeRequested.emit(self))
        self.remove_button = rm

        self.model = QComboBox(objectName="ControlModel")
        self.model.setEditable(True)
        self.model.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        editor = self.model.lineEdit()
        assert editor is not None  # an editable combo box has one
        editor.setPlaceholderText("ControlNet model (folder or .safetensors)")
        self.model.addItems(panel.recent_models())
        self.model.setCurrentIndex(-1)
        self.model.setEditText("")
        self.model.setMinimumContentsLength(8)  # the unit fits the narrow Prompt column (1366 px screens)
        self.model.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model.currentTextChanged.connect(self._model_changed)
        browse = QToolButton(text="…", objectName="ControlModelBrowse", toolTip="Pick a ControlNet file or folder.")
        menu = QMenu(browse)
        menu.addAction("ControlNet file (.safetensors)…", self._pick_model_file)
        menu.addAction("ControlNet folder (diffusers)…", self._pick_model_folder)
        browse.setMenu(menu)
        browse.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        browse.setStyleSheet("QToolButton::menu-indicator { image: none; width: 0; }")

        self.preprocessor = QComboBox(objectName="ControlPreprocessor")
        self.preprocessor.addItems(panel.preprocessor_names)
        if DEFAULT_PREPROCESSOR in panel.preprocessor_names:
            self.preprocessor.setCurrentText(DEFAULT_PREPROCESSOR)
        self.preprocessor.setToolTip("How the control image becomes a control map (none: use it as is).")
        self.preprocessor.currentTextChanged.connect(self._input_changed)

        self.weight = QLabeledDoubleSlider(Qt.Orientation.Horizontal, objectName="ControlWeight")
        self.weight.setRange(0.0, 2.0)
        self.weight.setSingleStep(0.05)
        self.weight.setDecimals(2)
        self.weight.setValue(1.0)
        self.weight.setToolTip("How strongly this unit steers the image (0…2).")
        self.weight.valueChanged.connect(self._changed)
        self.span = QLabeledDoubleRangeSlider(Qt.Orientation.Horizontal, objectName="ControlSpan")
        self.span.setRange(0.0, 1.0)
        self.span.setSingleStep(0.01)
        self.span.setDecimals(2)
        self.span.setValue((0.0, 1.0))
        self.span.setHandleLabelPosition(QLabeledDoubleRangeSlider.LabelPosition.NoLabel)
        self.span.setEdgeLabelMode(QLabeledDoubleRangeSlider.EdgeLabelMode.LabelIsValue)
        self.span.setStyleSheet(f"QRangeSlider {{ qproperty-barColor: {colour('accent')}; }}")  # accent between handles
        self.span.setToolTip("The fraction of the steps this unit acts in (start…end).")
        self.span.valueChanged.connect(self._changed)

        self.source = QLabel("no image", objectName="ControlThumb", alignment=Qt.AlignmentFlag.AlignCenter)
        self.source.setProperty("thumb", True)
        self.source.setFixedSize(THUMB + 4, THUMB + 4)
        self.source.setToolTip("The control image.")
        self.preview = QLabel("no map", objectName="ControlThumb", alignment=Qt.AlignmentFlag.AlignCenter)
        self.preview.setProperty("thumb", True)
        self.preview.setFixedSize(THUMB + 4, THUMB + 4)
        self.preview.setToolTip("The control map the preprocessor makes (a preview, from a downscaled image).")
        pick_image = QPushButton("Image…", objectName="ControlImageFile", toolTip="Pick a control image file.")
        pick_image.clicked.connect(self._pick_image)
        self.status = QLabel("", objectName="ControlStatus")
        self.status.setProperty("role", "status")  # dim, a little smaller (the studio's style sheet)
        self.message = MessageBar(self)

        head = QHBoxLayout()
        head.addWidget(self.enabled, 1)
        head.addWidget(rm)
        model_row = QHBoxLayout()
        model_row.setSpacing(4)
        model_row.addWidget(self.model, 1)
        model_row.addWidget(browse)
        thumbs = QHBoxLayout()
        thumbs.addWidget(self.source)
        arrow = QLabel("→")
        arrow.setProperty("role", "symbol")
        arrow.setAccessibleName("makes")  # image → map
        thumbs.addWidget(arrow)
        thumbs.addWidget(self.preview)
        thumbs.addStretch(1)
        image_row = QHBoxLayout()
        image_row.addWidget(pick_image)
        image_row.addWidget(self.status, 1)
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        form.setHorizontalSpacing(10)
        form.setVerticalSpacing(6)
        form.addRow("Model", model_row)
        form.addRow("Preprocessor", self.preprocessor)
        form.addRow("Weight", self.weight)
        form.addRow("Start…end", self.span)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(10, 8, 10, 10)
        lay.setSpacing(6)
        lay.addLayout(head)
        lay.addWidget(self.message)
        lay.addLayout(thumbs)
        lay.addLayout(image_row)
        lay.addLayout(form)

    # -- inputs -----------------------------------------------------------------------------------
    def _changed(self, *_: Any) -> None:
        self.changed.emit()

    def _model_changed(self, text: str) -> None:
        text = text.strip()
        err = check_model(text) if text else ""
        if err:
            self.message.show_message(err, "Pick a ControlNet folder or .safetensors file.")
        elif self._model_error and self.message.message == self._model_error:
            self.message.dismiss()
        self._model_error = err
        if text and not err:
            self.panel.remember_model(text)
        self.changed.emit()

    def set_model(self, path: str | os.PathLike[str]) -> None:
        self.model.setEditText(str(path))
        self._model_changed(str(path))

    def _pick_model_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "ControlNet model", "", "ControlNet (*.safetensors)")
        if path:
            self.set_model(path)

    def _pick_model_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "ControlNet model folder")
        if path:
            self.set_model(path)

    def _pick_image(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Control image", "", "Images (*.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff)"
        )
        if path:
            self.set_image_from_path(path)

    def set_image_from_path(self, path: str | os.PathLike[str]) -> bool:
        """Use an image file; a missing or unreadable file shows a message in the unit (returns False)."""
        p = Path(path).expanduser()
        try:
            check_image(p)
        except ValueError as exc:
            self._image_error(str(exc))
            return False
        self.image_ref = ImageRef(path=str(p.resolve()), sha256="")
        self._image_set()
        return True

    def set_image_from_array(self, array: np.ndarray) -> bool:
        """Use pixels (the canvas, a gallery image): saved once under data_dir()/inputs by content hash."""
        try:
            self.image_ref = save_input_array(array)
        except (ValueError, OSError) as exc:
            self._image_error(f"The image cannot be used: {exc}")
            return False
        self._image_set()
        return True

    def _image_error(self, text: str) -> None:
        self.image_ref = None
        self.preview_array = None
        self._token += 1  # a preview still running is for the old image: drop it
        _thumb(self.source, None, "no image")
        _thumb(self.preview, None, "no map")
        self.status.setText("")
        self.message.show_message(text, "Pick a PNG, JPEG or WebP image.")
        self.changed.emit()

    def _image_set(self) -> None:
        assert self.image_ref is not None
        self.message.dismiss()
        try:
            small = load_image(self.image_ref.path, THUMB * 2)
        except ValueError as exc:
            self._image_error(str(exc))
            return
        _thumb(self.source, small, "no image")
        self.source.setToolTip(self.image_ref.path)
        self._input_changed()

    def _input_changed(self, *_: Any) -> None:
        self.changed.emit()
        if self.image_ref is None:
            return
        self._token += 1
        self.status.setText("preview…")
        self._debounce.start()

    # -- preview (off the GUI thread) -------------------------------------------------------------
    def _start_preview(self) -> None:
        if self.image_ref is None:
            return
        if self._thread is not None:  # one at a time per unit: run again when this one ends
            self._pending = True
            return
        self._pending = False
        t = PreviewThread(self.plugin, self.preprocessor.currentText(), self.image_ref.path, self._token)
        t.done.connect(self._preview_done)
        t.finished.connect(self._thread_finished)
        t.finished.connect(_get_reaper().reap)
        _RUNNING.add(t)
        self._thread = t
        t.start()

    @Slot(int, object, str)
    def _preview_done(self, token: int, array: object, error: str) -> None:
        if token != self._token:
            return  # stale: the image or preprocessor changed since
        if error:
            self.preview_array = None
            _thumb(self.preview, None, "no map")
            self.status.setText("")
            self.message.show_message(error, "Try another preprocessor or image.")
            self._preview_error = error
            return
        self.preview_array = np.asarray(array)
        _thumb(self.preview, self.preview_array, "no map")
        self.status.setText(f"{self.preprocessor.currentText()} map ready")
        if self._preview_error and self.message.message == self._preview_error:
            self.message.dismiss()
        self._preview_error = ""

    @Slot()
    def _thread_finished(self) -> None:
        self._thread = None
        if self._pending:
            self._start_preview()

    def has_preview(self) -> bool:
        pm = self.preview.pixmap()
        return pm is not None and not pm.isNull()

    def busy(self) -> bool:
        return self._thread is not None or self._debounce.isActive() or self._pending

    def wait(self, ms: int = 10_000) -> None:
        self._debounce.stop()
        self._pending = False
        if self._thread is not None:
            self._thread.wait(ms)

    # -- the recipe -------------------------------------------------------------------------------
    def ref(self) -> ControlNetRef | None:
        model = self.model.currentText().strip()
        if not self.enabled.isChecked() or not model or self.image_ref is None:
            return None
        img = self.image_ref
        if not img.sha256:
            try:
                img = self.image_ref = ImageRef(path=img.path, sha256=sha256_file(img.path))
            except Exception:  # noqa: BLE001 — vanished since it was picked
                self._image_error(f"The control image {Path(img.path).name} is gone.")
                return None
        start, end = (round(float(v), 2) for v in self.span.value())
        return ControlNetRef(
            model=model,
            image=img,
            preprocessor=self.preprocessor.currentText(),
            weight=round(float(self.weight.value()), 2),
            start=start,
            end=end,
        )


class ControlNetPanel(QWidget):
    changed = Signal()

    def __init__(self, plugin: Any, settings: QSettings | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ControlNetPanel")
        self.plugin = plugin
        self.settings = plugin_settings(settings)
        self.message = MessageBar(self)
        try:
            self.preprocessor_names = list(plugin.preprocessors())
        except Exception as exc:  # noqa: BLE001
            self.preprocessor_names = ["none"]
            self.message.show_message("The preprocessors could not be listed.", f"{exc.__class__.__name__}: {exc}")
        self.unit_widgets: list[ControlUnit] = []

        self.guess = QCheckBox("Guess mode", objectName="ControlGuessMode")
        self.guess.setToolTip(
            "Let the ControlNet recognise the content without the prompt's help (prompt may be empty)."
        )
        self.guess.toggled.connect(lambda _on: self.changed.emit())
        self.add_button = QPushButton("+ Add unit", objectName="ControlAddUnit")
        self.add_button.setToolTip("Add another ControlNet unit; several units act together.")
        self.add_button.clicked.connect(lambda: self.add_unit())
        self.box = QWidget(objectName="ControlUnits")
        self.box_lay = QVBoxLayout(self.box)
        self.box_lay.setContentsMargins(0, 0, 0, 0)
        self.box_lay.setSpacing(8)
        self.box_lay.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(self.box)
        self.scroll_area = scroll
        top = QHBoxLayout()
        top.addWidget(QLabel("CONTROLNET", objectName="Section"), 1)
        top.addWidget(self.guess)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 8, 8, 8)
        lay.setSpacing(6)
        lay.addLayout(top)
        lay.addWidget(self.message)
        lay.addWidget(scroll, 1)
        lay.addWidget(self.add_button)
        self.add_unit()

    # -- recents ----------------------------------------------------------------------------------
    def recent_models(self) -> list[str]:
        """The models used lately, then the demo model's bundled Canny ControlNet (if shipped)."""
        v: Any = self.settings.value(RECENT_KEY, [])
        if isinstance(v, str):
            v = [v] if v else []
        recent = [str(x) for x in (v or [])]
        bundled = str(paths.demo_controlnet())
        if paths.demo_controlnet().is_dir() and bundled not in recent:
            recent.append(bundled)
        return recent

    def remember_model(self, path: str) -> None:
        recent = [path, *(p for p in self.recent_models() if p != path)][:MAX_RECENT]
        self.settings.setValue(RECENT_KEY, recent)
        self.settings.sync()

    # -- units ------------------------------------------------------------------------------------
    def add_unit(self) -> ControlUnit:
        unit = ControlUnit(self, len(self.unit_widgets))
        unit.changed.connect(self.changed)
        unit.removeRequested.connect(self.remove_unit)
        self.unit_widgets.append(unit)
        self.box_lay.insertWidget(self.box_lay.count() - 1, unit)
        self._renumber()
        self.changed.emit()
        return unit

    def remove_unit(self, unit: ControlUnit) -> None:
        unit._token += 1  # a preview still running for it is dropped; its thread ends on its own
        self.unit_widgets.remove(unit)
        unit.setParent(None)
        unit.deleteLater()
        if not self.unit_widgets:
            self.add_unit()
        self._renumber()
        self.changed.emit()

    def _renumber(self) -> None:
        for i, u in enumerate(self.unit_widgets):
            u.enabled.setText(f"Unit {i + 1}")
            u.remove_button.setEnabled(len(self.unit_widgets) > 1)

    def unit(self, index: int = 0) -> ControlUnit:
        while index >= len(self.unit_widgets):
            self.add_unit()
        return self.unit_widgets[index]

    def set_image_from_path(self, path: str | os.PathLike[str], unit: int = 0) -> bool:
        return self.unit(unit).set_image_from_path(path)

    def set_image_from_array(self, array: np.ndarray, unit: int = 0) -> bool:
        return self.unit(unit).set_image_from_array(array)

    def units(self) -> tuple[ControlNetRef, ...]:
        return tuple(r for r in (u.ref() for u in self.unit_widgets) if r is not None)

    def guess_mode(self) -> bool:
        return self.guess.isChecked()

    # -- the panel hooks (studio.plugin_api) --------------------------------------------------------
    def request_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {"controlnets": self.units()}
        if self.guess_mode():
            fields["plugins"] = {"controlnet": {"guess_mode": True}}
        return fields

    def load_request(self, request: Any) -> None:
        guess = bool(request.plugins.get("controlnet", {}).get("guess_mode", False))
        self.set_units(tuple(request.controlnets), guess_mode=guess)

    def set_units(self, refs: tuple[ControlNetRef, ...] | list[ControlNetRef], guess_mode: bool | None = None) -> None:
        """Show a recipe's units (e.g. a gallery image's request)."""
        for u in list(self.unit_widgets):
            u._token += 1
            self.unit_widgets.remove(u)
            u.setParent(None)
            u.deleteLater()
        for ref in refs or ():
            u = self.add_unit()
            u.set_model(ref.model)
            if ref.preprocessor in self.preprocessor_names:
                u.preprocessor.setCurrentText(ref.preprocessor)
            else:
                u.message.show_message(
                    f"Preprocessor {ref.preprocessor!r} is not available here.",
                    f"Available: {', '.join(self.preprocessor_names)}.",
                    kind="warning",
                )
            u.weight.setValue(ref.weight)
            u.span.setValue((ref.start, ref.end))
            if u.set_image_from_path(ref.image.path) and ref.image.sha256 and u.image_ref is not None:
                u.image_ref = ImageRef(path=u.image_ref.path, sha256=ref.image.sha256)
        if not self.unit_widgets:
            self.add_unit()
        if guess_mode is not None:
            self.guess.setChecked(guess_mode)
        self.changed.emit()

    # -- threads ----------------------------------------------------------------------------------
    def busy(self) -> bool:
        return any(u.busy() for u in self.unit_widgets)

    def wait_idle(self, ms: int = 10_000) -> None:
        """Block until preview threads end (tests, shutdown); pending previews are dropped."""
        for u in self.unit_widgets:
            u.wait(ms)
        wait_all_previews(ms)

    def shutdown(self) -> None:
        self.wait_idle()
