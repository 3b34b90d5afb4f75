"""Image, mask and canvas geometry for img2img, inpainting and outpainting (numpy + Pillow, no torch).

The rule that matters: the final picture is `input·(1−m) + generated·m` with `m` the grown and
feathered mask, so every pixel where `m` is 0 is byte-for-byte the input.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image, ImageFilter, ImageOps, UnidentifiedImageError

from studio.core.errors import InvalidRequest

MAX_PIXELS = 8192 * 8192


def load_rgb(path: str | Path, what: str = "image") -> np.ndarray:
    """Any image Pillow reads (alpha, 16-bit, CMYK, palette …) as (H, W, 3) uint8 RGB."""
    path = Path(path)
    if not path.is_file():
        raise InvalidRequest(f"The {what} file was not found: {path}")
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_PIXELS:
                raise InvalidRequest(f"The {what} is too large ({im.width}×{im.height}).")
            im = ImageOps.exif_transpose(im)
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16/32-bit grey: scale to 8 bits
                arr = np.asarray(im, dtype=np.float64)
                top = 65535.0 if arr.max() > 255 else 255.0
                im = Image.fromarray((arr / top * 255).round().clip(0, 255).astype(np.uint8))
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                rgba = im.convert("RGBA")
                flat = Image.new("RGBA", rgba.size, (255, 255, 255, 255))  # transparency over white
                im = Image.alpha_composite(flat, rgba)
            return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, InvalidRequest):
            raise
        raise InvalidRequest(f"{path.name} is not an image this studio can read ({exc.__class__.__name__}).") from None


def load_mask(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """A mask as (H, W) uint8, white = change. Alpha-only masks use their alpha; other sizes are scaled."""
    path = Path(path)
    if not path.is_file():
        raise InvalidRequest(f"The mask file was not found: {path}")
    try:
        with Image.open(path) as im:
            if im.mode in ("RGBA", "LA") and np.asarray(im.convert("L")).max() == 0:
                im = im.getchannel("A")
            im = im.convert("L")
            if im.size != size:  # a mask painted at another resolution: scale it onto the image
                im = im.resize(size, Image.Resampling.NEAREST)
            return np.asarray(im, dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise InvalidRequest(f"{path.name} is not an image this studio can read as a mask.") from None


def grow(mask: np.ndarray, px: int) -> np.ndarray:
    """Binary dilation by `px` pixels (square), as a separable sliding maximum.

    Written here rather than pulling in scipy/OpenCV for one operation: two vectorised passes.
    """
    binary = (mask > 127).astype(np.uint8) * 255
    if px <= 0:
        return binary
    k = 2 * px + 1
    padded = np.pad(binary, ((0, 0), (px, px)))
    rows = sliding_window_view(padded, k, axis=1).max(axis=-1)
    padded = np.pad(rows, ((px, px), (0, 0)))
    return sliding_window_view(padded, k, axis=0).max(axis=-1).astype(np.uint8)


def feather(mask: np.ndarray, px: int) -> np.ndarray:
    if px <= 0:
        return mask.copy()
    return np.asarray(Image.fromarray(mask).filter(ImageFilter.GaussianBlur(px / 2)), dtype=np.uint8)


def composite(original: np.ndarray, generated: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """original·(1−m) + generated·m; exactly `original` where m == 0 and `generated` where m == 255."""
    m = mask.astype(np.float32)[..., None] / 255.0
    out = original.astype(np.float32) * (1.0 - m) + generated.astype(np.float32) * m
    out = out.round().clip(0, 255).astype(np.uint8)
    out[mask == 0] = original[mask == 0]
    return out


def outpaint_canvas(image: np.ndarray, sides: tuple[int, int, int, int], fill: str, seed: int, band: int):
    """Expand by (left, top, right, bottom); returns (canvas, mask, box of the original)."""
    left, top, right, bottom = sides
    h, w = image.shape[:2]
    pad = ((top, bottom), (left, right), (0, 0))
    if fill == "edge":
        canvas = np.pad(image, pad, mode="edge")
    elif fill == "mirror":
        canvas = np.pad(image, pad, mode="symmetric" if min(h, w) > max(sides) else "edge")
        blurred = np.asarray(Image.fromarray(canvas).filter(ImageFilter.GaussianBlur(8)))
        canvas = blurred.copy()
        canvas[top : top + h, left : left + w] = image
    elif fill == "noise":
        rng = np.random.default_rng(seed)
        canvas = np.pad(image, pad, mode="edge")
        noise = rng.integers(0, 256, canvas.shape, dtype=np.uint8)
        new = np.ones(canvas.shape[:2], bool)
        new[top : top + h, left : left + w] = False
        canvas[new] = noise[new]
    else:
        raise InvalidRequest(f"Unknown outpaint fill {fill!r}; use edge, mirror or noise.")
    # New area plus a band into the old image, only along the sides that grew.
    mask = np.full(canvas.shape[:2], 255, np.uint8)
    y0, y1 = top + (band if top else 0), top + h - (band if bottom else 0)
    x0, x1 = left + (band if left else 0), left + w - (band if right else 0)
    if y1 > y0 and x1 > x0:
        mask[y0:y1, x0:x1] = 0
    return canvas, mask, (left, top, left + w, top + h)


def outpaint_band(mask_blur: int) -> int:
    """Pixels of the old picture repainted along each side that grows (so the seam can blend)."""
    return max(mask_blur, 8)


def outpaint_with_mask(
    image: np.ndarray, sides: tuple[int, int, int, int], fill: str, seed: int, band: int, mask: np.ndarray | None = None
):
    """`outpaint_canvas`, plus a mask painted on the input (its size, white = repaint) repainted too:
    an outpaint that also changes part of the old picture. Returns (canvas, mask, box of the original)."""
    canvas, out, box = outpaint_canvas(image, sides, fill, seed, band)
    if mask is not None:
        left, top, right, bottom = sides
        painted = np.pad((mask > 127).astype(np.uint8) * 255, ((top, bottom), (left, right)))
        out = np.maximum(out, painted)
    return canvas, out, box


@dataclass(frozen=True)
class Region:
    """Where the generation happens, in canvas pixels: x0, y0, x1, y1."""

    x0: int
    y0: int
    x1: int
    y1: int

    @property
    def size(self) -> tuple[int, int]:
        return self.x1 - self.x0, self.y1 - self.y0


def masked_region(mask: np.ndarray, padding: int, aspect: float) -> Region:
    """Bounding box of the mask plus padding, widened to the generation aspect ratio, inside the canvas."""
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    x0, x1 = max(int(xs.min()) - padding, 0), min(int(xs.max()) + 1 + padding, w)
    y0, y1 = max(int(ys.min()) - padding, 0), min(int(ys.max()) + 1 + padding, h)
    bw, bh = x1 - x0, y1 - y0
    if bw / bh < aspect:  # too tall: widen
        want = min(round(bh * aspect), w)
        x0 = max(0, min(x0 - (want - bw) // 2, w - want))
        x1 = x0 + want
    elif bw / bh > aspect:  # too wide: heighten
        want = min(round(bw / aspect), h)
        y0 = max(0, min(y0 - (want - bh) // 2, h - want))
        y1 = y0 + want
    return Region(x0, y0, x1, y1)


def snap8(v: int) -> int:
    return max(8, (v + 7) // 8 * 8)


def resize(arr: np.ndarray, size: tuple[int, int], nearest: bool = False) -> np.ndarray:
    if (arr.shape[1], arr.shape[0]) == size:
        return arr
    method = Image.Resampling.NEAREST if nearest else Image.Resampling.LANCZOS
    return np.asarray(Image.fromarray(arr).resize(size, method))
