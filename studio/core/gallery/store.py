"""The gallery store: a library folder of images plus one SQLite database describing them.

Saving an image never leaves a half-written file or a row without its file:

1. the complete file (pixels + all provenance) is encoded in memory and hashed;
2. a row in state `pending` (path, hash, writer pid) is committed — the intent;
3. the bytes go to a temp file beside the target, which is fsynced and renamed into place;
4. the row becomes `ok` (and searchable) in a second commit.

A writer killed at any point leaves at most a pending row and/or a temp file from a process that no
longer exists. Opening the gallery rolls those forward (the file is there with the recorded hash)
or back (it is not), so `check()` afterwards is clean. Trash moves files into `.trash/` and back;
anything a crash leaves out of step there is found by `check()` and relinked by `check(repair=True)`
using the file hashes.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from studio.core import paths
from studio.core.errors import GalleryError, GalleryItemNotFound, ProvenanceError, StudioError
from studio.core.gallery.schema import DB_NAME, KINDS, connect
from studio.core.hashing import sha256_bytes, sha256_file
from studio.core.metadata import recipe
from studio.core.files import TEMP_SUFFIX, atomic_write, fsync_dir
from studio.core.metadata.png import encode_png
from studio.core.request import GenerationRequest

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
TRASH_DIR = ".trash"
THUMBS_DIR = ".thumbs"
STALE_PENDING_S = 600.0
_TEMP_RE = re.compile(r"^\..+\.(\d+)\.[^.]+" + re.escape(TEMP_SUFFIX) + "$")


def _pid_alive(pid: int | None) -> bool:
    if not pid or pid <= 0:
        return False
    if pid == os.getpid():
        return True
    if os.name == "nt":  # no cheap liveness probe; rely on the age test
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


@dataclass
class CheckReport:
    """What `Gallery.check()` found (and, with repair, did)."""

    missing: list[str] = field(default_factory=list)  # item ids whose file is gone
    orphans: list[str] = field(default_factory=list)  # library files no row knows
    bad_hashes: list[str] = field(default_factory=list)  # item ids whose file changed
    temp_files: list[str] = field(default_factory=list)  # abandoned half-written files
    pending: list[str] = field(default_factory=list)  # saves that never finished
    repaired: list[str] = field(default_factory=list)
    checked: int = 0

    @property
    def clean(self) -> bool:
        return not (self.missing or self.orphans or self.bad_hashes or self.temp_files or self.pending)

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "clean": self.clean}

    def summary(self) -> str:
        if self.clean:
            text = f"gallery is clean ({self.checked} images checked)"
        else:
            parts = [
                f"{len(v)} {label}"
                for label, v in (
                    ("missing files", self.missing),
                    ("orphan files", self.orphans),
                    ("files with a changed hash", self.bad_hashes),
                    ("abandoned temp files", self.temp_files),
                    ("unfinished saves", self.pending),
                )
                if v
            ]
            text = f"{self.checked} images checked: " + ", ".join(parts)
        if self.repaired:
            text += f"; repaired {len(self.repaired)}"
        return text


_COLUMNS = (
    "seq, id, rel_path, created_at, kind, model, model_hash, prompt, negative_prompt, loras, seed, "
    "width, height, sha256, size_bytes, source_type, signed, favourite, trashed_at, parent_id, "
    "branch_run, branch_step, run_id, batch_index, request_json"
)


def fts_query(text: str) -> str:
    """User words → an FTS5 query: every word must match (as a prefix), punctuation ignored."""
    words = re.findall(r"\w+", text, flags=re.UNICODE)
    return " ".join(f'"{w}"*' for w in words)


class Gallery:
    """One library folder and its database. Thread-safe; cheap to open."""

    def __init__(self, library: str | os.PathLike[str] | None = None) -> None:
        self.root = Path(library) if library else paths.library_dir()
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise GalleryError(f"cannot create the library folder {self.root}: {exc}") from None
        self.db_path = self.root / DB_NAME
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = connect(str(self.db_path))
        self.recover()

    # -- plumbing --------------------------------------------------------------------------------------
    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise GalleryError("the gallery is closed")
        return self._conn

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> Gallery:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            conn = self.conn
            try:
                conn.execute("BEGIN IMMEDIATE")
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    def _index(self, conn: sqlite3.Connection, seq: int) -> None:
        conn.execute("DELETE FROM items_fts WHERE rowid = ?", (seq,))
        conn.execute(
            "INSERT INTO items_fts (rowid, prompt, negative_prompt, model, loras, tags) "
            "SELECT seq, prompt, negative_prompt, model, loras, "
            "coalesce((SELECT group_concat(tag, ' ') FROM tags WHERE item_id = items.id), '') "
            "FROM items WHERE seq = ? AND state = 'ok'",
            (seq,),
        )

    def _item(self, row: sqlite3.Row, tags: list[str] | None = None) -> GalleryItem:
        return GalleryItem(
            id=row["id"], path=self.root / row["rel_path"], rel_path=row["rel_path"],
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

    def _tags_for(self, ids: list[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for r in self.conn.execute(
                f"SELECT item_id, tag FROM tags WHERE item_id IN ({marks}) ORDER BY tag", chunk
            ):
                out.setdefault(r[0], []).append(r[1])
        return out

    # -- saving -----------------------------------------------------------------------------------------
    def _resolve_parent(self, request: GenerationRequest, parent_id: str | None) -> str | None:
        if parent_id:
            return self.get(parent_id).id
        if request.init_image is not None:
            conn = self.conn
            if request.init_image.sha256:
                row = conn.execute(
                    "SELECT id FROM items WHERE sha256 = ? AND state = 'ok' LIMIT 1",
                    (request.init_image.sha256.lower(),),
                ).fetchone()
                if row:
                    return str(row[0])
            try:
                rel = str(Path(request.init_image.path).resolve().relative_to(self.root.resolve()))
            except (ValueError, OSError):
                return None
            row = conn.execute("SELECT id FROM items WHERE rel_path = ?", (rel,)).fetchone()
            return str(row[0]) if row else None
        return None

    def add_image(
        self,
        image: np.ndarray,
        request: GenerationRequest,
        *,
        info: dict[str, Any] | None = None,
        parent_id: str | None = None,
        run_id: str = "",
        batch_index: int = 0,
        out_path: str | os.PathLike[str] | None = None,
    ) -> GalleryItem:
        """Save one image with all its provenance and record it. Returns the new item."""
        info = dict(info or {})
        created = recipe.created_at(info)
        info["created"] = created
        info.setdefault("batch_index", batch_index)
        item_id = uuid.uuid4().hex
        kind = recipe.kind_of(request, info)
        stamp = created.astimezone()
        seed = recipe.image_seed(request, info)
        rel_path = f"{stamp:%Y-%m}/{stamp:%Y%m%d-%H%M%S}-{seed}-{item_id[:8]}.png"
        try:
            data = encode_png(image, request, info, title=Path(rel_path).name)
        except ProvenanceError as exc:
            # Never lose the image over a signing problem: save it without the C2PA manifest
            # (the text provenance and XMP label are still written) and say so.
            log.warning("saving without content credentials: %s", exc)
            info["sign"] = False
            data = encode_png(image, request, info, title=Path(rel_path).name)
        sha = sha256_bytes(data)
        model_sha = recipe.model_sha256(request, info)
        parent = self._resolve_parent(request, parent_id)
        values = {
            "id": item_id, "rel_path": rel_path, "created_at": created.timestamp(), "kind": kind,
            "model": recipe.model_display_name(request, info), "model_hash": model_sha,
            "prompt": request.prompt, "negative_prompt": request.negative_prompt,
            "loras": "\n".join(lo.name for lo in request.loras), "seed": seed,
            "width": request.width, "height": request.height, "request_json": request.to_json(),
            "sha256": sha, "size_bytes": len(data), "source_type": recipe.source_type_of(request),
            "signed": int(bool(info.get("sign", True))), "parent_id": parent,
            "branch_run": request.branch.parent_id if request.branch else None,
            "branch_step": request.branch.step if request.branch else None,
            "run_id": run_id, "batch_index": int(info["batch_index"]), "state": "pending",
            "writer_pid": os.getpid(),
        }  # fmt: skip
        cols = ", ".join(values)
        marks = ", ".join(f":{k}" for k in values)
        with self._tx() as conn:
            conn.execute(f"INSERT INTO items ({cols}) VALUES ({marks})", values)
        target = self.root / rel_path
        try:
            atomic_write(target, data)
        except OSError as exc:
            with self._tx() as conn:
                conn.execute("DELETE FROM items WHERE id = ?", (item_id,))
            raise GalleryError(f"could not save the image to {target}: {exc}") from None
        with self._tx() as conn:
            conn.execute("UPDATE items SET state = 'ok', writer_pid = NULL WHERE id = ?", (item_id,))
            seq = conn.execute("SELECT seq FROM items WHERE id = ?", (item_id,)).fetchone()[0]
            self._index(conn, seq)
        if out_path is not None:
            write_copy(out_path, data, request, info)
        return self.get(item_id)

    def add_file(self, path: str | os.PathLike[str]) -> GalleryItem:
        """Record an image already inside the library that carries this studio's recipe."""
        from studio.core.metadata import read_metadata

        p = Path(path)
        rel = str(p.resolve().relative_to(self.root.resolve())).replace(os.sep, "/")
        meta = read_metadata(p)
        if meta.request is None or meta.source != "studio":
            raise GalleryError(f"{p.name} does not carry this studio's recipe")
        req = meta.request
        st = p.stat()
        sha = sha256_file(p)
        item_id = uuid.uuid4().hex
        trashed = rel.startswith(TRASH_DIR + "/")
        with self._tx() as conn:
            conn.execute(
                "INSERT INTO items (id, rel_path, created_at, kind, model, model_hash, prompt, "
                "negative_prompt, loras, seed, width, height, request_json, sha256, size_bytes, "
                "source_type, signed, trashed_at, branch_run, branch_step, batch_index) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    item_id, rel, st.st_mtime, recipe.kind_of(req), recipe.model_display_name(req),
                    meta.normalised.get("model_hash") or "", req.prompt, req.negative_prompt,
                    "\n".join(lo.name for lo in req.loras), meta.normalised.get("seed", req.seed),
                    req.width, req.height,
                    req.to_json(), sha, st.st_size, recipe.source_type_of(req), int(meta.has_c2pa),
                    time.time() if trashed else None,
                    req.branch.parent_id if req.branch else None,
                    req.branch.step if req.branch else None,
                    meta.batch_index,
                ),
            )  # fmt: skip
            seq = conn.execute("SELECT seq FROM items WHERE id = ?", (item_id,)).fetchone()[0]
            self._index(conn, seq)
        return self.get(item_id)

    # -- reading ----------------------------------------------------------------------------------------
    def get(self, item_id: str) -> GalleryItem:
        """An item by id or by a unique id prefix (at least 4 characters)."""
        key = (item_id or "").strip().lower()
        with self._lock:
            rows = []
            if len(key) >= 4 and re.fullmatch(r"[0-9a-f]+", key):
                rows = self.conn.execute(
                    f"SELECT {_COLUMNS} FROM items WHERE state = 'ok' AND id >= ? AND id < ? LIMIT 2",
                    (key, key + "g"),
                ).fetchall()
            if not rows:
                raise GalleryItemNotFound(f"no gallery image with id {item_id!r}")
            if len(rows) > 1 and rows[0]["id"] != key:
                raise GalleryItemNotFound(
                    f"id {item_id!r} matches more than one image", "Give more of the id."
                )
            return self._item(rows[0], self._tags_for([rows[0]["id"]]).get(rows[0]["id"], []))

    def _where(
        self,
        text: str | None,
        model: str | None,
        kind: str | None,
        favourite: bool | None,
        since: float | datetime | None,
        until: float | datetime | None,
        tag: str | None,
        trashed: bool,
    ) -> tuple[str, str, list[Any]]:
        join, where, args = "", ["items.state = 'ok'"], []
        if text and fts_query(text):
            join = "JOIN items_fts ON items_fts.rowid = items.seq AND items_fts MATCH ?"
            args.append(fts_query(text))
        where.append("items.trashed_at IS NOT NULL" if trashed else "items.trashed_at IS NULL")
        if model:
            where.append("items.model = ?")
            args.append(model)
        if kind:
            if kind not in KINDS:
                raise GalleryError(f"unknown kind {kind!r}; choose one of {', '.join(KINDS)}")
            where.append("items.kind = ?")
            args.append(kind)
        if favourite is not None:
            where.append("items.favourite = ?")
            args.append(int(favourite))
        for bound, op in ((since, ">="), (until, "<")):
            if bound is not None:
                where.append(f"items.created_at {op} ?")
                args.append(bound.timestamp() if isinstance(bound, datetime) else float(bound))
        if tag:
            where.append("EXISTS (SELECT 1 FROM tags WHERE tags.item_id = items.id AND tag = ?)")
            args.append(tag)
        return join, " AND ".join(where), args

    def query(
        self,
        text: str | None = None,
        *,
        model: str | None = None,
        kind: str | None = None,
        favourite: bool | None = None,
        since: float | datetime | None = None,
        until: float | datetime | None = None,
        tag: str | None = None,
        trashed: bool = False,
        sort: str = "newest",
        limit: int | None = None,
        offset: int = 0,
    ) -> list[GalleryItem]:
        """Items matching full-text `text` (prompt, negative prompt, model, LoRAs, tags) and filters."""
        join, where, args = self._where(text, model, kind, favourite, since, until, tag, trashed)
        order = "DESC" if sort == "newest" else "ASC"
        sql = (
            f"SELECT {', '.join('items.' + c.strip() for c in _COLUMNS.split(','))} FROM items "
            f"{join} WHERE {where} ORDER BY items.created_at {order}, items.seq {order}"
        )
        if limit is not None:
            sql += " LIMIT ? OFFSET ?"
            args += [int(limit), int(offset)]
        with self._lock:
            try:
                rows = self.conn.execute(sql, args).fetchall()
            except sqlite3.OperationalError as exc:
                raise GalleryError(f"the search could not run: {exc}") from None
            tags = self._tags_for([r["id"] for r in rows])
        return [self._item(r, tags.get(r["id"], [])) for r in rows]

    def search(self, text: str, **filters: Any) -> list[GalleryItem]:
        return self.query(text, **filters)

    def ids(self, text: str | None = None, **filters: Any) -> list[str]:
        """Just the ids, newest first — what a lazily filled view needs up front."""
        sort = filters.pop("sort", "newest")
        join, where, args = self._where(
            text, filters.get("model"), filters.get("kind"), filters.get("favourite"),
            filters.get("since"), filters.get("until"), filters.get("tag"),
            bool(filters.get("trashed", False)),
        )  # fmt: skip
        order = "DESC" if sort == "newest" else "ASC"
        with self._lock:
            rows = self.conn.execute(
                f"SELECT items.id FROM items {join} WHERE {where} "
                f"ORDER BY items.created_at {order}, items.seq {order}",
                args,
            ).fetchall()
        return [r[0] for r in rows]

    def get_many(self, ids: Iterable[str]) -> dict[str, GalleryItem]:
        wanted = list(ids)
        out: dict[str, GalleryItem] = {}
        with self._lock:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = self.conn.execute(
                    f"SELECT {_COLUMNS} FROM items WHERE id IN ({marks})", chunk
                ).fetchall()
                tags = self._tags_for([r["id"] for r in rows])
                out.update({r["id"]: self._item(r, tags.get(r["id"], [])) for r in rows})
        return out

    def count(self, text: str | None = None, **filters: Any) -> int:
        return len(self.ids(text, **filters))

    def models(self) -> list[str]:
        with self._lock:
            return [
                r[0]
                for r in self.conn.execute(
                    "SELECT DISTINCT model FROM items WHERE state = 'ok' ORDER BY model"
                )
            ]

    # -- favourites, tags --------------------------------------------------------------------------------
    def set_favourite(self, item_id: str, favourite: bool = True) -> None:
        item = self.get(item_id)
        with self._tx() as conn:
            conn.execute("UPDATE items SET favourite = ? WHERE id = ?", (int(favourite), item.id))

    def add_tags(self, item_id: str, *tags: str) -> None:
        item = self.get(item_id)
        with self._tx() as conn:
            for tag in tags:
                tag = tag.strip()
                if tag:
                    conn.execute("INSERT OR IGNORE INTO tags VALUES (?, ?)", (item.id, tag))
            self._reindex_id(conn, item.id)

    def remove_tags(self, item_id: str, *tags: str) -> None:
        item = self.get(item_id)
        with self._tx() as conn:
            conn.executemany(
                "DELETE FROM tags WHERE item_id = ? AND tag = ?", [(item.id, t) for t in tags]
            )
            self._reindex_id(conn, item.id)

    def _reindex_id(self, conn: sqlite3.Connection, item_id: str) -> None:
        seq = conn.execute("SELECT seq FROM items WHERE id = ?", (item_id,)).fetchone()[0]
        self._index(conn, seq)

    # -- trash --------------------------------------------------------------------------------------------
    def _move(self, item: GalleryItem, new_rel: str, trashed_at: float | None) -> None:
        src, dst = self.root / item.rel_path, self.root / new_rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        with self._tx() as conn:
            conn.execute(
                "UPDATE items SET rel_path = ?, trashed_at = ? WHERE id = ?",
                (new_rel, trashed_at, item.id),
            )
            try:
                os.replace(src, dst)
            except OSError as exc:
                raise GalleryError(f"could not move {src.name}: {exc}") from None
            fsync_dir(dst.parent)

    def trash(self, item_id: str) -> None:
        """Move an image to the library's trash (recoverable until the trash is emptied)."""
        item = self.get(item_id)
        if not item.trashed:
            self._move(item, f"{TRASH_DIR}/{item.rel_path}", time.time())

    def restore(self, item_id: str) -> None:
        item = self.get(item_id)
        if item.trashed:
            self._move(item, item.rel_path.removeprefix(TRASH_DIR + "/"), None)

    def empty_trash(self) -> int:
        """Delete trashed images for good. Returns how many."""
        items = self.query(trashed=True)
        for item in items:
            try:
                item.path.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:
                raise GalleryError(f"could not delete {item.path}: {exc}") from None
            self._forget(item.id)
        return len(items)

    def _forget(self, item_id: str) -> None:
        with self._tx() as conn:
            row = conn.execute("SELECT seq FROM items WHERE id = ?", (item_id,)).fetchone()
            if row:
                conn.execute("DELETE FROM items_fts WHERE rowid = ?", (row[0],))
                conn.execute("DELETE FROM items WHERE id = ?", (item_id,))
        thumb = self.root / THUMBS_DIR / f"{item_id}.jpg"
        thumb.unlink(missing_ok=True)

    # -- lineage ------------------------------------------------------------------------------------------
    def _branch_parent(self, item: GalleryItem) -> GalleryItem | None:
        if not item.branch_run:
            return None
        with self._lock:
            row = self.conn.execute(
                f"SELECT {_COLUMNS} FROM items WHERE state = 'ok' AND (id = ? OR run_id = ?) "
                "ORDER BY batch_index LIMIT 1",
                (item.branch_run, item.branch_run),
            ).fetchone()
        return self._item(row) if row else None

    def parent(self, item_id: str) -> GalleryItem | None:
        item = self.get(item_id)
        if item.parent_id:
            try:
                return self.get(item.parent_id)
            except GalleryItemNotFound:
                return None
        return self._branch_parent(item)

    def lineage(self, item_id: str, limit: int = 100) -> list[GalleryItem]:
        """The item and its ancestors (input image or branched-from run), nearest first."""
        chain = [self.get(item_id)]
        seen = {chain[0].id}
        while len(chain) < limit:
            nxt = self.parent(chain[-1].id)
            if nxt is None or nxt.id in seen:
                break
            chain.append(nxt)
            seen.add(nxt.id)
        return chain

    def children(self, item_id: str) -> list[GalleryItem]:
        item = self.get(item_id)
        keys = [item.id] + ([item.run_id] if item.run_id else [])
        with self._lock:
            rows = self.conn.execute(
                f"SELECT {_COLUMNS} FROM items WHERE state = 'ok' AND (parent_id = ? OR branch_run "
                f"IN ({','.join('?' * len(keys))})) ORDER BY created_at",
                [item.id, *keys],
            ).fetchall()
        return [self._item(r) for r in rows if r["id"] != item.id]

    # -- thumbnails ---------------------------------------------------------------------------------------
    def thumbnail(self, item_id: str, size: int = 256) -> Path:
        """A cached JPEG thumbnail (longest side `size`), made on first request."""
        item = self.get(item_id) if len(item_id) != 32 else None
        key = item.id if item else item_id
        thumb = self.root / THUMBS_DIR / f"{key}.jpg"
        if thumb.exists():
            return thumb
        if item is None:
            item = self.get(item_id)
        return make_thumbnail(item.path, thumb, size)

    # -- recovery and checking ----------------------------------------------------------------------------
    def recover(self) -> list[str]:
        """Finish or undo saves whose writer died. Returns what was done."""
        done: list[str] = []
        now = time.time()
        with self._lock:
            rows = self.conn.execute(
                "SELECT id, seq, rel_path, sha256, writer_pid, created_at FROM items "
                "WHERE state = 'pending'"
            ).fetchall()
        for row in rows:
            if _pid_alive(row["writer_pid"]) and now - row["created_at"] < STALE_PENDING_S:
                continue
            path = self.root / row["rel_path"]
            ok = path.is_file() and sha256_file(path) == row["sha256"]
            with self._tx() as conn:
                if ok:
                    conn.execute(
                        "UPDATE items SET state = 'ok', writer_pid = NULL WHERE id = ?", (row["id"],)
                    )
                    self._index(conn, row["seq"])
                    done.append(f"finished interrupted save {row['rel_path']}")
                else:
                    conn.execute("DELETE FROM items WHERE id = ?", (row["id"],))
                    done.append(f"dropped interrupted save {row['rel_path']}")
        for tmp in self._temp_files():
            tmp.unlink(missing_ok=True)
            done.append(f"removed temp file {tmp.relative_to(self.root)}")
        return done

    def _temp_files(self, all_writers: bool = False) -> list[Path]:
        out = []
        for tmp in self.root.rglob(f".*{TEMP_SUFFIX}"):
            m = _TEMP_RE.match(tmp.name)
            if m and (all_writers or not _pid_alive(int(m.group(1)))):
                out.append(tmp)
        return out

    def _library_files(self) -> Iterator[str]:
        for dirpath, dirnames, filenames in os.walk(self.root):
            rel_dir = os.path.relpath(dirpath, self.root)
            if rel_dir == ".":
                dirnames[:] = [d for d in dirnames if d != THUMBS_DIR]
            for name in filenames:
                if name.startswith(".") or not name.lower().endswith(IMAGE_SUFFIXES):
                    continue
                rel = name if rel_dir == "." else f"{rel_dir}/{name}"
                yield rel.replace(os.sep, "/")

    def check(self, repair: bool = False, verify_hashes: bool = True) -> CheckReport:
        """Compare files with rows: missing files, orphan files, changed hashes, leftovers.

        With `repair`: abandoned temp files are removed, interrupted saves finished or dropped,
        files that moved (same hash) relinked, orphan files carrying this studio's recipe
        recorded, and rows whose file is gone dropped. Changed files are only reported.
        """
        report = CheckReport()
        if repair:
            report.repaired += self.recover()
        with self._lock:
            rows = self.conn.execute(
                "SELECT id, rel_path, sha256, state, writer_pid FROM items"
            ).fetchall()
        by_path = {r["rel_path"]: r for r in rows}
        report.pending = [
            r["id"] for r in rows if r["state"] == "pending" and not _pid_alive(r["writer_pid"])
        ]
        report.temp_files = [str(p.relative_to(self.root)) for p in self._temp_files()]
        files = set(self._library_files())
        for r in rows:
            if r["state"] != "ok":
                continue
            report.checked += 1
            path = self.root / r["rel_path"]
            if r["rel_path"] not in files:
                report.missing.append(r["id"])
            elif verify_hashes and sha256_file(path) != r["sha256"]:
                report.bad_hashes.append(r["id"])
        pending_paths = {r["rel_path"] for r in rows if r["state"] == "pending"}
        report.orphans = sorted(f for f in files if f not in by_path and f not in pending_paths)
        if repair:
            self._repair(report, {r["id"]: r for r in rows})
        return report

    def _repair(self, report: CheckReport, rows: dict[str, sqlite3.Row]) -> None:
        missing_by_sha = {rows[i]["sha256"]: i for i in report.missing}
        still_orphans = []
        for rel in report.orphans:
            path = self.root / rel
            sha = sha256_file(path)
            if sha in missing_by_sha:
                item_id = missing_by_sha.pop(sha)
                with self._tx() as conn:
                    conn.execute(
                        "UPDATE items SET rel_path = ?, trashed_at = CASE WHEN ? THEN "
                        "coalesce(trashed_at, ?) ELSE NULL END WHERE id = ?",
                        (rel, rel.startswith(TRASH_DIR + "/"), time.time(), item_id),
                    )
                report.missing.remove(item_id)
                report.repaired.append(f"relinked {item_id[:12]} to {rel}")
                continue
            try:
                item = self.add_file(path)
                report.repaired.append(f"recorded {rel} as {item.id[:12]}")
            except StudioError:
                still_orphans.append(rel)
        report.orphans = still_orphans
        for item_id in list(report.missing):
            self._forget(item_id)
            report.missing.remove(item_id)
            report.repaired.append(f"dropped row {item_id[:12]} (file gone)")
        report.pending = []
        report.temp_files = []


