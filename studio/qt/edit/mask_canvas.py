"""The editing canvas: an RGB image layer and an 8-bit mask layer (white = repaint) shown as a
translucent coloured overlay, with brush/eraser/rectangle/lasso/expand tools, zoom and pan, bounded
undo/redo of bounding-box patches, and an autosaved session (`CanvasSession`).

Only plain numpy crosses out: `image()` (H, W, 3) uint8, `mask()` (H, W) uint8, and
`export_inputs(folder)` / `export_refs(folder)` write PNGs for a GenerationRequest's
`init_image` / `mask` (the mask is None when nothing is masked: plain img2img).

Integration, in short::

    canvas = MaskCanvas()                        # signals: imageChanged, maskChanged, historyChanged,
    toolbar = MaskToolBar(canvas)                #   problem(str), toolChanged(str), brushChanged,
    session = CanvasSession(canvas)              #   viewChanged, overlayChanged
    if session.crashed(): session.restore()      # after a crash: image, mask, undo steps and position
    canvas.problem.connect(message_bar.show)     # bad files, wrong mask size, … (the canvas is kept)
    canvas.set_image(result.images[0])           # "use as input"
    canvas.show_preview(step.image)              # live (composited) preview over the canvas; None hides
    image_ref, mask_ref = canvas.export_refs(folder)
    ...  # on window close: session.close()

Keys (while the canvas has focus; they win over window shortcuts): B/E/R/L/X tools, [ ] brush size,
Ctrl+Z / Ctrl+Shift+Z (and the platform's Redo key) undo/redo, Ctrl+V paste, Ctrl+0 fit, Ctrl+1 100 %, space-drag or
middle-drag pan, wheel zoom around the cursor, Alt with rectangle/lasso subtracts.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QColor, QGuiApplication, QImage, QPixmap
from PySide6.QtWidgets import QWidget

from studio.core import paths
from studio.core.files import atomic_write
from studio.core.hashing import sha256_bytes
from studio.core.request import ImageRef
from studio.qt.common.images import from_qimage, to_qimage
from studio.qt.edit.canvas_session import CanvasSession
from studio.qt.edit.canvas_view import TOOLS, CanvasViewMixin
from studio.qt.edit.toolbar import MaskToolBar
from studio.session.mask_history import WHOLE, Entry, History, Patch, apply_patch, diff_patch
from studio.session.mask_ops import (
    BadInput,
    apply_stroke,
    brush_segment,
    encode_png,
    expand_arrays,
    paint_overlay,
    polygon_mask,
    read_image,
    read_mask,
)

__all__ = ["OUTPAINT_FILLS", "TOOLS", "CanvasSession", "MaskCanvas", "MaskToolBar"]

OUTPAINT_FILLS = ("edge", "mirror", "noise")


class MaskCanvas(CanvasViewMixin, QWidget):
    """Paint a mask over an image. Coordinates: widget = image · zoom + offset."""

    maskChanged = Signal()
    imageChanged = Signal()
    problem = Signal(str)
    historyChanged = Signal()
    toolChanged = Signal(str)
    brushChanged = Signal()  # size, hardness or opacity
    viewChanged = Signal()  # zoom or pan
    overlayChanged = Signal()

    def __init__(
        self,
        parent: QWidget | None = None,
        *,
        size: tuple[int, int] = (512, 512),
        history_steps: int = 50,
        history_mb: int = 256,
    ) -> None:
        super().__init__(parent)
        self.setMouseTracking(True)
        self.setAcceptDrops(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setMinimumSize(160, 120)
        self.setCursor(Qt.CursorShape.CrossCursor)
        self.history = History(history_steps, history_mb << 20)
        self._tool = "brush"
        self._size, self._hardness, self._opacity = 48.0, 0.8, 1.0
        self._ov_rgb, self._ov_opacity, self._ov_visible = (255, 48, 96), 0.5, True
        self._zoom, self._offset, self._fit_mode = 1.0, QPointF(0, 0), True
        self._drag: str | None = None  # "paint", "rect", "lasso", "pan"
        self._space = False
        self._hover: QPointF | None = None
        self._points: list[QPointF] = []  # image coordinates of the current drag
        self._pan_from = QPointF()
        self._preview: QImage | None = None
        self._expansion = [0, 0, 0, 0]
        self._fill = "edge"  # how expand() fills the new area: edge | mirror | noise
        self._pending, self._sides, self._press = [0, 0, 0, 0], [False] * 4, QPointF()
        self._subtract, self._stroke, self._base, self._stroke_box = False, None, None, None
        w, h = size
        self._set_layers(np.full((h, w, 3), 255, np.uint8), np.zeros((h, w), np.uint8))

    # -- layers ---------------------------------------------------------------------------------

    def image(self) -> np.ndarray:
        return self._img.copy()

    def mask(self) -> np.ndarray:  # type: ignore[override]  # the inpaint mask; QWidget's shape mask is unused
        return self._mask.copy()

    def image_size(self) -> tuple[int, int]:
        """(width, height) of the canvas in image pixels."""
        return self._img.shape[1], self._img.shape[0]

    def expansion(self) -> tuple[int, int, int, int]:
        """Pixels added by `expand` (left, top, right, bottom) since the image was set."""
        left, top, right, bottom = self._expansion
        return left, top, right, bottom

    def original_box(self) -> tuple[int, int, int, int]:
        """(x0, y0, x1, y1) of the picture before `expand` grew it: the whole canvas when not grown."""
        left, top, right, bottom = self._expansion
        w, h = self.image_size()
        if left + right >= w or top + bottom >= h:  # cannot happen; never return an empty picture
            return 0, 0, w, h
        return left, top, w - right, h - bottom

    def _set_layers(self, img: np.ndarray, mask: np.ndarray) -> None:
        self._img, self._mask = np.ascontiguousarray(img), np.ascontiguousarray(mask)
        self._pix = QPixmap.fromImage(to_qimage(self._img))
        h, w = self._mask.shape
        self._ov = np.zeros((h, w, 4), np.uint8)
        self._ov_img = QImage(self._ov.data, w, h, 4 * w, QImage.Format.Format_RGBA8888_Premultiplied)
        self._stroke = None
        self._refresh_overlay()

    def _refresh_overlay(self, box=None) -> None:
        paint_overlay(self._ov, self._mask, self._ov_rgb, self._ov_opacity, box)
        if box is None:
            self.update()
        else:  # repaint only the changed pixels' screen area (big canvases stay fluid)
            y0, y1, x0, x1 = box
            tl, br = self.map_from_image(QPointF(x0, y0)), self.map_from_image(QPointF(x1, y1))
            self.update(QRectF(tl, br).toAlignedRect().adjusted(-2, -2, 2, 2))

    def set_image(self, array: np.ndarray, *, keep_mask: bool = False) -> bool:
        """Replace the image ("use as input"); undoable. The mask is cleared unless `keep_mask` and
        the size is unchanged. Returns False (and emits `problem`) for an array it cannot use."""
        a = np.asarray(array)
        if a.ndim == 3 and a.shape[2] == 4:
            a = a[..., :3]
        if a.ndim == 2:
            a = np.repeat(a[:, :, None], 3, axis=2)
        if a.ndim != 3 or a.shape[2] != 3 or a.shape[0] < 1 or a.shape[1] < 1:
            self.problem.emit(f"Cannot use an array of shape {a.shape} as an image (expected H×W×3).")
            return False
        if a.dtype != np.uint8:
            a = np.clip(a, 0, 255).astype(np.uint8)
        same = a.shape[:2] == self._mask.shape
        mask = self._mask if keep_mask and same else np.zeros(a.shape[:2], np.uint8)
        self._replace("Set image", a.copy(), mask.copy(), expansion=[0, 0, 0, 0])
        return True

    def set_mask(self, array: np.ndarray) -> bool:
        m = np.asarray(array)
        if m.ndim == 3:
            m = m[..., 0]
        if m.shape != self._mask.shape:
            w, h = self.image_size()
            self.problem.emit(
                f"The mask is {m.shape[1] if m.ndim == 2 else '?'}×{m.shape[0]} but the image is {w}×{h}."
            )
            return False
        self._edit_mask("Set mask", lambda mk: np.copyto(mk, np.clip(m, 0, 255).astype(np.uint8)))
        return True

    def load_image(self, path: str | Path) -> bool:
        try:
            arr = read_image(path)
        except BadInput as exc:
            self.problem.emit(str(exc))
            return False
        return self.set_image(arr)

    def load_mask(self, path: str | Path) -> bool:
        try:
            m = read_mask(path, self.image_size())
        except BadInput as exc:
            self.problem.emit(str(exc))
            return False
        return self.set_mask(m)

    def paste(self) -> bool:
        """Ctrl+V: an image, or an image file's URL, from the clipboard."""
        md = QGuiApplication.clipboard().mimeData()
        if md is not None and md.hasImage():
            img = QImage(md.imageData())
            if not img.isNull():
                return self.set_image(from_qimage(img))
        if md is not None and md.hasUrls():
            local = [u.toLocalFile() for u in md.urls() if u.isLocalFile()]
            if local:
                return self.load_image(local[0])
        self.problem.emit("The clipboard holds no image.")
        return False

    def export_inputs(self, folder: str | Path) -> tuple[Path, Path | None]:
        """Write the image (and the mask, unless it is empty) as PNGs named by content hash, atomically.
        Returns (image_path, mask_path or None)."""
        (img_ref, mask_ref) = self.export_refs(folder)
        return Path(img_ref.path), (Path(mask_ref.path) if mask_ref else None)

    def export_refs(self, folder: str | Path, *, original: bool = False) -> tuple[ImageRef, ImageRef | None]:
        """Like `export_inputs`, as `ImageRef`s (path + sha256) for a GenerationRequest. With
        `original`, only the picture inside `original_box()` and its mask: an outpaint request's
        input, which the engine grows (and fills) itself."""
        folder = paths.ensure(Path(folder))
        x0, y0, x1, y1 = self.original_box() if original else (0, 0, *self.image_size())
        refs: list[ImageRef | None] = []
        for kind, arr in (("input", self._img[y0:y1, x0:x1]), ("mask", self._mask[y0:y1, x0:x1])):
            if kind == "mask" and not arr.any():
                refs.append(None)
                continue
            data = encode_png(np.ascontiguousarray(arr))
            sha = sha256_bytes(data)
            target = folder / f"{kind}-{sha[:16]}.png"
            if not target.exists():
                atomic_write(target, data)
            refs.append(ImageRef(path=str(target), sha256=sha))
        image, mask = refs
        assert image is not None  # the input is always written; only an empty mask is left out
        return image, mask

    # -- edits (all undoable) --------------------------------------------------------------------

    def _finish_drag(self) -> None:
        """An edit arriving mid-drag (a key, a toolbar button): keep a stroke, drop a half-drawn selection."""
        if self._drag is not None:
            self._end_drag(commit=self._drag == "paint")

    def _edit_mask(self, label: str, fn) -> bool:
        self._finish_drag()
        before = self._mask.copy()
        fn(self._mask)
        patch = diff_patch("mask", before, self._mask)
        if patch is None:
            return False
        self.history.push(Entry(label, [patch]))
        self._refresh_overlay((patch.y, patch.y + patch.after.shape[0], patch.x, patch.x + patch.after.shape[1]))
        self.maskChanged.emit()
        self.historyChanged.emit()
        return True

    def _replace(self, label: str, img: np.ndarray, mask: np.ndarray, expansion: list[int]) -> None:
        self._finish_drag()
        patches = [Patch("image", WHOLE, WHOLE, self._img, img), Patch("mask", WHOLE, WHOLE, self._mask, mask)]
        self.history.push(Entry(label, patches, {"expansion": list(self._expansion)}, {"expansion": list(expansion)}))
        self._expansion = list(expansion)
        self._preview = None
        self._set_layers(img.copy(), mask.copy())
        if self._fit_mode:
            self.fit()
        self.imageChanged.emit()
        self.maskChanged.emit()
        self.historyChanged.emit()

    def fill_mask(self) -> bool:
        return self._edit_mask("Fill mask", lambda m: m.fill(255))

    def clear_mask(self) -> bool:
        return self._edit_mask("Clear mask", lambda m: m.fill(0))

    def invert_mask(self) -> bool:
        return self._edit_mask("Invert mask", lambda m: np.subtract(255, m, out=m))

    def mask_rect(self, x: float, y: float, w: float, h: float, subtract: bool = False) -> bool:
        """Set (or clear) the mask inside a rectangle given in image pixels."""
        x0, x1 = sorted((int(round(x)), int(round(x + w))))
        y0, y1 = sorted((int(round(y)), int(round(y + h))))
        return self._edit_mask(
            "Rectangle", lambda m: m[max(0, y0) : max(0, y1), max(0, x0) : max(0, x1)].fill(0 if subtract else 255)
        )

    def paint_stroke(self, points, erase: bool = False) -> bool:
        """One brush (or eraser) stroke through (x, y) image points with the current size, hardness
        and opacity, as a single undoable edit: what a mouse drag does, for scripts and tests."""
        pts = [(float(p[0]), float(p[1])) for p in points]
        if not pts:
            return False
        stroke, base = np.zeros(self._mask.shape, np.float32), self._mask.copy()

        def run(m: np.ndarray) -> None:
            for a, b in zip(pts, pts[1:] or pts):
                box = brush_segment(stroke, a, b, self._size / 2, self._hardness)
                if box is not None:
                    apply_stroke(m, base, stroke, box, self._opacity, erase)

        return self._edit_mask("Eraser" if erase else "Brush", run)

    def mask_polygon(self, points, subtract: bool = False) -> bool:
        """Set (or clear) the mask inside a polygon of (x, y) image coordinates (the lasso)."""
        inside = polygon_mask(self._mask.shape, [(float(p[0]), float(p[1])) for p in points])
        return self._edit_mask("Lasso", lambda m: m.__setitem__(inside, 0 if subtract else 255))

    def outpaint_fill(self) -> str:
        return self._fill

    def set_outpaint_fill(self, fill: str) -> None:
        """How `expand` (the Expand tool, the Outpaint… numbers) fills the new area: edge | mirror | noise."""
        if fill not in OUTPAINT_FILLS:
            raise ValueError(f"unknown outpaint fill {fill!r}; one of {OUTPAINT_FILLS}")
        self._fill = fill

    def expand(self, left: int = 0, top: int = 0, right: int = 0, bottom: int = 0) -> bool:
        """Outpaint: grow the canvas; the new area is filled (`outpaint_fill`) and masked (undoable)."""
        sides = [int(left), int(top), int(right), int(bottom)]
        if min(sides) < 0:
            self.problem.emit("Outpaint amounts must be zero or more pixels.")
            return False
        w, h = self.image_size()
        if (w + sides[0] + sides[2]) * (h + sides[1] + sides[3]) > 8192 * 8192:
            self.problem.emit("The expanded canvas would be larger than 8192×8192.")
            return False
        if not any(sides):
            return False
        img, mask = expand_arrays(self._img, self._mask, sides, self._fill, seed=self.history.index)
        keep = self.map_from_image(QPointF(0, 0))
        self._replace("Expand", img, mask, [a + b for a, b in zip(self._expansion, sides)])
        if not self._fit_mode:  # the old pixels stay where they were on screen
            self._offset = keep - QPointF(sides[0], sides[1]) * self._zoom
            self.update()
        return True

    def undo(self) -> bool:
        if self._drag == "paint":  # Ctrl+Z mid-stroke cancels just that stroke
            self._end_drag(commit=False)
            return True
        return self._step(self.history.undo(), forward=False)

    def redo(self) -> bool:
        if self._drag is not None:  # committing a stroke would drop the redo steps: cancel it
            self._end_drag(commit=False)
        return self._step(self.history.redo(), forward=True)

    def _step(self, entry: Entry | None, forward: bool) -> bool:
        if entry is None:
            return False
        self._end_drag(commit=False)
        layers = {"image": self._img, "mask": self._mask}
        resized = False
        for p in entry.patches if forward else reversed(entry.patches):
            apply_patch(layers, p, forward)
            resized |= p.y == WHOLE
        extra = entry.extra_after if forward else entry.extra_before
        if "expansion" in extra:
            self._expansion = list(extra["expansion"])
        if resized:
            self._preview = None
            self._set_layers(layers["image"], layers["mask"])
            if self._fit_mode:
                self.fit()
            self.imageChanged.emit()
        else:
            for p in entry.patches:
                self._refresh_overlay((p.y, p.y + p.after.shape[0], p.x, p.x + p.after.shape[1]))
        self.maskChanged.emit()
        self.historyChanged.emit()
        return True

    # -- tools and overlay --------------------------------------------------------------------------

    def tool(self) -> str:
        return self._tool

    def set_tool(self, name: str) -> None:
        if name not in TOOLS:
            raise ValueError(f"unknown tool {name!r}; one of {TOOLS}")
        if name != self._tool:
            self._finish_drag()
            self._tool = name
            self.toolChanged.emit(name)
            self.update()

    def brush_size(self) -> float:
        return self._size

    def set_brush_size(self, px: float) -> None:
        px = float(min(1024.0, max(1.0, px)))
        if px != self._size:
            self._size = px
            self.brushChanged.emit()
            self.update()

    def hardness(self) -> float:
        return self._hardness

    def set_hardness(self, h: float) -> None:
        self._hardness = float(min(1.0, max(0.0, h)))
        self.brushChanged.emit()

    def opacity(self) -> float:
        return self._opacity

    def set_opacity(self, o: float) -> None:
        self._opacity = float(min(1.0, max(0.01, o)))
        self.brushChanged.emit()

    def overlay_visible(self) -> bool:
        return self._ov_visible

    def set_overlay_visible(self, on: bool) -> None:
        self._ov_visible = bool(on)
        self.overlayChanged.emit()
        self.update()

    def overlay_opacity(self) -> float:
        return self._ov_opacity

    def overlay_color(self) -> QColor:
        return QColor(*self._ov_rgb)

    def set_overlay_color(self, color: QColor | str, opacity: float | None = None) -> None:
        c = QColor(color)
        self._ov_rgb = (c.red(), c.green(), c.blue())
        if opacity is not None:
            self._ov_opacity = float(min(1.0, max(0.0, opacity)))
        self._refresh_overlay()
        self.overlayChanged.emit()

    def show_preview(self, array: np.ndarray | None) -> None:
        """Draw a generation preview over the image (scaled to the canvas); None hides it."""
        self._preview = to_qimage(array) if array is not None else None
        self.update()

    def clear_preview(self) -> None:
        self.show_preview(None)

    # -- session support ------------------------------------------------------------------------

    def _session_state(self) -> tuple[np.ndarray, np.ndarray, list[int], History]:
        """Live (not copied) layers, expansion and history, for CanvasSession to save."""
        return self._img, self._mask, list(self._expansion), self.history

    def _restore_session(self, img: np.ndarray, mask: np.ndarray, expansion: list[int]) -> None:
        """Put saved layers back (the session fills `history` itself); not an undoable edit."""
        self._end_drag(commit=False)
        self._expansion = list(expansion)
        self._preview = None
        self._set_layers(img, mask)
        if self._fit_mode:
            self.fit()
        self.imageChanged.emit()
        self.maskChanged.emit()
        self.historyChanged.emit()
