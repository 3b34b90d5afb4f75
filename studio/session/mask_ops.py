"""Pixel operations behind the mask canvas (numpy + Pillow, no Qt): brush segments, selections,
the overlay colouring, and reading images and masks from files or bytes."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageOps, UnidentifiedImageError

MAX_PIXELS = 8192 * 8192


class BadInput(ValueError):
    """An input the canvas refuses, with a message fit for the user."""


def brush_segment(stroke: np.ndarray, a, b, radius: float, hardness: float):
    """Raise `stroke` (H, W float32 coverage 0..1) to the brush's coverage along the segment a→b.

    The brush is a capsule: coverage depends on each pixel centre's distance `d` to the segment.
    Full coverage inside `radius·hardness`, falling smoothly to 0 at `radius` (at least a one-pixel
    anti-aliased edge for hard brushes). Returns the touched (y0, y1, x0, x1) or None.
    """
    h, w = stroke.shape
    (ax, ay), (bx, by) = a, b
    r = max(0.5, float(radius))
    x0 = max(0, int(np.floor(min(ax, bx) - r - 1)))
    x1 = min(w, int(np.ceil(max(ax, bx) + r + 1)))
    y0 = max(0, int(np.floor(min(ay, by) - r - 1)))
    y1 = min(h, int(np.ceil(max(ay, by) + r + 1)))
    if x0 >= x1 or y0 >= y1:
        return None
    px = np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5 - ax
    py = np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5 - ay
    dx, dy = bx - ax, by - ay
    l2 = dx * dx + dy * dy
    t = np.clip((px * dx + py * dy) / l2, 0.0, 1.0) if l2 > 1e-12 else np.float32(0.0)
    d = np.hypot(px - t * dx, py - t * dy)
    edge = max((1.0 - float(hardness)) * r, 1.0)
    v = np.clip((r + 0.5 - d) / edge, 0.0, 1.0)
    v = v * v * (3.0 - 2.0 * v)  # smoothstep: no visible ring where the falloff starts
    region = stroke[y0:y1, x0:x1]
    np.maximum(region, v.astype(np.float32), out=region)
    return y0, y1, x0, x1


def apply_stroke(mask, base, stroke, box, opacity: float, erase: bool) -> None:
    """mask[box] = base painted (max) or erased (scaled down) by stroke·opacity."""
    y0, y1, x0, x1 = box
    s = stroke[y0:y1, x0:x1] * float(opacity)
    b = base[y0:y1, x0:x1].astype(np.float32)
    out = b * (1.0 - s) if erase else np.maximum(b, s * 255.0)
    mask[y0:y1, x0:x1] = np.clip(np.rint(out), 0, 255).astype(np.uint8)


def polygon_mask(shape: tuple[int, int], points) -> np.ndarray:
    """(H, W) bool of a filled polygon given in image coordinates (pixel centres inside count)."""
    h, w = shape
    im = Image.new("L", (w, h), 0)
    pts = [(float(x) - 0.5, float(y) - 0.5) for x, y in points]  # pixel i's centre is at i + 0.5
    if len(pts) >= 3:
        ImageDraw.Draw(im).polygon(pts, fill=255, outline=255)
    return np.asarray(im) > 0


def paint_overlay(out: np.ndarray, mask: np.ndarray, rgb: tuple[int, int, int], opacity: float, box=None) -> None:
    """Fill `out` (H, W, 4 premultiplied RGBA) with the mask shown in colour `rgb` at `opacity`."""
    y0, y1, x0, x1 = box if box is not None else (0, mask.shape[0], 0, mask.shape[1])
    a = (mask[y0:y1, x0:x1].astype(np.uint16) * int(round(opacity * 255))) // 255
    o = out[y0:y1, x0:x1]
    for c in range(3):
        o[..., c] = (a * rgb[c]) // 255
    o[..., 3] = a


def _to_rgb(im: Image.Image) -> np.ndarray:
    if im.width * im.height > MAX_PIXELS:
        raise BadInput(f"The image is too large ({im.width}×{im.height}); the limit is 8192×8192.")
    im = ImageOps.exif_transpose(im)
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):  # 16/32-bit grey: scale to 8 bits
        arr = np.asarray(im, dtype=np.float64)
        top = 65535.0 if arr.max() > 255 else 255.0
        im = Image.fromarray((arr / top * 255).round().clip(0, 255).astype(np.uint8))
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")  # transparency over white, as the engine's loader does
        im = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def read_image(source: str | Path | bytes) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a path or encoded bytes; 16-bit, CMYK, alpha and palette images are
    converted. Raises BadInput with a readable message for anything else."""
    name = "The clipboard data" if isinstance(source, bytes) else Path(source).name
    try:
        fh = io.BytesIO(source) if isinstance(source, bytes) else open(source, "rb")  # noqa: SIM115
    except OSError as exc:
        raise BadInput(f"Cannot open {name}: {exc.strerror or exc}.") from None
    try:
        with fh, Image.open(fh) as im:
            im.load()
            return _to_rgb(im)
    except BadInput:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise BadInput(f"{name} is not an image the canvas can read ({exc.__class__.__name__}).") from None


def read_mask(source: str | Path, size: tuple[int, int]) -> np.ndarray:
    """(H, W) uint8 mask, white = repaint. An alpha-only mask (black RGB) uses its alpha. A mask
    of another size than `size` (w, h) is refused: scaling it would move the painted areas."""
    name = Path(source).name
    try:
        with Image.open(source) as im:
            im.load()
            if im.mode in ("RGBA", "LA") and np.asarray(im.convert("L")).max() == 0:
                im = im.getchannel("A")
            if im.size != tuple(size):
                raise BadInput(
                    f"The mask {name} is {im.width}×{im.height} but the image is {size[0]}×{size[1]}; "
                    "load a mask of the same size."
                )
            if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                arr = np.asarray(im, dtype=np.float64)
                top = 65535.0 if arr.max() > 255 else 255.0
                return (arr / top * 255).round().clip(0, 255).astype(np.uint8)
            return np.asarray(im.convert("L"), dtype=np.uint8).copy()
    except BadInput:
        raise
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise BadInput(f"{name} is not an image the canvas can read as a mask ({exc.__class__.__name__}).") from None


def encode_png(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def expand_arrays(
    image: np.ndarray, mask: np.ndarray, sides, fill: str = "edge", seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Pad the image and the mask (new area = 255). The new area is filled the way the engine fills
    it for `--outpaint-fill` (`edge`, blurred `mirror`, `noise`): the same function does both."""
    from studio.engine.inpaint import outpaint_canvas  # numpy + Pillow only (no torch)

    left, top, right, bottom = (int(v) for v in sides)
    img, _, _ = outpaint_canvas(image, (left, top, right, bottom), fill, seed, 0)
    msk = np.pad(mask, ((top, bottom), (left, right)), mode="constant", constant_values=255)
    return img, msk
