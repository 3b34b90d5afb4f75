"""The gallery: every image the studio makes, saved with its provenance, searchable, recoverable.

- `record_result(result, library=None, out_path=None, parent_id=None)` — save a finished run;
- `Gallery(library)` — the store: query/search, favourites, tags, trash, lineage, `check()`.
"""

from __future__ import annotations

from studio.core.gallery.record import record_result
from studio.core.gallery.schema import KINDS, SCHEMA_VERSION
from studio.core.gallery.store import CheckReport, Gallery, GalleryItem, fts_query

__all__ = [
    "KINDS",
    "SCHEMA_VERSION",
    "CheckReport",
    "Gallery",
    "GalleryItem",
    "fts_query",
    "record_result",
]
