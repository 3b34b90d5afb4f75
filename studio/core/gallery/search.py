"""Finding images: the full-text index (`items_fts`, FTS5 over prompt, negative prompt, model, LoRAs
and tags) and the WHERE clause that the gallery's query, ids and count share."""

from __future__ import annotations

import re
import sqlite3
from datetime import datetime
from typing import Any

from studio.core.errors import GalleryError
from studio.core.gallery.schema import KINDS


def fts_query(text: str) -> str:
    """User words → an FTS5 query: every word must match (as a prefix), punctuation ignored."""
    words = re.findall(r"\w+", text, flags=re.UNICODE)
    return " ".join(f'"{w}"*' for w in words)


def index_item(conn: sqlite3.Connection, seq: int) -> None:
    """(Re)index one row for full-text search: its words, and its tags; a pending row is left out."""
    conn.execute("DELETE FROM items_fts WHERE rowid = ?", (seq,))
    conn.execute(
        "INSERT INTO items_fts (rowid, prompt, negative_prompt, model, loras, tags) "
        "SELECT seq, prompt, negative_prompt, model, loras, "
        "coalesce((SELECT group_concat(tag, ' ') FROM tags WHERE item_id = items.id), '') "
        "FROM items WHERE seq = ? AND state = 'ok'",
        (seq,),
    )


def where_clause(
    text: str | None,
    model: str | None,
    kind: str | None,
    favourite: bool | None,
    since: float | datetime | None,
    until: float | datetime | None,
    tag: str | None,
    trashed: bool,
) -> tuple[str, str, list[Any]]:
    """(JOIN, WHERE, arguments) selecting the `ok` rows that match the search words and filters."""
    join, where = "", ["items.state = 'ok'"]
    args: list[Any] = []
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
