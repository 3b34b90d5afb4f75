"""The ControlNet panel's inputs, without Qt: reading and checking control images and models,
and saving a control image made in the window (content-addressed, atomic)."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np

from studio.core import paths
from studio.core.files import atomic_write
from studio.core.hashing import sha256_bytes
from studio.core.request import ImageRef


def load_image(path: str | os.PathLike[str], max_side: int | None = None) -> np.ndarray:
    """(H, W, 3) uint8 RGB from an image file, optionally downscaled; raises ValueError with a clear message."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if max_side and max(im.size) > max_side:
                im.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
            return np.asarray(im).copy()
    except FileNotFoundError:
        raise ValueError(f"The control image {Path(path).name} does not exist.") from None
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(
            f"{Path(path).name} is not an image this studio can read ({exc.__class__.__name__})."
        ) from None


def check_image(path: str | os.PathLike[str]) -> None:
    """Cheap check (header only) that `path` is a readable image."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise ValueError(f"The control image {p} does not exist.")
    try:
        with Image.open(p) as im:
            im.size  # noqa: B018 — the header parses
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"{p.name} is not an image this studio can read ({exc.__class__.__name__}).") from None


def check_model(text: str) -> str:
    """An error message for a ControlNet model path, or "" when it looks usable."""
    p = Path(text).expanduser()
    if not p.exists():
        return f"ControlNet model not found: {p}"
    if p.is_dir():
        return (
            "" if (p / "config.json").is_file() else f"{p.name} is not a diffusers ControlNet folder (no config.json)."
        )
    if p.suffix.lower() != ".safetensors":
        return f"{p.name}: only .safetensors ControlNet files are loaded (pickled checkpoints are refused)."
    try:
        from studio.core.checkpoint import read_header

        tensors, _ = read_header(p)
    except Exception as exc:  # noqa: BLE001
        return f"{p.name} cannot be read: {exc}"
    if not any(k.startswith(("controlnet_cond_embedding.", "control_model.input_hint_block.")) for k in tensors):
        return f"{p.name} is not a ControlNet."
    return ""


def save_input_array(array: np.ndarray) -> ImageRef:
    """Save an RGB array as PNG under `data_dir()/inputs`, named by its content hash (atomically)."""
    from PIL import Image

    a = np.asarray(array)
    if a.dtype != np.uint8:
        a = np.clip(a, 0, 255).astype(np.uint8)
    if a.ndim == 2:
        a = np.repeat(a[:, :, None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4):
        raise ValueError(f"a control image must be (H, W, 3) or (H, W, 4), not {a.shape}")
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(a[:, :, :3])).save(buf, "PNG", compress_level=4)
    data = buf.getvalue()
    sha = sha256_bytes(data)
    target = paths.ensure(paths.data_dir() / "inputs") / f"control-{sha[:16]}.png"
    if not target.exists():
        atomic_write(target, data)
    return ImageRef(path=str(target), sha256=sha)
