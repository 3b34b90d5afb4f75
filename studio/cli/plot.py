"""`studio generate … --xyz FIELD=V1,V2 …`: the X/Y/Z plot from the command line. Every cell is run and
joins the gallery as its own image (one run id for the plot); the labelled grid, with its own
provenance listing the cells, is written to `--out`."""

from __future__ import annotations

import argparse
import json
import threading
import uuid
from pathlib import Path
from typing import Any

from studio.core import grid, xyz
from studio.core.request import GenerationRequest


def run_plot(args: argparse.Namespace, engine: Any, request: GenerationRequest, on_step) -> int:
    axes = [xyz.parse_axis(text) for text in args.xyz]
    cells = xyz.expand(request, axes)  # every cell checked before anything runs
    out = args.out.with_suffix(".png")
    cells_dir = out.with_name(f"{out.stem}-cells") if args.no_gallery else None
    plot_id = uuid.uuid4().hex
    images: dict[tuple[int, int, int], Any] = {}
    made: dict[tuple[int, int, int], dict[str, Any]] = {}
    status = "done"
    try:
        for n, cell in enumerate(cells, 1):
            result = engine.generate(cell.request, on_step=on_step(n, len(cells)), cancel=threading.Event())
            if result.cancelled or not result.images:
                status = "cancelled"
                break
            result.run_id = plot_id
            images[cell.index] = result.images[0]
            made[cell.index] = {"seeds": result.seeds, **_save_cell(result, cell, cells_dir, args.library)}
    except KeyboardInterrupt:
        _write(out, axes, cells, images, made)  # what was made is kept, in the gallery and in a partial grid
        raise
    path = _write(out, axes, cells, images, made)
    summary = {
        "status": status,
        "grid": str(path),
        "axes": [a.to_dict() for a in axes],
        "cells": [{"x": c.x, "y": c.y, "z": c.z, **made.get(c.index, {})} for c in cells],
    }
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(path)
    return 0


def _save_cell(result, cell: xyz.Cell, cells_dir: Path | None, library: Path | None) -> dict[str, Any]:
    """Into the gallery (its ids, files and hashes), or with --no-gallery beside the grid."""
    if cells_dir is None:
        from studio.core.gallery import record_result

        items = record_result(result, library=library)
        return {"gallery_ids": [i.id for i in items], "files": [str(i.path) for i in items],
                "sha256": [i.sha256 for i in items]}  # fmt: skip
    from studio.core.gallery.record import out_path_for, result_info
    from studio.core.metadata import write_png

    base = cells_dir / f"cell-{cell.x}-{cell.y}-{cell.z}.png"
    n = len(result.images)
    files = [
        write_png(out_path_for(base, i, n), im, result.request, result_info(result, i))
        for i, im in enumerate(result.images)
    ]
    return {"files": [str(f) for f in files]}


def _write(out: Path, axes, cells, images, made) -> Path:
    picture = grid.draw(axes, images, grid.cell_size(cells))
    return grid.write(out, picture, axes, cells, grid.provenance(axes, cells, made))
