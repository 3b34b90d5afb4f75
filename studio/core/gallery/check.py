"""Keeping the library folder and the database in step.

A save writes a `pending` row, then the file (temp file + fsync + rename), then marks the row `ok`
(`store.Gallery.add_image`). A writer killed at any point leaves at most a pending row and/or a temp
file from a process that no longer exists: `recover()` (run when a gallery opens) rolls those
forward (the file is there with the recorded hash) or back (it is not). Anything a crash leaves out
of step in the trash is found by `check()` and relinked by `check(repair=True)` using the file hashes.
"""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.core.errors import StudioError
from studio.core.files import TEMP_SUFFIX
from studio.core.gallery.schema import THUMBS_DIR, TRASH_DIR
from studio.core.gallery.search import index_item
from studio.core.gallery.steps import STEPS_DIR
from studio.core.hashing import sha256_file

if TYPE_CHECKING:
    from studio.core.gallery.store import Gallery

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
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
class CheckReport:
    """What `Gallery.check()` found (and, with repair, did)."""

    missing: list[str] = field(default_factory=list)  # item ids whose file is gone
    orphans: list[str] = field(default_factory=list)  # library files no row knows
    bad_hashes: list[str] = field(default_factory=list)  # item ids whose file changed
    temp_files: list[str] = field(default_factory=list)  # abandoned half-written files
    pending: list[str] = field(default_factory=list)  # saves that never finished
    step_files: list[str] = field(default_factory=list)  # kept step files missing or changed ("<run>/<file>")
    step_orphans: list[str] = field(default_factory=list)  # kept steps of runs with no image left (run ids)
    repaired: list[str] = field(default_factory=list)
    checked: int = 0

    @property
    def clean(self) -> bool:
        return not (
            self.missing or self.orphans or self.bad_hashes or self.temp_files or self.pending
            or self.step_files or self.step_orphans
        )  # fmt: skip

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
                    ("bad kept step files", self.step_files),
                    ("runs with kept steps but no image", self.step_orphans),
                )
                if v
            ]
            text = f"{self.checked} images checked: " + ", ".join(parts)
        if self.repaired:
            text += f"; repaired {len(self.repaired)}"
        return text


def recover(g: Gallery) -> list[str]:
    """Finish or undo saves whose writer died. Returns what was done."""
    done: list[str] = []
    now = time.time()
    with g._lock:
        rows = g.conn.execute(
            "SELECT id, seq, rel_path, sha256, writer_pid, created_at FROM items WHERE state = 'pending'"
        ).fetchall()
    for row in rows:
        if _pid_alive(row["writer_pid"]) and now - row["created_at"] < STALE_PENDING_S:
            continue
        path = g.root / row["rel_path"]
        ok = path.is_file() and sha256_file(path) == row["sha256"]
        with g._tx() as conn:
            if ok and _landed_already(conn, row["id"]):
                path.unlink(missing_ok=True)  # a queue job's image that is in the gallery already
                conn.execute("DELETE FROM items WHERE id = ?", (row["id"],))
                done.append(f"dropped duplicate save {row['rel_path']}")
            elif ok:
                conn.execute("UPDATE items SET state = 'ok', writer_pid = NULL WHERE id = ?", (row["id"],))
                index_item(conn, row["seq"])
                done.append(f"finished interrupted save {row['rel_path']}")
            else:
                conn.execute("DELETE FROM items WHERE id = ?", (row["id"],))
                done.append(f"dropped interrupted save {row['rel_path']}")
    for tmp in temp_files(g.root):
        tmp.unlink(missing_ok=True)
        done.append(f"removed temp file {tmp.relative_to(g.root)}")
    return done


def _landed_already(conn: sqlite3.Connection, item_id: str) -> bool:
    """Whether a pending row is a second copy of a queue job's image that has landed (a job run
    again after its first runner died between writing the file and committing it)."""
    row = conn.execute(
        "SELECT 1 FROM items AS p JOIN jobs ON jobs.id = p.run_id JOIN items AS q "
        "ON q.run_id = p.run_id AND q.batch_index = p.batch_index AND q.state = 'ok' "
        "WHERE p.id = ? AND p.run_id != '' LIMIT 1",
        (item_id,),
    ).fetchone()
    return row is not None


