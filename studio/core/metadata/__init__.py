"""Provenance in image files: A1111 infotext, the studio's recipe chunk, IPTC XMP, C2PA.

Entry points:
- `write_png(path, image_uint8_hwc, request, info)` — one PNG with everything, written atomically;
- `encode_png(...)` — the same bytes without writing;
- `read_metadata(path)` — any supported tool's metadata, normalised (`ReadResult`);
- `verify(path)` — the C2PA manifest: valid / missing / invalid (`ProvenanceStatus`);
- `export_image(src, dest)` — JPEG/WebP copies that keep the infotext (EXIF) and XMP.
"""

from __future__ import annotations

from studio.core.metadata.export import export_image
from studio.core.metadata.png import encode_png, write_png
from studio.core.metadata.provenance import ProvenanceStatus
from studio.core.metadata.provenance import verify_file as verify
from studio.core.metadata.readers import ReadResult, map_sampler, read_metadata, read_metadata_bytes

__all__ = [
    "ProvenanceStatus",
    "ReadResult",
    "encode_png",
    "export_image",
    "map_sampler",
    "read_metadata",
    "read_metadata_bytes",
    "verify",
    "write_png",
]
