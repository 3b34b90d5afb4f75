"""The X/Y/Z plot's picture: the cells' images in a grid with the axis titles and values drawn on it
(Pillow; no Qt, no torch), and the PNG that carries it with its own provenance listing the cells.

Layout, as A1111 draws it: one sub-grid per Z value, side by side, each titled "Z title: value";
column headers "X title: value" above, row headers "Y title: value" on the left. A cell not made yet
(the window fills the grid in as cells finish) is a grey square.
"""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

from studio.core.xyz import Axis, Cell, shape

GRID_KEY = "studio-grid"  # iTXt: {"axes": [...], "cells": [...]} — the plot's own provenance
EMPTY = (58, 58, 62)
BACKGROUND = (255, 255, 255)
INK = (20, 20, 20)
COMPOSITE_SYNTHETIC = "compositeSynthetic"  # IPTC: a composite of elements that are all synthetic


@dataclass
class GridLayout:
    cell_w: int
    cell_h: int
    left: int  # width of the row-header column
    top: int  # height of the column-header row (plus the Z title row)
    z_title: int  # height of the Z title row (0 without a Z axis)
    gap: int  # between Z sub-grids
    cols: int
    rows: int
    subgrids: int
    font: Any = field(repr=False, default=None)

    @property
    def size(self) -> tuple[int, int]:
        sub_w = self.left + self.cols * self.cell_w
        return sub_w * self.subgrids + self.gap * (self.subgrids - 1), self.top + self.rows * self.cell_h

    def cell_box(self, x: int, y: int, z: int) -> tuple[int, int]:
        sub_w = self.left + self.cols * self.cell_w + self.gap
        return z * sub_w + self.left + x * self.cell_w, self.top + y * self.cell_h


Font = ImageFont.FreeTypeFont | ImageFont.ImageFont


def _font(size: int) -> Font:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):  # Pillow without FreeType: the bitmap font
        return ImageFont.load_default()


def _wrap(draw: ImageDraw.ImageDraw, text: str, font: Font, width: int, max_lines: int = 3) -> list[str]:
    words, lines, line = text.split(), [], ""
    for word in words:
        trial = f"{line} {word}".strip()
        if draw.textlength(trial, font=font) <= width or not line:
            line = trial
        else:
            lines.append(line)
            line = word
    if line:
        lines.append(line)
    if len(lines) > max_lines:
        lines = lines[: max_lines - 1] + [" ".join(lines[max_lines - 1 :])]
    while lines and draw.textlength(lines[-1], font=font) > width and len(lines[-1]) > 2:
        lines[-1] = lines[-1][:-2] + "…"
    return lines or [""]


def label(axis: Axis | None, i: int) -> str:
    return f"{axis.title}: {axis.labels[i]}" if axis is not None else ""