def make_thumbnail(src: Path, dest: Path, size: int = 256) -> Path:
    from PIL import Image

    try:
        with Image.open(src) as im:
            im.draft("RGB", (size, size))
            im.thumbnail((size, size))
            rgb = im.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise GalleryError(f"cannot make a thumbnail of {src.name}: {exc}") from None
    import io

    buf = io.BytesIO()
    rgb.save(buf, "JPEG", quality=85)
    return atomic_write(dest, buf.getvalue())


def write_copy(
    out_path: str | os.PathLike[str],
    png_bytes: bytes,
    request: GenerationRequest,
    info: dict[str, Any],
) -> Path:
    """Write the same image (same provenance) to a user-chosen path; JPEG/WebP by suffix."""
    target = Path(out_path)
    suffix = target.suffix.lower()
    if suffix in ("", ".png"):
        data = png_bytes
        target = target if suffix else target.with_suffix(".png")
    else:
        from studio.core.metadata.export import FORMATS, encode_export

        fmt = FORMATS.get(suffix)
        if fmt is None:
            raise GalleryError(f"cannot write {target.name}: use .png, .jpg or .webp")
        data = encode_export(png_bytes, fmt[0], sign=bool(info.get("sign", True)), title=target.name)
    try:
        return atomic_write(target, data)
    except OSError as exc:
        raise GalleryError(
            f"could not write {target}: {exc.strerror or exc}",
            "The image is saved in the gallery; choose another output path.",
        ) from None


def item_json(item: GalleryItem) -> str:
    return json.dumps(item.to_dict(), ensure_ascii=False, indent=2)