def temp_files(root: Path, all_writers: bool = False) -> list[Path]:
    """Half-written files under `root` whose writer is gone (all of them with `all_writers`)."""
    out = []
    for tmp in root.rglob(f".*{TEMP_SUFFIX}"):
        m = _TEMP_RE.match(tmp.name)
        if m and (all_writers or not _pid_alive(int(m.group(1)))):
            out.append(tmp)
    return out


def library_files(root: Path) -> Iterator[str]:
    """Every image file in the library (trash included; thumbnails and kept step previews not), as
    "/"-separated relative paths."""
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d not in (THUMBS_DIR, STEPS_DIR)]
        for name in filenames:
            if name.startswith(".") or not name.lower().endswith(IMAGE_SUFFIXES):
                continue
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            yield rel.replace(os.sep, "/")


def check(g: Gallery, repair: bool = False, verify_hashes: bool = True) -> CheckReport:
    """Compare files with rows: missing files, orphan files, changed hashes, leftovers.

    With `repair`: abandoned temp files are removed, interrupted saves finished or dropped,
    files that moved (same hash) relinked, orphan files carrying this studio's recipe
    recorded, and rows whose file is gone dropped. Changed files are only reported.
    """
    report = CheckReport()
    if repair:
        report.repaired += recover(g)
    with g._lock:
        rows = g.conn.execute("SELECT id, rel_path, sha256, state, writer_pid FROM items").fetchall()
    by_path = {r["rel_path"]: r for r in rows}
    report.pending = [r["id"] for r in rows if r["state"] == "pending" and not _pid_alive(r["writer_pid"])]
    report.temp_files = [str(p.relative_to(g.root)) for p in temp_files(g.root)]
    files = set(library_files(g.root))
    for r in rows:
        if r["state"] != "ok":
            continue
        report.checked += 1
        path = g.root / r["rel_path"]
        if r["rel_path"] not in files:
            report.missing.append(r["id"])
        elif verify_hashes and sha256_file(path) != r["sha256"]:
            report.bad_hashes.append(r["id"])
    pending_paths = {r["rel_path"] for r in rows if r["state"] == "pending"}
    report.orphans = sorted(f for f in files if f not in by_path and f not in pending_paths)
    if repair:
        _repair(g, report, {r["id"]: r for r in rows})
    _check_steps(g, report, repair, verify_hashes)
    return report


def _check_steps(g: Gallery, report: CheckReport, repair: bool, verify_hashes: bool) -> None:
    """The kept steps (studio.core.gallery.steps): files against their manifests, and runs no image owns."""
    with g._lock:
        owned = {
            r[0]
            for r in g.conn.execute(
                "SELECT DISTINCT run_id FROM items WHERE run_id != '' AND trashed_at IS NULL AND state = 'ok'"
            )
        }
    found = g.steps.check(owned, repair=repair, verify_hashes=verify_hashes)
    if repair:
        report.repaired += found.repaired
    else:
        report.step_files = found.bad_files + [f"{r}/manifest.json" for r in found.unreadable]
        report.step_orphans = found.orphan_runs


def _repair(g: Gallery, report: CheckReport, rows: dict[str, sqlite3.Row]) -> None:
    missing_by_sha = {rows[i]["sha256"]: i for i in report.missing}
    still_orphans = []
    for rel in report.orphans:
        path = g.root / rel
        sha = sha256_file(path)
        if sha in missing_by_sha:
            item_id = missing_by_sha.pop(sha)
            with g._tx() as conn:
                conn.execute(
                    "UPDATE items SET rel_path = ?, trashed_at = CASE WHEN ? THEN "
                    "coalesce(trashed_at, ?) ELSE NULL END WHERE id = ?",
                    (rel, rel.startswith(TRASH_DIR + "/"), time.time(), item_id),
                )
            report.missing.remove(item_id)
            report.repaired.append(f"relinked {item_id[:12]} to {rel}")
            continue
        try:
            item = g.add_file(path)
            report.repaired.append(f"recorded {rel} as {item.id[:12]}")
        except StudioError:
            still_orphans.append(rel)
    report.orphans = still_orphans
    for item_id in list(report.missing):
        g._forget(item_id)
        report.missing.remove(item_id)
        report.repaired.append(f"dropped row {item_id[:12]} (file gone)")
    report.pending = []
    report.temp_files = []
