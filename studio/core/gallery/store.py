"""The gallery store: a library folder of images plus one SQLite database describing them.

Saving an image never leaves a half-written file or a row without its file:

1. the complete file (pixels + all provenance) is encoded in memory and hashed;
2. a row in state `pending` (path, hash, writer pid) is committed — the intent;
3. the bytes go to a temp file beside the target, which is fsynced and renamed into place;
4. the row becomes `ok` (and searchable) in a second commit.

Beside this module: `schema` (the database and its migrations), `items` (`GalleryItem`, rows into
items), `search` (the full-text index and the filters), `check` (rolling interrupted saves forward or
back when a gallery opens, `check()` and its repairs) and `images` (thumbnails, copies to a chosen
path). Everything is importable from here as before.
"""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from studio.core import faults, paths
from studio.core.errors import GalleryError, GalleryItemNotFound, ProvenanceError
from studio.core.files import atomic_write, fsync_dir
from studio.core.gallery import check as check_mod
from studio.core.gallery.check import IMAGE_SUFFIXES, STALE_PENDING_S, CheckReport
from studio.core.gallery.images import make_thumbnail, write_copy
from studio.core.gallery.items import COLUMNS, GalleryItem, item_from_row, item_json
from studio.core.gallery.schema import DB_NAME, THUMBS_DIR, TRASH_DIR, connect
from studio.core.gallery.search import fts_query, index_item, where_clause
from studio.core.gallery.steps import StepStore, StoredRun
from studio.core.hashing import sha256_bytes, sha256_file
from studio.core.metadata import recipe
from studio.core.metadata.png import encode_png
from studio.core.request import GenerationRequest

__all__ = [
    "IMAGE_SUFFIXES", "STALE_PENDING_S", "THUMBS_DIR", "TRASH_DIR",
    "CheckReport", "Gallery", "GalleryItem", "fts_query", "item_json", "make_thumbnail", "write_copy",
]  # fmt: skip

