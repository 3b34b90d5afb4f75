"""Writing PNGs with all provenance, and reading PNG metadata defensively.

A PNG written here carries, in this order before the pixels:
- `parameters` — A1111 infotext (tEXt, or iTXt when the text is not Latin-1);
- `studio-request` — the full `GenerationRequest` JSON as run (iTXt, UTF-8);
- `studio-image` — which image of that request's batch this is, and its seed (tEXt JSON);
- `XML:com.adobe.xmp` — XMP with the IPTC digital source type (iTXt);
- `caBX` — the signed C2PA manifest (added last; it covers all of the above).

Reading does not use an image decoder: it walks the chunk list itself with hard limits, checks
each chunk's CRC, and decompresses zTXt/iTXt with a bounded output size, so a huge or
compressed-bomb text chunk, bad UTF-8, a bad checksum or a truncated file all end in a
`MetadataError` rather than a hang or a crash.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, PngImagePlugin

from studio import __version__
from studio.core.errors import MetadataError
from studio.core.files import atomic_write
from studio.core.metadata import provenance, recipe
from studio.core.metadata.xmp import build_xmp
from studio.core.request import GenerationRequest

SIGNATURE = b"\x89PNG\r\n\x1a\n"
REQUEST_KEY = "studio-request"
IMAGE_KEY = "studio-image"  # {"batch_index": i, "seed": s}: which image of the request's batch
PARAMETERS_KEY = "parameters"
XMP_KEY = "XML:com.adobe.xmp"

MAX_FILE_BYTES = 512 << 20
MAX_TEXT_BYTES = 8 << 20  # one text chunk, after decompression
MAX_TOTAL_TEXT_BYTES = 32 << 20
MAX_PIXELS = 2 * 89_478_485  # Pillow's DecompressionBombError threshold


def _as_image(image: Any) -> Image.Image:
    if isinstance(image, Image.Image):
        return image.convert("RGB") if image.mode not in ("RGB", "RGBA") else image
    arr = np.asarray(image)
    if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise MetadataError(f"expected an (H, W, 3) uint8 image, got {arr.dtype} {arr.shape}")
    return Image.fromarray(np.ascontiguousarray(arr))


def provenance_chunks(request: GenerationRequest, info: dict[str, Any] | None = None) -> dict[str, str]:
    """The text payloads (infotext, recipe JSON, XMP) a file made from `request` carries."""
    info = info or {}
    image_json = json.dumps(image_record(request, info))
    return {
        PARAMETERS_KEY: recipe.a1111_infotext(request, info),
        REQUEST_KEY: request.to_json(),
        IMAGE_KEY: image_json,
        XMP_KEY: build_xmp(
            recipe.source_type_of(request),
            software=recipe.SOFTWARE,
            software_version=str(info.get("software_version") or __version__),
            model=recipe.model_display_name(request, info),
            prompt=request.prompt,
            created=recipe.created_at(info),
            recipe_json=request.to_json(),
            image_json=image_json,
        ),
    }


def image_record(request: GenerationRequest, info: dict[str, Any]) -> dict[str, Any]:
    """Which image of the request's batch this is (and, run on a cluster worker, which worker on
    what device made it)."""
    out: dict[str, Any] = {"batch_index": int(info.get("batch_index", 0)), "seed": recipe.image_seed(request, info)}
    if info.get("worker"):
        out["worker"] = str(info["worker"])
        out["device"] = str(info.get("device") or "")
    return out


def c2pa_generation(request: GenerationRequest, info: dict[str, Any]) -> dict[str, Any]:
    return {"kind": recipe.kind_of(request, info), "request": request.to_dict(), **image_record(request, info)}


def _ingredient(request: GenerationRequest, info: dict[str, Any]) -> tuple[bytes, str, str] | None:
    path = info.get("ingredient_path") or (request.init_image.path if request.init_image else None)
    if not path:
        return None
    p = Path(path)
    mime = provenance.MIME.get(p.suffix.lower())
    try:
        if mime is None or not p.is_file() or p.stat().st_size > 64 << 20:
            return None
        return p.read_bytes(), mime, p.name
    except OSError:
        return None


def sign_encoded(data: bytes, mime: str, request: GenerationRequest, info: dict[str, Any], title: str) -> bytes:
    return provenance.sign_bytes(
        data,
        mime,
        source_type=recipe.source_type_of(request),
        software=recipe.SOFTWARE,
        software_version=str(info.get("software_version") or __version__),
        model=recipe.model_display_name(request, info),
        model_sha256=recipe.model_sha256(request, info),
        title=title,
        generation=c2pa_generation(request, info),
        ingredient=_ingredient(request, info),
    )


def encode_png(
    image: Any,
    request: GenerationRequest,
    info: dict[str, Any] | None = None,
    *,
    title: str = "image.png",
) -> bytes:
    """The complete PNG file bytes: pixels, infotext, recipe JSON, XMP and (by default) C2PA."""
    info = dict(info or {})
    img = _as_image(image)
    chunks = provenance_chunks(request, info)
    pnginfo = PngImagePlugin.PngInfo()
    pnginfo.add_text(PARAMETERS_KEY, chunks[PARAMETERS_KEY])
    pnginfo.add_itxt(REQUEST_KEY, chunks[REQUEST_KEY])
    pnginfo.add_text(IMAGE_KEY, chunks[IMAGE_KEY])
    pnginfo.add_itxt(XMP_KEY, chunks[XMP_KEY])
    buf = io.BytesIO()
    img.save(buf, "PNG", pnginfo=pnginfo, compress_level=4)
    data = buf.getvalue()
    if info.get("sign", True):
        data = sign_encoded(data, "image/png", request, info, title)
    return data


def write_png(
    path: str | os.PathLike[str],
    image_uint8_hwc: Any,
    request: GenerationRequest,
    info: dict[str, Any] | None = None,
) -> Path:
    """Write one image as a PNG with all provenance, atomically. Returns the path."""
    target = Path(path)
    data = encode_png(image_uint8_hwc, request, info, title=target.name)
    return atomic_write(target, data)


# -- reading ----------------------------------------------------------------------------------------


@dataclass
class PngMetadata:
    width: int = 0
    height: int = 0
    texts: dict[str, str] = field(default_factory=dict)
    has_c2pa: bool = False


def _inflate(data: bytes, what: str) -> bytes:
    d = zlib.decompressobj()
    try:
        out = d.decompress(data, MAX_TEXT_BYTES)
    except zlib.error as exc:
        raise MetadataError(f"the {what} text chunk is corrupt ({exc})") from None
    if d.unconsumed_tail:
        raise MetadataError(
            f"the {what} text chunk decompresses to more than {MAX_TEXT_BYTES >> 20} MiB",
            "The file looks like a decompression bomb; it was not read.",
        )
    return out


def _latin1_or_utf8(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _utf8(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise MetadataError(f"the {what} text chunk is not valid UTF-8 ({exc.reason})") from None


def read_png_metadata(data: bytes) -> PngMetadata:
    """Text chunks (tEXt, zTXt, iTXt), size and C2PA presence of a PNG held in memory."""
    if not data.startswith(SIGNATURE):
        raise MetadataError("not a PNG file")
    if len(data) > MAX_FILE_BYTES:
        raise MetadataError(f"the file is larger than {MAX_FILE_BYTES >> 20} MiB")
    meta = PngMetadata()
    pos, end, total_text = len(SIGNATURE), len(data), 0
    seen_iend = False
    while pos < end:
        if pos + 8 > end:
            raise MetadataError("the PNG file is truncated")
        length, ctype = struct.unpack(">I4s", data[pos : pos + 8])
        body_start, body_end = pos + 8, pos + 8 + length
        if length > 0x7FFFFFFF or body_end + 4 > end:
            raise MetadataError("the PNG file is truncated or a chunk length is corrupt")
        body = data[body_start:body_end]
        (crc,) = struct.unpack(">I", data[body_end : body_end + 4])
        if zlib.crc32(ctype + body) & 0xFFFFFFFF != crc:
            raise MetadataError(f"the PNG file is corrupt (bad checksum in its {ctype.decode('latin-1')!r} chunk)")
        pos = body_end + 4
        if ctype == b"IHDR":
            if length < 8:
                raise MetadataError("the PNG header is corrupt")
            meta.width, meta.height = struct.unpack(">II", body[:8])
            if meta.width * meta.height > MAX_PIXELS:
                raise MetadataError(
                    f"the image claims {meta.width}×{meta.height} pixels, over the safety limit",
                    "The file looks like a decompression bomb; it was not read.",
                )
        elif ctype in (b"tEXt", b"zTXt", b"iTXt"):
            if length > MAX_TEXT_BYTES:
                raise MetadataError(
                    f"a text chunk of {length >> 20} MiB is larger than the {MAX_TEXT_BYTES >> 20} MiB allowed"
                )
            key, sep, rest = body.partition(b"\0")
            if not sep or not 1 <= len(key) <= 79:
                raise MetadataError("a PNG text chunk is malformed")
            name = key.decode("latin-1")
            if ctype == b"tEXt":
                text = _latin1_or_utf8(rest)
            elif ctype == b"zTXt":
                if not rest:
                    raise MetadataError("a PNG zTXt chunk is malformed")
                text = _latin1_or_utf8(_inflate(rest[1:], name))
            else:
                if len(rest) < 2:
                    raise MetadataError("a PNG iTXt chunk is malformed")
                compressed, tail = rest[0], rest[2:]  # rest[1]: the compression method (0, zlib, is the only one)
                parts = tail.split(b"\0", 2)
                if len(parts) != 3:
                    raise MetadataError("a PNG iTXt chunk is malformed")
                raw = _inflate(parts[2], name) if compressed else parts[2]
                text = _utf8(raw, name)
            total_text += len(text)
            if total_text > MAX_TOTAL_TEXT_BYTES:
                raise MetadataError("the file holds more text metadata than is safe to read")
            meta.texts.setdefault(name, text)
        elif ctype == b"caBX":
            meta.has_c2pa = True
        elif ctype == b"IEND":
            seen_iend = True
            break
    if not seen_iend:
        raise MetadataError("the PNG file is truncated (no end chunk)")
    return meta
