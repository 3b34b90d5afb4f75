"""Corrupt and hostile files end in a clean StudioError (MetadataError), quickly."""

from __future__ import annotations

import io
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image

from studio.core.errors import MetadataError, StudioError
from studio.core.metadata import read_metadata, read_metadata_bytes


def chunk(ctype: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + ctype + body + struct.pack(">I", zlib.crc32(ctype + body) & 0xFFFFFFFF)


def png(*extra: bytes, width: int = 4, height: int = 4) -> bytes:
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
    raw = b"".join(b"\0" + b"\0" * (3 * min(width, 4)) for _ in range(min(height, 4)))
    return b"\x89PNG\r\n\x1a\n" + ihdr + b"".join(extra) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def test_well_formed_synthetic_png_reads():
    meta = read_metadata_bytes(png(chunk(b"tEXt", b"parameters\0a cat\nSteps: 3, Sampler: Euler, Seed: 1")))
    assert meta.normalised["prompt"] == "a cat"


@pytest.mark.parametrize(
    "name,data,message",
    [
        ("huge text chunk", png(chunk(b"tEXt", b"parameters\0" + b"a" * (9 << 20))), "larger than"),
        (
            "zTXt bomb",
            png(chunk(b"zTXt", b"parameters\0\0" + zlib.compress(b"a" * (64 << 20), 9))),
            "decompression bomb",
        ),
        (
            "iTXt bomb",
            png(chunk(b"iTXt", b"parameters\0\1\0\0\0" + zlib.compress(b"{" * (64 << 20), 9))),
            "decompression bomb",
        ),
        ("bad UTF-8 in iTXt", png(chunk(b"iTXt", b"studio-request\0\0\0\0\0\xff\xfe{\xc3\x28}")), "UTF-8"),
        ("pixel bomb", png(width=100_000, height=100_000), "safety limit"),
        ("truncated", png(chunk(b"tEXt", b"parameters\0hello"))[:60], "truncated"),
        ("bad CRC", png(chunk(b"tEXt", b"parameters\0hello"))[:-20] + b"\0" * 20, "corrupt"),
        ("not an image", b"GIF89a" + b"\0" * 50, "not a PNG"),
        ("bad recipe JSON", png(chunk(b"iTXt", b"studio-request\0\0\0\0\0{not json")), "recipe"),
        ("recipe with wrong types", png(chunk(b"iTXt", b'studio-request\0\0\0\0\0{"steps": "many"}')), "recipe"),
        ("garbage ComfyUI graph", png(chunk(b"tEXt", b"prompt\0[1, 2")), "malformed"),
        ("malformed text chunk", png(chunk(b"tEXt", b"no separator")), "malformed"),
    ],
)
def test_hostile_png_fails_cleanly(name, data, message):
    start = time.perf_counter()
    with pytest.raises(MetadataError) as err:
        read_metadata_bytes(data)
    assert isinstance(err.value, StudioError)
    assert message.lower() in str(err.value).lower(), str(err.value)
    assert time.perf_counter() - start < 5


def test_hostile_files_on_disk_and_other_formats(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(buf, "JPEG")
    jpeg = buf.getvalue()
    (tmp_path / "cut.jpg").write_bytes(jpeg[:20])
    (tmp_path / "junk.webp").write_bytes(b"RIFF\x10\0\0\0WEBPVP8 \xff\xff\xff\xff" + b"\0" * 8)
    (tmp_path / "empty.png").write_bytes(b"")
    for name in ("cut.jpg", "junk.webp", "empty.png", "absent.png"):
        with pytest.raises(MetadataError):
            read_metadata(tmp_path / name)
