"""Export a gallery PNG to JPEG or WebP, keeping its provenance.

The A1111 infotext goes into EXIF UserComment (the "UNICODE" form A1111 itself writes: an 8-byte
`UNICODE\\0` prefix then UTF-16 big-endian text), the XMP packet is carried over, and when the
source holds this studio's recipe the exported file is signed with its own C2PA manifest.
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

from PIL import ExifTags, Image

from studio.core.errors import MetadataError
from studio.core.files import atomic_write
from studio.core.metadata.png import PARAMETERS_KEY, XMP_KEY, sign_encoded
from studio.core.metadata.readers import read_metadata_bytes

FORMATS = {
    ".jpg": ("JPEG", "image/jpeg"),
    ".jpeg": ("JPEG", "image/jpeg"),
    ".webp": ("WEBP", "image/webp"),
    ".png": ("PNG", "image/png"),
}


def user_comment(text: str) -> bytes:
    return b"UNICODE\0" + text.encode("utf-16-be")


def encode_export(source_bytes: bytes, fmt: str, *, quality: int = 92, sign: bool = True, title: str = "") -> bytes:
    """Re-encode a studio PNG (given as bytes) as JPEG or WebP with its provenance."""
    if fmt not in ("JPEG", "WEBP"):
        raise MetadataError(f"cannot export to {fmt}; choose JPEG or WebP")
    meta = read_metadata_bytes(source_bytes)
    try:
        with Image.open(io.BytesIO(source_bytes)) as im:
            im.load()
            img = im.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise MetadataError(f"cannot read the image to export it ({exc})") from None
    exif = Image.Exif()
    params = meta.raw.get(PARAMETERS_KEY)
    if params:
        exif.get_ifd(ExifTags.IFD.Exif)[ExifTags.Base.UserComment] = user_comment(params)
    exif[ExifTags.Base.Software] = "studio"
    kwargs: dict[str, Any] = {"quality": quality, "exif": exif.tobytes()}
    xmp = meta.raw.get(XMP_KEY)
    if xmp:
        kwargs["xmp"] = xmp.encode("utf-8")
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    data = buf.getvalue()
    if sign and meta.request is not None and meta.source == "studio":
        mime = "image/jpeg" if fmt == "JPEG" else "image/webp"
        data = sign_encoded(data, mime, meta.request, {}, title or f"image.{fmt.lower()}")
    return data


def export_image(
    source: str | os.PathLike[str], dest: str | os.PathLike[str], *, quality: int = 92, sign: bool = True
) -> Path:
    """Export `source` (a PNG this studio wrote) to `dest`; the format follows dest's suffix."""
    src, target = Path(source), Path(dest)
    fmt = FORMATS.get(target.suffix.lower())
    if fmt is None:
        raise MetadataError(f"cannot tell the export format from {target.name!r}", "Use .jpg, .webp or .png.")
    try:
        data = src.read_bytes()
    except OSError as exc:
        raise MetadataError(f"cannot read {src}: {exc.strerror or exc}") from None
    if fmt[0] == "PNG":
        return atomic_write(target, data)
    return atomic_write(target, encode_export(data, fmt[0], quality=quality, sign=sign, title=target.name))