def layout(axes: Sequence[Axis], cell: tuple[int, int]) -> GridLayout:
    cols, rows, subgrids = shape(axes)
    w, h = cell
    size = max(12, min(28, w // 9))
    font = _font(size)
    line = size + 6
    has_y = len(axes) >= 2
    left = max(96, min(w, 260)) if has_y else 0
    top = 3 * line + 8
    z_title = line + 8 if len(axes) == 3 else 0
    return GridLayout(w, h, left, top + z_title, z_title, 24 if subgrids > 1 else 0, cols, rows, subgrids, font)


def draw(axes: Sequence[Axis], images: dict[tuple[int, int, int], np.ndarray], cell: tuple[int, int]) -> np.ndarray:
    """The plot as an (H, W, 3) uint8 picture; `images[(x, y, z)]` is each finished cell's image
    (resized to `cell` when it differs), missing cells drawn empty."""
    lay = layout(axes, cell)
    canvas = Image.new("RGB", lay.size, BACKGROUND)
    pen = ImageDraw.Draw(canvas)
    font = lay.font
    line = font.size + 6 if hasattr(font, "size") else 14
    padded = list(axes) + [None] * (3 - len(axes))
    for z in range(lay.subgrids):
        ox = lay.cell_box(0, 0, z)[0] - lay.left
        if padded[2] is not None:
            pen.text((ox + lay.left + 4, 4), label(padded[2], z), fill=INK, font=font)
        for x in range(lay.cols):
            cx, _ = lay.cell_box(x, 0, z)
            lines = _wrap(pen, label(padded[0], x), font, lay.cell_w - 8)
            y0 = lay.top - 4 - line * len(lines)
            for k, text in enumerate(lines):
                tw = pen.textlength(text, font=font)
                pen.text((cx + (lay.cell_w - tw) / 2, y0 + k * line), text, fill=INK, font=font)
        for y in range(lay.rows):
            _, cy = lay.cell_box(0, y, z)
            if padded[1] is not None:
                lines = _wrap(pen, label(padded[1], y), font, lay.left - 10, max_lines=6)
                top = cy + (lay.cell_h - line * len(lines)) / 2
                for k, text in enumerate(lines):
                    tw = pen.textlength(text, font=font)
                    pen.text((ox + lay.left - 6 - tw, top + k * line), text, fill=INK, font=font)
            for x in range(lay.cols):
                cx, _ = lay.cell_box(x, y, z)
                img = images.get((x, y, z))
                if img is None:
                    pen.rectangle((cx, cy, cx + lay.cell_w - 1, cy + lay.cell_h - 1), fill=EMPTY)
                    continue
                tile = Image.fromarray(np.ascontiguousarray(img[..., :3]))
                if tile.size != (lay.cell_w, lay.cell_h):
                    tile = tile.resize((lay.cell_w, lay.cell_h), Image.Resampling.LANCZOS)
                canvas.paste(tile, (cx, cy))
    picture: np.ndarray = np.asarray(canvas).copy()
    return picture


def cell_size(cells: Sequence[Cell]) -> tuple[int, int]:
    """The size every cell is drawn at: the largest cell's (a size axis gives cells of several sizes)."""
    return max(c.request.width for c in cells), max(c.request.height for c in cells)


def provenance(
    axes: Sequence[Axis], cells: Sequence[Cell], made: dict[tuple[int, int, int], dict[str, Any]]
) -> dict[str, Any]:
    """The plot's own record: its axes and, per cell, where it sits, its values, its recipe, and what it
    became (`made[(x, y, z)]`: gallery id, file, SHA-256, seed — whatever the caller knows)."""
    padded = list(axes) + [None] * (3 - len(axes))
    out_cells = []
    for c in cells:
        values = {a.key + (f":{a.arg}" if a.arg else ""): a.values[i] for a, i in zip(padded, c.index) if a is not None}
        out_cells.append(
            {"x": c.x, "y": c.y, "z": c.z, "values": values, "request": c.request.to_dict(), **made.get(c.index, {})}
        )
    return {"axes": [a.to_dict() for a in axes], "cells": out_cells}


def encode(picture: np.ndarray, axes: Sequence[Axis], cells: Sequence[Cell], record: dict[str, Any]) -> bytes:
    """The grid PNG: A1111's `parameters` (the first cell's, plus the axes, as A1111's grids carry the
    first image's), the `studio-grid` record, and the XMP label (a composite of synthetic images)."""
    from studio import __version__
    from studio.core.metadata import infotext, recipe
    from studio.core.metadata.xmp import build_xmp

    first = cells[0].request
    params = recipe.a1111_params(first, {"sign": False})
    params.pop("Version", None)
    for name, axis in zip("XYZ", axes):
        params[f"{name} Type"] = axis.title
        params[f"{name} Values"] = ", ".join(axis.labels)
    params["Version"] = f"{recipe.SOFTWARE} {__version__}"
    text = json.dumps(record, ensure_ascii=False)
    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", infotext.build(first.prompt, first.negative_prompt, params))
    info.add_itxt(GRID_KEY, text)
    info.add_itxt(
        "XML:com.adobe.xmp",
        build_xmp(
            COMPOSITE_SYNTHETIC,
            software=recipe.SOFTWARE,
            software_version=__version__,
            model=recipe.model_display_name(first),
            prompt=first.prompt,
            created=recipe.created_at(None),
        ),
    )
    buf = io.BytesIO()
    Image.fromarray(picture).save(buf, "PNG", pnginfo=info, compress_level=4)
    return buf.getvalue()


def write(
    path: str | Path, picture: np.ndarray, axes: Sequence[Axis], cells: Sequence[Cell], record: dict[str, Any]
) -> Path:
    """Write the grid PNG atomically."""
    from studio.core.files import atomic_write

    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(p, encode(picture, axes, cells, record))
    return p


def read_record(path: str | Path) -> dict[str, Any] | None:
    """A grid file's `studio-grid` record (None when the file has none)."""
    from studio.core.metadata.png import read_png_metadata

    texts = read_png_metadata(Path(path).read_bytes()).texts
    return json.loads(texts[GRID_KEY]) if GRID_KEY in texts else None
