"""What the gallery hands out: `GalleryItem` (one image and its recorded provenance), built from a
database row selected with `COLUMNS`."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from studio.core.errors import StudioError
from studio.core.metadata import recipe
from studio.core.request import GenerationRequest


@dataclass
class GalleryItem:
    id: str
    path: Path
    rel_path: str
    created_at: float
    kind: str
    model: str
    model_hash: str
    prompt: str
    negative_prompt: str
    loras: list[str]
    seed: int | None
    width: int | None
    height: int | None
    sha256: str
    size_bytes: int
    source_type: str
    signed: bool
    favourite: bool
    trashed: bool
    parent_id: str | None
    branch_run: str | None
    branch_step: int | None
    run_id: str
    batch_index: int
    tags: list[str] = field(default_factory=list)
    request_json: str = field(default="", repr=False)

    @property
    def request(self) -> GenerationRequest:
        return GenerationRequest.from_json(self.request_json)

    @property
    def is_composite(self) -> bool:
        return self.source_type == "compositeWithTrainedAlgorithmicMedia"

    @property
    def created(self) -> datetime:
        return datetime.fromtimestamp(self.created_at, timezone.utc)

    def describe(self) -> str:
        try:
            return recipe.describe(self.request)
        except StudioError:
            return self.prompt

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k != "request_json"}
        d["path"] = str(self.path)
        d["created"] = self.created.isoformat(timespec="seconds")
        try:
            d["request"] = self.request.to_dict()
        except StudioError:
            d["request"] = None
        return d


COLUMNS = (
    "seq, id, rel_path, created_at, kind, model, model_hash, prompt, negative_prompt, loras, seed, "
    "width, height, sha256, size_bytes, source_type, signed, favourite, trashed_at, parent_id, "
    "branch_run, branch_step, run_id, batch_index, request_json"
)


def item_from_row(root: Path, row: sqlite3.Row, tags: list[str] | None = None) -> GalleryItem:
    """A `GalleryItem` from an `items` row selected with `COLUMNS`."""
    return GalleryItem(
        id=row["id"], path=root / row["rel_path"], rel_path=row["rel_path"],
        created_at=row["created_at"], kind=row["kind"], model=row["model"],
        model_hash=row["model_hash"], prompt=row["prompt"],
        negative_prompt=row["negative_prompt"],
        loras=[x for x in row["loras"].split("\n") if x], seed=row["seed"],
        width=row["width"], height=row["height"], sha256=row["sha256"],
        size_bytes=row["size_bytes"], source_type=row["source_type"],
        signed=bool(row["signed"]), favourite=bool(row["favourite"]),
        trashed=row["trashed_at"] is not None, parent_id=row["parent_id"],
        branch_run=row["branch_run"], branch_step=row["branch_step"], run_id=row["run_id"],
        batch_index=row["batch_index"], tags=tags or [], request_json=row["request_json"],
    )  # fmt: skip


def item_json(item: GalleryItem) -> str:
    return json.dumps(item.to_dict(), ensure_ascii=False, indent=2)
