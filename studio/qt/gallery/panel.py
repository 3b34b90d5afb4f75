"""The Gallery panel: the thumbnail grid of the library (`gallery_model`: smooth at 10,000 images),
search, filters and the details pane with its actions.

Narrow-dock friendly: the filters and the action buttons wrap onto more rows (`FlowLayout`) and the
details pane scrolls, so the panel never forces the window wider or taller than a small screen.

Signals for the main window:
- `recreateRequested(object)` — a `GenerationRequest` to load into the Prompt panel;
- `useAsInputRequested(str)` — a file path to put on the canvas as the input image;
- `upscaleRequested(str)` — a file path to upscale with an upscaler model (the Upscale dialog).

`read_dropped_file(path)` reads any supported image's metadata for a drop anywhere on the window.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from PySide6.QtCore import QModelIndex, Qt, QTimer, QUrl, Signal
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListView,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from studio.core.errors import StudioError
from studio.core.gallery import KINDS, Gallery, GalleryItem
from studio.core.metadata import export_image, read_metadata, verify
from studio.core.metadata.png import PARAMETERS_KEY
from studio.core.request import GenerationRequest
from studio.qt.common.flow_layout import FlowBox
from studio.qt.gallery.model import PAGE, THUMB, BadgeRole, GalleryDelegate, GalleryModel, IdRole, ItemRole

__all__ = [
    "PAGE",
    "THUMB",
    "BadgeRole",
    "GalleryDelegate",
    "GalleryModel",
    "GalleryPanel",
    "IdRole",
    "ItemRole",
    "read_dropped_file",
]


def read_dropped_file(path: str | os.PathLike[str]) -> tuple[GenerationRequest | None, dict[str, Any], list[str]]:
    """Metadata of a dropped PNG/JPEG/WebP: (request to load or None, normalised fields, notes).

    Reads this studio's own recipe, A1111/Forge `parameters`, ComfyUI `prompt`/`workflow`,
    InvokeAI `invokeai_metadata` and Fooocus. The notes list what could not be mapped onto this
    studio's settings. A corrupt or hostile file raises a `StudioError` (MetadataError) with a
    sentence to show the user.
    """
    result = read_metadata(path)
    notes = list(result.unmapped)
    if result.source == "none":
        notes.append("the file carries no generation settings this studio can read")
    return result.request, dict(result.normalised), notes


# -- panel --------------------------------------------------------------------------------------------------


class GalleryPanel(QWidget):
    """Thumbnail grid + search + filters + details pane with actions."""

    recreateRequested = Signal(object)  # GenerationRequest
    useAsInputRequested = Signal(str)  # path
    upscaleRequested = Signal(str)  # path
    statusMessage = Signal(str)
    itemSelected = Signal(object)  # GalleryItem: the window shows its run's kept steps

    def __init__(self, library: str | os.PathLike[str] | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("GalleryPanel")
        self.gallery = Gallery(library)
        self.model = GalleryModel(self.gallery, self)
        self._current: GalleryItem | None = None
        self._dropped: GenerationRequest | None = None

        # search and filters
        self.search = QLineEdit(placeholderText="Search prompts, models, LoRAs, tags…")
        self.search.setClearButtonEnabled(True)
        self.model_filter = QComboBox()
        self.kind_filter = QComboBox()
        self.kind_filter.addItem("All kinds", None)
        for kind in KINDS:
            self.kind_filter.addItem(kind, kind)
        self.date_filter = QComboBox()
        for label, days in (("Any time", None), ("Today", 0), ("Last 7 days", 7), ("Last 30 days", 30)):
            self.date_filter.addItem(label, days)
        self.favourites_only = QCheckBox("★ only")
        self.show_trash = QCheckBox("Trash")
        self._debounce = QTimer(self, singleShot=True, interval=150)
        self._debounce.timeout.connect(self.apply_filters)
        self.search.textChanged.connect(self._debounce.start)
        for combo, name in zip(
            (self.model_filter, self.kind_filter, self.date_filter), ("Model filter", "Kind filter", "Date filter")
        ):
            combo.setAccessibleName(name)
        for combo in (self.model_filter, self.kind_filter, self.date_filter):
            combo.currentIndexChanged.connect(self.apply_filters)
        for box in (self.favourites_only, self.show_trash):
            box.toggled.connect(self.apply_filters)
        bar = QVBoxLayout()  # the search box gets a row of its own: it stays readable in a narrow dock
        bar.addWidget(self.search)
        filters = FlowBox(spacing=6, group_gap=6)  # as many rows as the dock's width needs
        filters.setObjectName("GalleryFilters")
        flow = filters.flow
        flow.setContentsMargins(0, 0, 0, 0)
        for w in (self.model_filter, self.kind_filter, self.date_filter, self.favourites_only, self.show_trash):
            flow.addWidget(w, flow.new_group())
        bar.addWidget(filters)

        # grid
        self.view = QListView()
        self.view.setAccessibleName("Gallery images")
        self.view.setViewMode(QListView.ViewMode.IconMode)
        self.view.setResizeMode(QListView.ResizeMode.Adjust)
        self.view.setMovement(QListView.Movement.Static)
        self.view.setUniformItemSizes(True)
        self.view.setLayoutMode(QListView.LayoutMode.Batched)
        self.view.setBatchSize(200)
        self.view.setSpacing(2)
        self.view.setSelectionMode(QListView.SelectionMode.SingleSelection)
        self.view.setItemDelegate(GalleryDelegate(self.view))
        self.view.setModel(self.model)
        self.view.selectionModel().currentChanged.connect(self._on_current)
        self.view.doubleClicked.connect(lambda _i: self.recreate())

        # drop bar (shown after an image is dropped on the panel)
        self.drop_bar = QFrame()
        self.drop_bar.setFrameShape(QFrame.Shape.StyledPanel)
        self.drop_label = QLabel(wordWrap=True)
        self.drop_load = QPushButton("Load into Prompt panel")
        self.drop_load.clicked.connect(self._load_dropped)
        drop_close = QPushButton("Dismiss")
        drop_close.clicked.connect(self.drop_bar.hide)
        dl = QVBoxLayout(self.drop_bar)  # the text above its buttons: it fits a narrow dock
        dl.addWidget(self.drop_label)
        drop_buttons = QHBoxLayout()
        drop_buttons.addStretch(1)
        drop_buttons.addWidget(self.drop_load)
        drop_buttons.addWidget(drop_close)
        dl.addLayout(drop_buttons)
        self.drop_bar.hide()

        # details
        self.details = QLabel(wordWrap=True, textInteractionFlags=Qt.TextInteractionFlag.TextSelectableByMouse)
        self.details.setAlignment(Qt.AlignmentFlag.AlignTop | Qt.AlignmentFlag.AlignLeft)
        self.provenance = QLabel(wordWrap=True)
        self.path_label = QLabel(wordWrap=True, textInteractionFlags=Qt.TextInteractionFlag.TextSelectableByMouse)
        self.lineage = QTreeWidget(objectName="Lineage")  # the image's family: inputs, branches, upscales
        self.lineage.setAccessibleName("Lineage")
        self.lineage.setHeaderHidden(True)
        self.lineage.setIndentation(12)
        self.lineage.setMaximumHeight(140)
        self.lineage.setToolTip("Where this image came from and what was made from it. Click one to select it.")
        self.lineage.itemActivated.connect(self._jump_to_lineage)
        self.lineage.itemClicked.connect(self._jump_to_lineage)
        self.buttons: dict[str, QPushButton] = {}
        actions = FlowBox(spacing=4, group_gap=4)  # wraps: every button stays whole and on screen
        actions.setObjectName("GalleryActions")
        flow = actions.flow
        flow.setContentsMargins(0, 0, 0, 0)
        for key, label, slot in (
            ("recreate", "Recreate", self.recreate),
            ("use", "Use as input", self.use_as_input),
            ("upscale", "Upscale…", self.upscale),
            ("folder", "Open folder", self.open_folder),
            ("export", "Export…", self.export_dialog),
            ("copy", "Copy parameters", self.copy_parameters),
            ("favourite", "☆ Favourite", self.toggle_favourite),
            ("trash", "Trash", self.toggle_trash),
        ):
            btn = QPushButton(label)
            btn.clicked.connect(slot)
            btn.setEnabled(False)
            flow.addWidget(btn, flow.new_group())
            self.buttons[key] = btn
        self.tag_edit = QLineEdit(placeholderText="Add tags (comma-separated), Enter to save")
        self.tag_edit.returnPressed.connect(self.add_tags_from_edit)
        info = QWidget(objectName="GalleryDetails")
        il = QVBoxLayout(info)
        il.setContentsMargins(0, 0, 4, 0)
        il.addWidget(self.details)
        il.addWidget(self.tag_edit)
        il.addWidget(QLabel("Lineage"))
        il.addWidget(self.lineage)
        il.addWidget(self.provenance)
        il.addWidget(self.path_label)
        il.addStretch(1)
        self.details_scroll = QScrollArea(objectName="GalleryDetailsScroll")  # a long recipe scrolls, never squeezed
        self.details_scroll.setWidgetResizable(True)
        self.details_scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.details_scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.details_scroll.setWidget(info)
        self.details_scroll.setMinimumHeight(60)
        side = QWidget(objectName="GallerySide")  # the actions stay in sight below the scrolling details
        sl = QVBoxLayout(side)
        sl.addWidget(self.details_scroll, 1)
        sl.addWidget(actions)

        split = QSplitter(Qt.Orientation.Vertical)
        split.addWidget(self.view)
        split.addWidget(side)
        split.setStretchFactor(0, 2)
        split.setStretchFactor(1, 1)
        layout = QVBoxLayout(self)
        layout.addLayout(bar)
        layout.addWidget(self.drop_bar)
        layout.addWidget(split, 1)
        self.setAcceptDrops(True)
        self._fill_models()
        self.apply_filters()

    # -- filtering ------------------------------------------------------------------------------------
    def _fill_models(self) -> None:
        current = self.model_filter.currentData()
        self.model_filter.blockSignals(True)
        self.model_filter.clear()
        self.model_filter.addItem("All models", None)
        for name in self.gallery.models():
            self.model_filter.addItem(name, name)
        i = self.model_filter.findData(current)
        self.model_filter.setCurrentIndex(max(i, 0))
        self.model_filter.blockSignals(False)

    def apply_filters(self) -> None:
        keep = self._current.id if self._current else None
        self.model.set_query(
            self.search.text().strip(),
            model=self.model_filter.currentData(),
            kind=self.kind_filter.currentData(),
            favourite=True if self.favourites_only.isChecked() else None,
            trashed=self.show_trash.isChecked(),
            since=self._since(),
        )
        self.select(keep) if keep and self.model.row_of(keep) >= 0 else self._show(None)

    def _since(self) -> float | None:
        days = self.date_filter.currentData()
        if days is None:
            return None
        start = datetime.now().astimezone().replace(hour=0, minute=0, second=0, microsecond=0)
        return (start - timedelta(days=days)).timestamp()

    def refresh(self) -> None:
        """Re-read the library (call after new images were recorded)."""
        self._fill_models()
        self.apply_filters()

    def items_added(self, items: list[GalleryItem]) -> None:
        self.refresh()
        if items:
            self.select(items[0].id)

    def select(self, item_id: str) -> bool:
        row = self.model.row_of(item_id)
        if row < 0:
            return False
        idx = self.model.index(row)
        self.view.setCurrentIndex(idx)
        self.view.scrollTo(idx)
        return True

    # -- details ---------------------------------------------------------------------------------------
    def current_item(self) -> GalleryItem | None:
        return self._current

    def _on_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        self._show(self.model.item(current.row()) if current.isValid() else None)

    def _show(self, item: GalleryItem | None) -> None:
        self._current = item
        for btn in self.buttons.values():
            btn.setEnabled(item is not None)
        self.lineage.clear()
        if item is None:
            self.details.setText("Select an image to see its recipe.")
            self.provenance.clear()
            self.path_label.clear()
            return
        label = "AI-generated, edited from an input image" if item.is_composite else "AI-generated"
        tags = f"\nTags: {', '.join(item.tags)}" if item.tags else ""
        self.details.setText(f"{label} · {item.created.astimezone():%Y-%m-%d %H:%M}\n\n{item.describe()}{tags}")
        self.path_label.setText(str(item.path))
        self._fill_lineage(item)
        self.provenance.setText(self.provenance_text(item))
        self.buttons["favourite"].setText("★ Unfavourite" if item.favourite else "☆ Favourite")
        self.buttons["trash"].setText("Restore" if item.trashed else "Trash")
        if not item.trashed:
            self.itemSelected.emit(item)

    def _fill_lineage(self, item: GalleryItem) -> None:
        """The family tree, the selected image in bold; a lone image shows nothing."""
        tree = self.gallery.lineage_tree(item.id)
        if len(tree) <= 1:
            return
        parents: list[QTreeWidgetItem] = []
        for node, depth in tree:
            branch = f" · branch @ step {node.branch_step}" if node.branch_step is not None else ""
            entry = QTreeWidgetItem([f"{node.kind}{branch}: {node.prompt[:50] or '(no prompt)'}"])
            entry.setData(0, IdRole, node.id)
            if node.id == item.id:
                font = entry.font(0)
                font.setBold(True)
                entry.setFont(0, font)
            del parents[depth:]
            (parents[-1].addChild(entry) if parents else self.lineage.addTopLevelItem(entry))
            parents.append(entry)
        self.lineage.expandAll()

    def provenance_text(self, item: GalleryItem) -> str:
        if not item.path.exists():
            return "Content credentials: file missing"
        try:
            status = verify(item.path)
        except StudioError as exc:
            return f"Content credentials: cannot check ({exc})"
        return f"Content credentials (C2PA): {status.state} — {status.detail}"

    def _jump_to_lineage(self, entry: QTreeWidgetItem, _column: int = 0) -> None:
        item_id = entry.data(0, IdRole)
        if item_id == getattr(self._current, "id", None):
            return
        if item_id and not self.select(item_id):
            # Not in the current filter: show it anyway.
            try:
                self._show(self.gallery.get(item_id))
            except StudioError as exc:
                self.statusMessage.emit(str(exc))

    # -- actions ---------------------------------------------------------------------------------------
    def recreate(self) -> None:
        item = self._current
        if item is None:
            return
        try:
            self.recreateRequested.emit(item.request)
        except StudioError as exc:
            self.statusMessage.emit(str(exc))

    def use_as_input(self) -> None:
        if self._current is not None:
            self.useAsInputRequested.emit(str(self._current.path))

    def upscale(self) -> None:
        if self._current is not None:
            self.upscaleRequested.emit(str(self._current.path))

    def open_folder(self) -> None:
        if self._current is not None:
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(self._current.path.parent)))

    def export_to(self, dest: str | os.PathLike[str]) -> Path | None:
        if self._current is None:
            return None
        try:
            out = export_image(self._current.path, dest)
        except StudioError as exc:
            self.statusMessage.emit(str(exc))
            return None
        self.statusMessage.emit(f"Exported {out.name} with its provenance")
        return out

    def export_dialog(self) -> None:
        if self._current is None:
            return
        suggested = str(self._current.path.with_suffix(".jpg").name)
        dest, _ = QFileDialog.getSaveFileName(
            self, "Export image", suggested, "JPEG (*.jpg);;WebP (*.webp);;PNG (*.png)"
        )
        if dest:
            self.export_to(dest)

    def parameters_text(self) -> str:
        if self._current is None:
            return ""
        try:
            return read_metadata(self._current.path).raw.get(PARAMETERS_KEY, "")
        except StudioError:
            from studio.core.metadata.recipe import a1111_infotext

            return a1111_infotext(self._current.request, {"model_sha256": self._current.model_hash})

    def copy_parameters(self) -> None:
        text = self.parameters_text()
        if text:
            QGuiApplication.clipboard().setText(text)
            self.statusMessage.emit("Parameters copied")

    def add_tags_from_edit(self) -> None:
        item = self._current
        tags = [t.strip() for t in self.tag_edit.text().split(",") if t.strip()]
        if item is None or not tags:
            return
        self.gallery.add_tags(item.id, *tags)
        self.tag_edit.clear()
        self.model.forget(item.id)
        self._show(self.gallery.get(item.id))

    def toggle_favourite(self) -> None:
        item = self._current
        if item is None:
            return
        self.gallery.set_favourite(item.id, not item.favourite)
        self.model.forget(item.id)
        self.apply_filters()

    def toggle_trash(self) -> None:
        item = self._current
        if item is None:
            return
        (self.gallery.restore if item.trashed else self.gallery.trash)(item.id)
        self.model.forget(item.id)
        self._current = None
        self.apply_filters()

    # -- drops -----------------------------------------------------------------------------------------
    def dragEnterEvent(self, event: Any) -> None:  # noqa: N802
        if event.mimeData().hasUrls():
            event.acceptProposedAction()

    def dropEvent(self, event: Any) -> None:  # noqa: N802
        urls = [u.toLocalFile() for u in event.mimeData().urls() if u.isLocalFile()]
        if urls:
            self.show_dropped(urls[0])
            event.acceptProposedAction()

    def show_dropped(self, path: str | os.PathLike[str]) -> None:
        """Read a dropped file's metadata and offer to load it into the Prompt panel."""
        try:
            request, norm, notes = read_dropped_file(path)
        except StudioError as exc:
            self._dropped = None
            self.drop_label.setText(f"{Path(path).name}: {exc}")
            self.drop_load.setEnabled(False)
            self.drop_bar.show()
            return
        self._dropped = request
        source = {"studio": "this studio", "a1111": "A1111/Forge", "comfyui": "ComfyUI",
                  "invokeai": "InvokeAI", "fooocus": "Fooocus"}.get(norm.get("source", ""), "no tool")  # fmt: skip
        text = f"{Path(path).name}: settings from {source}"
        if norm.get("prompt"):
            text += f" — “{str(norm['prompt'])[:80]}”"
        if notes:
            text += "\nNot carried over: " + "; ".join(notes)
        self.drop_label.setText(text)
        self.drop_load.setEnabled(request is not None)
        self.drop_bar.show()

    def _load_dropped(self) -> None:
        if self._dropped is not None:
            self.recreateRequested.emit(self._dropped)
            self.drop_bar.hide()

    # -- lifetime --------------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Stop thumbnail workers and close the database (the window calls this on close)."""
        self.model.shutdown()
        self.gallery.close()

    def closeEvent(self, event: Any) -> None:  # noqa: N802
        self.model.shutdown()
        super().closeEvent(event)