log = logging.getLogger(__name__)


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
        self.steps = StepStore(self.root)  # the kept steps of its runs (previews, latents to branch from)
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
        index_item(conn, seq)

    def _item(self, row: sqlite3.Row, tags: list[str] | None = None) -> GalleryItem:
        return item_from_row(self.root, row, tags)

    def _tags_for(self, ids: list[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for start in range(0, len(ids), 500):
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for r in self.conn.execute(f"SELECT item_id, tag FROM tags WHERE item_id IN ({marks}) ORDER BY tag", chunk):
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
        finalize: Callable[[sqlite3.Connection, str], None] | None = None,
    ) -> GalleryItem:
        """Save one image with all its provenance and record it. Returns the new item.

        `finalize(conn, item_id)` (the durable queue's) runs inside the transaction that makes the
        image `ok`, so the image landing and its job being updated are one commit. With it, an image
        of a run (`run_id`, `batch_index`) lands once: if that image is already in the gallery (a
        job run again after a crash), this copy is dropped and the one there is returned; and the
        `out_path` copy is written before that commit, so a crash cannot leave a job done without it
        (its errors are logged: the image is in the gallery).
        """
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
        size = recipe.image_size(request)
        values = {
            "id": item_id, "rel_path": rel_path, "created_at": created.timestamp(), "kind": kind,
            "model": recipe.model_display_name(request, info), "model_hash": model_sha,
            "prompt": request.prompt, "negative_prompt": request.negative_prompt,
            "loras": "\n".join(lo.name for lo in request.loras), "seed": seed,
            "width": size[0], "height": size[1], "request_json": request.to_json(),
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
        faults.point("save:pending")
        target = self.root / rel_path
        try:
            atomic_write(target, data)
        except OSError as exc:
            with self._tx() as conn:
                conn.execute("DELETE FROM items WHERE id = ?", (item_id,))
            raise GalleryError(f"could not save the image to {target}: {exc}") from None
        faults.point("save:written")
        if finalize is not None and out_path is not None:
            try:
                write_copy(out_path, data, request, info)
            except GalleryError as exc:
                log.warning("%s", exc)
        kept = item_id
        with self._tx() as conn:
            twin = None
            if finalize is not None and run_id:
                twin = conn.execute(
                    "SELECT id FROM items WHERE run_id = ? AND batch_index = ? AND state = 'ok' AND id != ? LIMIT 1",
                    (run_id, int(info["batch_index"]), item_id),
                ).fetchone()
            if twin is not None:  # already landed: drop this copy (file first, see check.recover)
                target.unlink(missing_ok=True)
                conn.execute("DELETE FROM items WHERE id = ?", (item_id,))
                kept = str(twin[0])
            else:
                conn.execute("UPDATE items SET state = 'ok', writer_pid = NULL WHERE id = ?", (item_id,))
                seq = conn.execute("SELECT seq FROM items WHERE id = ?", (item_id,)).fetchone()[0]
                self._index(conn, seq)
            if finalize is not None:
                finalize(conn, kept)
        faults.point("save:landed")
        if finalize is None and out_path is not None:
            write_copy(out_path, data, request, info)
        return self.get(kept)

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
                    *recipe.image_size(req),
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
                    f"SELECT {COLUMNS} FROM items WHERE state = 'ok' AND id >= ? AND id < ? LIMIT 2",
                    (key, key + "g"),
                ).fetchall()
            if not rows:
                raise GalleryItemNotFound(f"no gallery image with id {item_id!r}")
            if len(rows) > 1 and rows[0]["id"] != key:
                raise GalleryItemNotFound(f"id {item_id!r} matches more than one image", "Give more of the id.")
            return self._item(rows[0], self._tags_for([rows[0]["id"]]).get(rows[0]["id"], []))

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
        join, where, args = where_clause(text, model, kind, favourite, since, until, tag, trashed)
        order = "DESC" if sort == "newest" else "ASC"
        sql = (
            f"SELECT {', '.join('items.' + c.strip() for c in COLUMNS.split(','))} FROM items "
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
        join, where, args = where_clause(
            text, filters.get("model"), filters.get("kind"), filters.get("favourite"),
            filters.get("since"), filters.get("until"), filters.get("tag"),
            bool(filters.get("trashed", False)),
        )  # fmt: skip
        order = "DESC" if sort == "newest" else "ASC"
        with self._lock:
            rows = self.conn.execute(
                f"SELECT items.id FROM items {join} WHERE {where} ORDER BY items.created_at {order}, items.seq {order}",
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
                rows = self.conn.execute(f"SELECT {COLUMNS} FROM items WHERE id IN ({marks})", chunk).fetchall()
                tags = self._tags_for([r["id"] for r in rows])
                out.update({r["id"]: self._item(r, tags.get(r["id"], [])) for r in rows})
        return out

    def count(self, text: str | None = None, **filters: Any) -> int:
        return len(self.ids(text, **filters))

    def models(self) -> list[str]:
        with self._lock:
            return [
                r[0] for r in self.conn.execute("SELECT DISTINCT model FROM items WHERE state = 'ok' ORDER BY model")
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
            conn.executemany("DELETE FROM tags WHERE item_id = ? AND tag = ?", [(item.id, t) for t in tags])
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
            self._release_steps(item)

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
            row = conn.execute("SELECT seq, run_id FROM items WHERE id = ?", (item_id,)).fetchone()
            if row:
                conn.execute("DELETE FROM items_fts WHERE rowid = ?", (row[0],))
                conn.execute("DELETE FROM items WHERE id = ?", (item_id,))
        thumb = self.root / THUMBS_DIR / f"{item_id}.jpg"
        thumb.unlink(missing_ok=True)
        if row and row["run_id"]:
            self._release_steps_of(row["run_id"])

    # -- kept steps (studio.core.gallery.steps) ---------------------------------------------------------
    def kept_steps(self, item_id: str) -> StoredRun | None:
        """The kept steps of the run that made an image (None when none are kept)."""
        item = self.get(item_id)
        return self.steps.get(item.run_id) if item.run_id else None

    def run_items(self, run_id: str) -> list[GalleryItem]:
        """The images of one run still in the gallery (not trashed), in batch order."""
        with self._lock:
            rows = self.conn.execute(
                f"SELECT {COLUMNS} FROM items WHERE state = 'ok' AND trashed_at IS NULL AND run_id = ? "
                "ORDER BY batch_index",
                (run_id,),
            ).fetchall()
        return [self._item(r) for r in rows]

    def _release_steps(self, item: GalleryItem) -> None:
        if item.run_id:
            self._release_steps_of(item.run_id)

    def _release_steps_of(self, run_id: str) -> None:
        """A run's kept steps go with its last image in the gallery (trashed or deleted)."""
        if not self.run_items(run_id):
            self.steps.remove(run_id)

    # -- lineage ------------------------------------------------------------------------------------------
    def _branch_parent(self, item: GalleryItem) -> GalleryItem | None:
        if not item.branch_run:
            return None
        with self._lock:
            row = self.conn.execute(
                f"SELECT {COLUMNS} FROM items WHERE state = 'ok' AND (id = ? OR run_id = ?) "
                "AND (? = '' OR run_id != ?) ORDER BY batch_index LIMIT 1",  # a resumed queue job: its own run
                (item.branch_run, item.branch_run, item.run_id, item.run_id),
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
                f"SELECT {COLUMNS} FROM items WHERE state = 'ok' AND (parent_id = ? OR branch_run "
                f"IN ({','.join('?' * len(keys))})) ORDER BY created_at",
                [item.id, *keys],
            ).fetchall()
        return [self._item(r) for r in rows if r["id"] != item.id]

    def lineage_tree(self, item_id: str, limit: int = 200) -> list[tuple[GalleryItem, int]]:
        """The whole family an image belongs to, as a tree: (item, depth) from its oldest ancestor
        down through every descendant (input images, upscales and branches; breadth bounded by `limit`)."""
        root = self.lineage(item_id)[-1]
        out: list[tuple[GalleryItem, int]] = []
        seen: set[str] = set()

        def walk(item: GalleryItem, depth: int) -> None:
            if item.id in seen or len(out) >= limit:
                return
            seen.add(item.id)
            out.append((item, depth))
            for child in self.children(item.id):
                walk(child, depth + 1)

        walk(root, 0)
        return out

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

    # -- recovery and checking (studio.core.gallery.check) ---------------------------------------------
    def recover(self) -> list[str]:
        """Finish or undo saves whose writer died. Returns what was done."""
        return check_mod.recover(self)

    def check(self, repair: bool = False, verify_hashes: bool = True) -> CheckReport:
        """Compare files with rows: missing files, orphan files, changed hashes, leftovers.

        With `repair`: abandoned temp files are removed, interrupted saves finished or dropped,
        files that moved (same hash) relinked, orphan files carrying this studio's recipe
        recorded, and rows whose file is gone dropped. Changed files are only reported.
        """
        return check_mod.check(self, repair, verify_hashes)
