"""Undo history for the mask canvas: bounding-box patches, bounded by step count and by bytes.

Plain numpy, no Qt. A brush stroke stores only the rectangle of pixels it changed (before and
after); only edits that change the canvas size (a new image, outpaint expansion) store whole layers.
The history can be written to and read from a flat dict of arrays (for `np.savez`) so an autosaved
session keeps its undo steps and position.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

WHOLE = -1  # y/x of a patch that replaces the whole layer (size changes)


@dataclass
class Patch:
    layer: str  # "image" or "mask"
    y: int  # top-left of the patch, or WHOLE
    x: int
    before: np.ndarray
    after: np.ndarray

    @property
    def nbytes(self) -> int:
        return self.before.nbytes + self.after.nbytes


@dataclass
class Entry:
    label: str
    patches: list[Patch] = field(default_factory=list)
    # canvas extras that change with the entry (outpaint expansion so far), before and after
    extra_before: dict = field(default_factory=dict)
    extra_after: dict = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.patches)


def diff_patch(layer: str, before: np.ndarray, after: np.ndarray, box=None) -> Patch | None:
    """The smallest rectangle where two same-sized layers differ, or None if they are equal.
    `box` (y0, y1, x0, x1) limits the search to where the edit can have changed anything."""
    if box is not None:
        by, bx = box[0], box[2]
        p = diff_patch(layer, before[box[0] : box[1], box[2] : box[3]], after[box[0] : box[1], box[2] : box[3]])
        if p is not None:
            p.y, p.x = p.y + by, p.x + bx
        return p
    ne = before != after
    if ne.ndim == 3:
        ne = ne.any(axis=2)
    rows = np.flatnonzero(ne.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(ne.any(axis=0))
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1
    return Patch(layer, y0, x0, before[y0:y1, x0:x1].copy(), after[y0:y1, x0:x1].copy())


def apply_patch(layers: dict[str, np.ndarray], patch: Patch, forward: bool) -> None:
    """Write a patch's `after` (forward) or `before` pixels into `layers` (in place, or replacing)."""
    data = patch.after if forward else patch.before
    if patch.y == WHOLE:
        layers[patch.layer] = data.copy()
    else:
        h, w = data.shape[:2]
        layers[patch.layer][patch.y : patch.y + h, patch.x : patch.x + w] = data


class History:
    """A linear undo/redo list: pushing after an undo drops the redo branch; oldest steps fall off
    when there are more than `max_steps` or their patches take more than `max_bytes`."""

    def __init__(self, max_steps: int = 50, max_bytes: int = 256 << 20) -> None:
        self.max_steps = max(1, int(max_steps))
        self.max_bytes = max(1, int(max_bytes))
        self.entries: list[Entry] = []
        self.index = 0  # entries[:index] are done, entries[index:] can be redone

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def nbytes(self) -> int:
        return sum(e.nbytes for e in self.entries)

    def can_undo(self) -> bool:
        return self.index > 0

    def can_redo(self) -> bool:
        return self.index < len(self.entries)

    def push(self, entry: Entry) -> None:
        del self.entries[self.index :]
        self.entries.append(entry)
        self.index = len(self.entries)
        self._trim()

    def undo(self) -> Entry | None:
        if not self.can_undo():
            return None
        self.index -= 1
        return self.entries[self.index]

    def redo(self) -> Entry | None:
        if not self.can_redo():
            return None
        self.index += 1
        return self.entries[self.index - 1]

    def clear(self) -> None:
        self.entries.clear()
        self.index = 0

    def _trim(self) -> None:
        total = self.nbytes
        while len(self.entries) > 1 and (len(self.entries) > self.max_steps or total > self.max_bytes):
            total -= self.entries.pop(0).nbytes
            self.index -= 1
        self.index = max(0, self.index)

    # -- persistence (for the autosaved session) --------------------------------------------------

    def to_arrays(self) -> dict[str, np.ndarray]:
        """A flat dict of arrays for `np.savez`: the patches plus a JSON index of the rest."""
        arrays: dict[str, np.ndarray] = {}
        entries: list[dict[str, Any]] = []
        meta = {"index": self.index, "entries": entries}
        for i, e in enumerate(self.entries):
            pm = []
            for j, p in enumerate(e.patches):
                arrays[f"b{i}_{j}"] = p.before
                arrays[f"a{i}_{j}"] = p.after
                pm.append([p.layer, p.y, p.x])
            entries.append({"label": e.label, "patches": pm, "eb": e.extra_before, "ea": e.extra_after})
        arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
        return arrays

    def load_arrays(self, arrays) -> None:
        meta = json.loads(bytes(np.asarray(arrays["meta"], dtype=np.uint8)).decode())
        entries = []
        for i, em in enumerate(meta["entries"]):
            patches = [
                Patch(layer, int(y), int(x), np.array(arrays[f"b{i}_{j}"]), np.array(arrays[f"a{i}_{j}"]))
                for j, (layer, y, x) in enumerate(em["patches"])
            ]
            entries.append(Entry(em["label"], patches, em.get("eb", {}), em.get("ea", {})))
        self.entries = entries
        self.index = min(max(0, int(meta["index"])), len(entries))
