"""The gallery database: one SQLite file in the library folder, versioned with `PRAGMA user_version`.

Each migration takes the database from version N-1 to N inside one transaction; opening a
database newer than this code knows is refused rather than risked.
"""

from __future__ import annotations

import sqlite3

from studio.core.errors import GalleryError

DB_NAME = "gallery.sqlite3"
# Beside the database in the library folder: trashed images keep their path under TRASH_DIR;
# cached thumbnails are THUMBS_DIR/<id>.jpg.
TRASH_DIR = ".trash"
THUMBS_DIR = ".thumbs"

KINDS = ("txt2img", "img2img", "inpaint", "outpaint", "branch", "upscale")
_V1_KINDS = ("txt2img", "img2img", "inpaint", "outpaint", "branch")

_ITEMS = """
CREATE TABLE items (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    rel_path        TEXT NOT NULL UNIQUE,
    created_at      REAL NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ({kinds})),
    model           TEXT NOT NULL DEFAULT '',
    model_hash      TEXT NOT NULL DEFAULT '',
    prompt          TEXT NOT NULL DEFAULT '',
    negative_prompt TEXT NOT NULL DEFAULT '',
    loras           TEXT NOT NULL DEFAULT '',
    seed            INTEGER,
    width           INTEGER,
    height          INTEGER,
    request_json    TEXT NOT NULL,
    sha256          TEXT NOT NULL,
    size_bytes      INTEGER NOT NULL DEFAULT 0,
    source_type     TEXT NOT NULL DEFAULT 'trainedAlgorithmicMedia',
    signed          INTEGER NOT NULL DEFAULT 0,
    favourite       INTEGER NOT NULL DEFAULT 0,
    trashed_at      REAL,
    parent_id       TEXT REFERENCES items(id) ON DELETE SET NULL,
    branch_run      TEXT,
    branch_step     INTEGER,
    run_id          TEXT NOT NULL DEFAULT '',
    batch_index     INTEGER NOT NULL DEFAULT 0,
    state           TEXT NOT NULL DEFAULT 'ok' CHECK (state IN ('pending', 'ok')),
    writer_pid      INTEGER
);
"""
_ITEM_INDEXES = """
CREATE INDEX items_created ON items (created_at);
CREATE INDEX items_model ON items (model);
CREATE INDEX items_run ON items (run_id);
CREATE INDEX items_parent ON items (parent_id);
CREATE INDEX items_sha ON items (sha256);
"""


def _items_table(kinds: tuple[str, ...], name: str = "items") -> str:
    return _ITEMS.format(kinds=", ".join(repr(k) for k in kinds)).replace(
        "CREATE TABLE items (", f"CREATE TABLE {name} ("
    )


_V1 = (
    _items_table(_V1_KINDS)
    + _ITEM_INDEXES
    + """
CREATE TABLE tags (
    item_id TEXT NOT NULL REFERENCES items(id) ON DELETE CASCADE,
    tag     TEXT NOT NULL,
    PRIMARY KEY (item_id, tag)
) WITHOUT ROWID;
CREATE VIRTUAL TABLE items_fts USING fts5 (
    prompt, negative_prompt, model, loras, tags,
    tokenize = 'unicode61 remove_diacritics 2'
);
"""
)

# 2: kind "upscale" (an image through an upscaler model). SQLite cannot change a CHECK constraint in
# place: the table is rebuilt under the same name with the same rows (seq, and so the full-text
# index's rowids, kept), with foreign keys off while it is (see `migrate`).
_V2 = (
    _items_table(KINDS, "items_new")
    + """
INSERT INTO items_new SELECT * FROM items;
DROP TABLE items;
ALTER TABLE items_new RENAME TO items;
"""
    + _ITEM_INDEXES
)

# 3: the durable queue (studio.core.queue): every job with its full request, its state, who runs
# it and until when (a lease its runner renews), and the gallery ids of its images. A job's images
# are the `items` rows whose run_id is the job's id.
_V3 = """
CREATE TABLE jobs (
    seq             INTEGER PRIMARY KEY AUTOINCREMENT,
    id              TEXT NOT NULL UNIQUE,
    position        REAL NOT NULL,
    created_at      REAL NOT NULL,
    updated_at      REAL NOT NULL,
    state           TEXT NOT NULL DEFAULT 'waiting'
                    CHECK (state IN ('waiting', 'running', 'done', 'failed', 'cancelled')),
    request_json    TEXT NOT NULL,
    source          TEXT NOT NULL DEFAULT '',
    out_path        TEXT NOT NULL DEFAULT '',
    options         TEXT NOT NULL DEFAULT '{}',
    parent_id       TEXT,
    latent          BLOB,
    attempts        INTEGER NOT NULL DEFAULT 0,
    max_attempts    INTEGER NOT NULL DEFAULT 3,
    runner          TEXT NOT NULL DEFAULT '',
    runner_host     TEXT NOT NULL DEFAULT '',
    runner_pid      INTEGER,
    runner_started  REAL,
    lease_token     TEXT NOT NULL DEFAULT '',
    lease_until     REAL,
    cancel_asked    INTEGER NOT NULL DEFAULT 0,
    started_at      REAL,
    finished_at     REAL,
    error           TEXT NOT NULL DEFAULT '',
    hint            TEXT NOT NULL DEFAULT '',
    gallery_ids     TEXT NOT NULL DEFAULT '',
    resume_step     INTEGER,
    resume_latent   BLOB
);
CREATE INDEX jobs_state ON jobs (state, position);
"""

# (version, SQL script). Append new migrations; never edit a released one.
MIGRATIONS: list[tuple[int, str]] = [(1, _V1), (2, _V2), (3, _V3)]
SCHEMA_VERSION = MIGRATIONS[-1][0]


def connect(path: str) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA foreign_keys = ON")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("PRAGMA busy_timeout = 30000")
    except sqlite3.DatabaseError as exc:
        raise GalleryError(
            f"cannot open the gallery database {path}: {exc}",
            "If the file is damaged, move it aside; `studio gallery check --repair` rebuilds "
            "the rows from the images' own metadata.",
        ) from None
    try:
        migrate(conn)
    except BaseException:
        conn.close()
        raise
    return conn


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the database to SCHEMA_VERSION; returns the version it had.

    Foreign keys are off while migrating (SQLite's procedure for rebuilding a table: dropping the old
    `items` must not cascade to its tags or null the parents) and checked before the commit."""
    conn.execute("PRAGMA foreign_keys = OFF")  # not inside a transaction: there it would do nothing
    try:
        conn.execute("BEGIN IMMEDIATE")
        (version,) = conn.execute("PRAGMA user_version").fetchone()
        if version > SCHEMA_VERSION:
            conn.execute("ROLLBACK")
            raise GalleryError(
                f"the gallery database has schema {version}, newer than this studio knows ({SCHEMA_VERSION})",
                "Update the studio to open this library.",
            )
        for target, script in MIGRATIONS:
            if target > version:
                for statement in _statements(script):
                    conn.execute(statement)
                conn.execute(f"PRAGMA user_version = {int(target)}")
        if version < SCHEMA_VERSION and conn.execute("PRAGMA foreign_key_check").fetchone() is not None:
            raise sqlite3.DatabaseError("a foreign key does not hold after the migration")
        conn.execute("COMMIT")
        return int(version)
    except sqlite3.DatabaseError as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise GalleryError(f"the gallery database could not be prepared: {exc}") from None
    finally:
        conn.execute("PRAGMA foreign_keys = ON")


def _statements(script: str) -> list[str]:
    out, buf = [], ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out
