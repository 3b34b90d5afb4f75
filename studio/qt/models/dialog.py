"""Models ▸ Models…: everything the studio can find on disk, and what a user does with it.

Tabs: **Models** (filterable list, details with the reason a file cannot be used, use, rename,
move to trash, set as default VAE / tiny autoencoder per architecture, import a file or folder),
**Folders** (the extra folders scanned with the library, the defaults per architecture) and
**Download** (`models_download.py`: a view of the window's `Downloads`, which goes on when the dialog
closes). Scans and imports run on a background thread; settings are `studio.core.settings` (shared
with the CLI).
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QItemSelectionModel, Qt, QUrl, Signal
from PySide6.QtGui import QDesktopServices
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPushButton,
    QSplitter,
    QTableView,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from studio.core import library, paths, recommend
from studio.core import settings as core_settings
from studio.core.catalogue import CatalogueEntry
from studio.core.settings import ARCH_LABELS, ARCHES
from studio.qt.common.background import Task
from studio.qt.models.download import DownloadPanel, Downloads
from studio.qt.models.table import ENTRY_ROLE, KINDS, ModelsFilter, ModelsTableModel, arch_label, fmt_size

DEFAULTS = {"VAE": "vae", "tiny autoencoder": "taesd"}  # kind -> settings key


class ModelsDialog(QDialog):
    modelChosen = Signal(str)  # "Use this model"
    settingsChanged = Signal()  # folders or defaults changed (the window tells the engine)
    scanned = Signal()
    shownChanged = Signal(bool)  # shown or hidden (the status bar shows a download while it is hidden)

    def __init__(self, parent: QWidget | None = None, downloads: Downloads | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("ModelsDialog")
        self.setWindowTitle("Models")
        self.resize(1100, 660)
        self.settings = core_settings.load()
        self.task: Task | None = None
        self.problems: list[str] = []
        self._select_after_scan = ""
        self._rescan_again = False

        self.tabs = QTabWidget(objectName="ModelsTabs")
        self.tabs.addTab(self._models_tab(), "Models")
        self.tabs.addTab(self._folders_tab(), "Folders")
        self.downloads = downloads if downloads is not None else Downloads(self)
        self.download = DownloadPanel(self.downloads)
        self.downloads.downloaded.connect(self._downloaded)
        self.tabs.addTab(self.download, "Download")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addWidget(self.tabs, 1)
        lay.addWidget(buttons)
        self.refresh_folders()
        self.rescan()

    # -- construction -----------------------------------------------------------------------------
    def _models_tab(self) -> QWidget:
        page = QWidget()
        self.search = QLineEdit(
            placeholderText="Filter by name or folder…", objectName="ModelSearch", clearButtonEnabled=True
        )
        self.kind = QComboBox(objectName="KindFilter")
        self.kind.addItem("All kinds", "")
        for k in KINDS:
            self.kind.addItem(k[:1].upper() + k[1:], k)
        self.arch = QComboBox(objectName="ArchFilter")
        self.arch.addItem("All architectures", "")
        for a in ARCHES:
            self.arch.addItem(ARCH_LABELS[a], a)
        self.arch.addItem("Unknown", "?")
        self.usable_only = QCheckBox("Usable only")
        self.rescan_button = QPushButton("Rescan", toolTip="Look through the library and the extra folders again.")
        self.rescan_button.clicked.connect(self.rescan)
        top = QHBoxLayout()
        top.addWidget(self.search, 2)
        top.addWidget(self.kind)
        top.addWidget(self.arch)
        top.addWidget(self.usable_only)
        top.addWidget(self.rescan_button)

        self.model = ModelsTableModel(self)
        self.proxy = ModelsFilter(self)
        self.proxy.setSourceModel(self.model)
        self.table = QTableView(objectName="ModelsTable")
        self.table.setAccessibleName("Models")
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(0, Qt.SortOrder.AscendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().hide()
        self.table.setShowGrid(False)
        self.table.setAlternatingRowColors(True)
        self.table.setWordWrap(False)
        head = self.table.horizontalHeader()
        head.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for c in range(1, 6):
            head.setSectionResizeMode(c, QHeaderView.ResizeMode.ResizeToContents)
        self.table.selectionModel().currentRowChanged.connect(lambda *_: self._show_details())
        self.table.doubleClicked.connect(lambda _i: self.use_selected())
        self.search.textChanged.connect(lambda t: self.proxy.set_filter(text=t))
        self.kind.currentIndexChanged.connect(lambda _i: self.proxy.set_filter(kind=self.kind.currentData()))
        self.arch.currentIndexChanged.connect(lambda _i: self.proxy.set_filter(arch=self.arch.currentData()))
        self.usable_only.toggled.connect(lambda on: self.proxy.set_filter(usable_only=on))

        split = QSplitter(Qt.Orientation.Horizontal)
        split.addWidget(self.table)
        split.addWidget(self._details())
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        split.setSizes([640, 420])

        self.summary = QLabel("", objectName="ModelsSummary")
        self.import_mode = QComboBox(objectName="ImportMode")
        self.import_mode.addItem("Link (no extra space)", "link")
        self.import_mode.addItem("Copy", "copy")
        self.import_mode.setToolTip(
            "Link: the library points at the original, which must stay where it is. Copy: the library has its own copy."
        )
        self.import_file_button = QPushButton("Import file…", objectName="ImportFile")
        self.import_file_button.clicked.connect(self.import_file)
        self.import_folder_button = QPushButton("Import folder…", objectName="ImportFolder")
        self.import_folder_button.clicked.connect(self.import_folder)
        bottom = QHBoxLayout()
        bottom.addWidget(self.summary, 1)
        bottom.addWidget(self.import_mode)
        bottom.addWidget(self.import_file_button)
        bottom.addWidget(self.import_folder_button)

        lay = QVBoxLayout(page)
        lay.addLayout(top)
        lay.addWidget(split, 1)
        lay.addLayout(bottom)
        return page

    def _details(self) -> QWidget:
        box = QWidget(objectName="ModelDetails")
        self.title = QLabel("", objectName="DetailsTitle", wordWrap=True)
        self.fields: dict[str, QLabel] = {}
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        for name in ("Kind", "Architecture", "Precision", "Size", "Found in", "Path", "Status", "Recommended"):
            label = QLabel("", wordWrap=True)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.fields[name] = label
            form.addRow(name, label)
        self.use_button = QPushButton("Use this model", objectName="UseModel")
        self.use_button.clicked.connect(self.use_selected)
        self.default_arch = QComboBox(objectName="DefaultArch")
        for a in ARCHES:
            self.default_arch.addItem(ARCH_LABELS[a], a)
        self.default_button = QPushButton("Set as default", objectName="SetDefault")
        self.default_button.clicked.connect(self.set_default_for_selected)
        self.default_row = QWidget()
        row = QHBoxLayout(self.default_row)
        row.setContentsMargins(0, 0, 0, 0)
        self.default_label = QLabel("Default for")
        row.addWidget(self.default_label)
        row.addWidget(self.default_arch, 1)
        row.addWidget(self.default_button)
        self.prediction = QComboBox(objectName="Prediction")
        self.prediction.setToolTip(
            "SD 2.x files look the same whether they predict the noise (ε: 512-base, 512-inpainting) or v "
            "(768-v). The studio reads what the file says (its name, metadata, a .yaml beside it) or asks the "
            "model; choose here if it got it wrong. Requests made with the model record the choice."
        )
        for text, value in (("As detected", ""), ("ε (epsilon)", "epsilon"), ("v-prediction", "v_prediction")):
            self.prediction.addItem(text, value)
        self.prediction.activated.connect(self.set_prediction_for_selected)
        self.prediction_row = QWidget()
        prow = QHBoxLayout(self.prediction_row)
        prow.setContentsMargins(0, 0, 0, 0)
        prow.addWidget(QLabel("Prediction"))
        prow.addWidget(self.prediction, 1)
        self.rename_button = QPushButton("Rename…", objectName="RenameModel")
        self.rename_button.clicked.connect(self.rename_selected)
        self.trash_button = QPushButton("Move to trash", objectName="TrashModel")
        self.trash_button.clicked.connect(self.trash_selected)
        self.reveal_button = QPushButton("Show folder", objectName="RevealModel")
        self.reveal_button.clicked.connect(self.reveal_selected)
        actions = QGridLayout()
        actions.addWidget(self.rename_button, 0, 0)
        actions.addWidget(self.trash_button, 0, 1)
        actions.addWidget(self.reveal_button, 0, 2)
        lay = QVBoxLayout(box)
        lay.setContentsMargins(12, 0, 0, 0)
        lay.addWidget(self.title)
        lay.addLayout(form)
        lay.addStretch(1)
        lay.addWidget(self.use_button)
        lay.addWidget(self.default_row)
        lay.addWidget(self.prediction_row)
        lay.addLayout(actions)
        return box

    def _folders_tab(self) -> QWidget:
        page = QWidget()
        self.folders = QListWidget(objectName="FolderList")
        self.folders.setAccessibleName("Model folders")
        self.folders.currentRowChanged.connect(lambda _r: self._update_folder_buttons())
        add = QPushButton(
            "Add folder…",
            objectName="AddFolder",
            toolTip="An A1111 or ComfyUI models folder, or the Hugging Face cache.",
        )
        add.clicked.connect(self.add_folder)
        self.remove_folder_button = QPushButton(
            "Remove", objectName="RemoveFolder", toolTip="Stop scanning it (nothing is deleted)."
        )
        self.remove_folder_button.clicked.connect(self.remove_selected_folder)
        buttons = QHBoxLayout()
        buttons.addWidget(add)
        buttons.addWidget(self.remove_folder_button)
        buttons.addStretch(1)
        self.defaults = QListWidget(objectName="DefaultsList")
        self.defaults.setAccessibleName("Defaults")
        self.clear_default_button = QPushButton(
            "Clear", objectName="ClearDefault", toolTip="Use the model's own again."
        )
        self.clear_default_button.clicked.connect(self.clear_selected_default)
        lay = QVBoxLayout(page)
        lay.addWidget(
            QLabel(
                "Folders scanned for models. Downloads and imports go into the library; extra folders "
                "are only read (an A1111 or ComfyUI models folder, the Hugging Face cache).",
                wordWrap=True,
                objectName="Hint",
            )
        )
        lay.addWidget(self.folders, 2)
        lay.addLayout(buttons)
        lay.addWidget(QLabel("VAE and tiny autoencoder used for each architecture (set them from the Models tab)."))
        lay.addWidget(self.defaults, 1)
        row = QHBoxLayout()
        row.addStretch(1)
        row.addWidget(self.clear_default_button)
        lay.addLayout(row)
        return page

    # -- scanning ---------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self.task is not None or self.download.busy  # a task counts until its result has arrived

    def rescan(self, select: str = "") -> None:
        """Scan every folder again on a background thread; `select` a path when done."""
        chosen = self.selected()
        self._select_after_scan = select or self._select_after_scan or (chosen.path if chosen is not None else "")
        if self.task is not None:
            self._rescan_again = True  # settings changed mid-scan: scan once more when it ends
            return
        self._rescan_again = False
        snapshot = core_settings.Settings(**self.settings.to_dict())
        self.task = Task(lambda _report, _cancel: library.scan_all(snapshot), name="studio-model-scan")
        self.task.succeeded.connect(self._scanned)
        self.task.failed.connect(lambda m, h: self._failed("Scanning failed", f"{m} {h}"))
        self.rescan_button.setEnabled(False)
        self.summary.setText("Scanning…")
        self.task.start()

    def _scanned(self, result) -> None:
        self.task = None
        if self._rescan_again:
            self.rescan()
            return
        entries, self.problems = result
        self.model.set_entries(entries)
        self.rescan_button.setEnabled(True)
        bad = sum(not e.usable for e in entries)
        n_folders = 2 + len(self.settings.model_folders)
        text = f"{len(entries)} models in {n_folders} folders"
        if bad:
            text += f" · {bad} cannot be used (marked ✗)"
        if self.problems:
            text += " · " + "; ".join(self.problems)
        self.summary.setText(text)
        if self._select_after_scan:
            self.select_path(self._select_after_scan)
            self._select_after_scan = ""
        elif self.proxy.rowCount():
            self.table.selectRow(0)
        self._show_details()
        self.scanned.emit()

    def select_path(self, path: str) -> bool:
        row = self.model.row_of(path)
        if row < 0:
            return False
        index = self.proxy.mapFromSource(self.model.index(row, 0))
        if not index.isValid():  # filtered out: show everything again
            self.search.clear()
            self.kind.setCurrentIndex(0)
            self.arch.setCurrentIndex(0)
            self.usable_only.setChecked(False)
            index = self.proxy.mapFromSource(self.model.index(row, 0))
        self.table.selectionModel().setCurrentIndex(
            index, QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows
        )
        self.table.scrollTo(index)
        return True

    def selected(self) -> CatalogueEntry | None:
        index = self.table.selectionModel().currentIndex()
        return index.data(ENTRY_ROLE) if index.isValid() else None

    # -- details ----------------------------------------------------------------------------------
    def _show_details(self) -> None:
        e = self.selected()
        has = e is not None
        for w in (self.use_button, self.rename_button, self.trash_button, self.reveal_button):
            w.setEnabled(has)
        if e is None:
            self.title.setText("Nothing selected")
            for label in self.fields.values():
                label.setText("")
            self.default_row.hide()
            return
        protected = library.is_protected(e.path)
        self.title.setText(f"<b>{library.display_name(e.path)}</b>")
        f = self.fields
        f["Kind"].setText(e.kind)
        f["Architecture"].setText(arch_label(e))
        f["Precision"].setText(e.precision or "—")
        f["Size"].setText(fmt_size(e.size_bytes))
        f["Found in"].setText(e.source)
        f["Path"].setText(e.path)
        f["Status"].setText("✓ Usable" + (f" — {e.reason}" if e.reason else "") if e.usable else f"✗ {e.reason}")
        rec = recommend.for_entry(e)
        f["Recommended"].setText(f"{rec.summary()}. {rec.note}" if rec else "—")
        self.use_button.setEnabled(e.usable and e.kind in recommend.CHECKPOINT_KINDS)
        self.rename_button.setEnabled(not protected)
        self.trash_button.setEnabled(not protected)
        is_sd2_file = e.arch == "sd2" and e.kind in recommend.CHECKPOINT_KINDS and Path(e.path).is_file()
        self.prediction_row.setVisible(is_sd2_file and e.usable)
        if is_sd2_file:
            self.prediction.setCurrentIndex(max(0, self.prediction.findData(self.settings.prediction_for(e.path))))
        what = DEFAULTS.get(e.kind)
        self.default_row.setVisible(what is not None and e.usable)
        if what is not None:
            self.default_label.setText(f"Default {'VAE' if what == 'vae' else 'tiny autoencoder'} for")
            if e.arch in ARCHES:
                self.default_arch.setCurrentIndex(ARCHES.index(e.arch))
            current = self.settings.vae_for if what == "vae" else self.settings.taesd_for
            is_default = current(self.default_arch.currentData()) == e.path
            self.default_button.setText("Is the default" if is_default else "Set as default")

    # -- actions ----------------------------------------------------------------------------------
    def use_selected(self) -> None:
        e = self.selected()
        if e is not None and e.usable and e.kind in recommend.CHECKPOINT_KINDS:
            self.modelChosen.emit("demo" if Path(e.path) == paths.demo_model_dir() else e.path)
            self.accept()

    def set_default_for_selected(self) -> None:
        e = self.selected()
        what = DEFAULTS.get(e.kind) if e is not None else None
        if e is None or what is None:
            return
        arch = self.default_arch.currentData()
        self.settings.set_default(what, arch, e.path)
        self._save()
        self._show_details()

    def set_prediction_for_selected(self) -> None:
        """Save the ε/v choice for the selected SD 2.x file (requests made with it carry it)."""
        e = self.selected()
        if e is None:
            return
        self.settings.set_prediction(e.path, self.prediction.currentData())
        self._save()

    def clear_selected_default(self) -> None:
        item = self.defaults.currentItem()
        if item is None:
            return
        what, arch = item.data(Qt.ItemDataRole.UserRole)
        self.settings.set_default(what, arch, None)
        self._save()

    def rename_selected(self) -> None:
        e = self.selected()
        if e is None:
            return
        old = Path(e.path)
        name, ok = QInputDialog.getText(
            self, "Rename model", "New name:", QLineEdit.EchoMode.Normal, old.stem if old.is_file() else old.name
        )
        if not ok or not name.strip():
            return
        try:
            new = library.rename_model(old, name)
        except library.LibraryError as exc:
            self._error("Cannot rename", str(exc))
            return
        self.settings = core_settings.load()  # rename_model kept the defaults pointing at it
        self.settingsChanged.emit()
        self.rescan(select=str(new))

    def trash_selected(self) -> None:
        e = self.selected()
        if e is None:
            return
        name = library.display_name(e.path)
        where = "removed from the library (the original stays)" if Path(e.path).is_symlink() else "moved to the trash"
        answer = QMessageBox.question(
            self,
            "Move to trash",
            f"“{name}” will be {where}.\n\n{e.path}",
            QMessageBox.StandardButton.Ok | QMessageBox.StandardButton.Cancel,
        )
        if answer != QMessageBox.StandardButton.Ok:
            return
        try:
            library.trash_model(e.path)
        except library.LibraryError as exc:
            self._error("Cannot delete", str(exc))
            return
        self.settings = core_settings.load()
        self.settingsChanged.emit()
        self._select_after_scan = ""
        self.rescan()

    def reveal_selected(self) -> None:
        e = self.selected()
        if e is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(Path(e.path).parent)))

    def import_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Import a model file", str(Path.home()), "Models (*.safetensors *.gguf);;All files (*)"
        )
        if path:
            self.import_path(path)

    def import_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Import a model folder (diffusers)", str(Path.home()))
        if path:
            self.import_path(path)

    def import_path(self, path: str, mode: str | None = None) -> None:
        """Copy or link `path` into the library on a background thread, then select it."""
        mode = mode or self.import_mode.currentData()
        if self.task is not None:
            return
        self.task = Task(lambda _r, _c: str(library.import_model(path, mode)), name="studio-model-import")
        self.task.succeeded.connect(lambda new: self._after_import(new))
        self.task.failed.connect(lambda m, h: self._failed("Import failed", f"{m} {h}", idle_first=False))
        self.summary.setText(f"{'Copying' if mode == 'copy' else 'Linking'} {Path(path).name} into the library…")
        self.rescan_button.setEnabled(False)
        self.task.start()

    def _after_import(self, new: str) -> None:
        self.task = None
        self.rescan(select=new)

    def _idle(self) -> None:
        self.task = None
        self.rescan_button.setEnabled(True)
        if self._rescan_again:
            self.rescan()

    def _downloaded(self, path: str) -> None:
        self.rescan(select=path)
        self.tabs.setCurrentIndex(0)

    # -- folders and defaults ---------------------------------------------------------------------
    def refresh_folders(self) -> None:
        self.folders.clear()
        for src in library.sources(self.settings):
            item = QListWidgetItem(f"{src.label}    {src.path}" + ("" if src.path.exists() else "    (not found)"))
            item.setData(Qt.ItemDataRole.UserRole, str(src.path) if src.removable else "")
            if not src.removable:
                item.setToolTip("Always scanned.")
            self.folders.addItem(item)
        self.defaults.clear()
        for what, table in (("vae", self.settings.default_vae), ("taesd", self.settings.default_taesd)):
            for arch, path in sorted(table.items()):
                label = "VAE" if what == "vae" else "Tiny autoencoder"
                item = QListWidgetItem(f"{ARCH_LABELS.get(arch, arch)} · {label}:    {path}")
                item.setData(Qt.ItemDataRole.UserRole, (what, arch))
                self.defaults.addItem(item)
        if not self.defaults.count():
            item = QListWidgetItem("None set: every model uses its own VAE; TAESD previews need one.")
            item.setFlags(Qt.ItemFlag.NoItemFlags)
            self.defaults.addItem(item)
        self._update_folder_buttons()

    def _update_folder_buttons(self) -> None:
        item = self.folders.currentItem()
        self.remove_folder_button.setEnabled(bool(item and item.data(Qt.ItemDataRole.UserRole)))

    def add_folder(self, path: str | None = None) -> bool:
        if not path:
            path = QFileDialog.getExistingDirectory(
                self, "Add a models folder (A1111, ComfyUI, Hugging Face cache)", str(Path.home())
            )
        if not path:
            return False
        added = self.settings.add_folder(path)
        if added:
            self._save()
            self.rescan()
        return added

    def remove_selected_folder(self) -> None:
        item = self.folders.currentItem()
        path = item.data(Qt.ItemDataRole.UserRole) if item else ""
        if path and self.settings.remove_folder(path):
            self._save()
            self.rescan()

    def _save(self) -> None:
        core_settings.save(self.settings)
        self.refresh_folders()
        self.settingsChanged.emit()

    def _failed(self, title: str, text: str, idle_first: bool = True) -> None:
        """A background task failed: the dialog is idle again and says why (in the order it always did)."""
        if idle_first:
            self._idle()
        self._error(title, text)
        if not idle_first:
            self._idle()

    def _error(self, title: str, text: str) -> None:
        self.summary.setText(f"{title}: {text}")
        self.rescan_button.setEnabled(True)

    # -- lifetime ---------------------------------------------------------------------------------
    # Closing leaves a download running: it belongs to the window (ModelSetup), which stops it on quit.
    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        self.shownChanged.emit(True)

    def hideEvent(self, event) -> None:  # noqa: N802
        super().hideEvent(event)
        self.shownChanged.emit(False)
