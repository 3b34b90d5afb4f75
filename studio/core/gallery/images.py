"""Image files the gallery writes besides its own: cached thumbnails, and a copy of a saved image at
a path the user chose (PNG as saved, or JPEG / WebP with the same provenance)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from studio.core.errors import GalleryError
from studio.core.files import atomic_write
from studio.core.request import GenerationRequest


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
