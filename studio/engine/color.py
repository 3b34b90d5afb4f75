"""Colour correction for inpainting and outpainting (numpy only).

A model, and above all its VAE, repaints with a small colour cast: decoding shifts a flat blue by
a dozen levels, say. Feathered compositing then shows that cast as a soft step across the band.
`match_colour` removes it by matching the generated region's colour statistics to the input's.

Which pixels the statistics come from is the choice that matters. They come from **the unmasked
surround**: pixels just outside the feathered mask, compared with the input at the same places.
There the model was asked to keep the picture, so any difference is cast, never intent, and the
pairs are the same content, so a textured surround measures the cast as exactly as a plain one.
The alternatives were rejected: the masked area itself (A1111 matches the whole image) and a band
just inside the mask both hold what the user asked for; matching them pulls a red object painted
on blue towards blue, the well-known "colour correction washes out my inpaint" complaint.

The transfer is per channel in CIELAB (L, a, b are nearly independent, so a per-channel match does
not twist hues): `lab' = (lab − μ_gen)·g + μ_input` with the gain `g = √((σ_in² + λ)/(σ_gen² + λ))`.
λ shrinks the gain towards 1 where the surround is flat (σ ≈ 0 on a plain background would
otherwise flatten the new content's contrast); the gain is also kept within [0.5, 2].

The correction changes only generated pixels; compositing afterwards still takes the input,
byte for byte, wherever the feathered mask is 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RING_PX = 32  # how far beyond the feathered mask the surround is sampled (at least 2 × feather)
MIN_PIXELS = 64  # fewer surround pixels than this: no reliable statistics, leave the colours alone
SHRINK = 100.0  # λ, in LAB units²: gains on flat surrounds (σ ≲ 10) stay close to 1
GAIN_RANGE = (0.5, 2.0)

# sRGB (D65) <-> XYZ, and the D65 white point for LAB.
_RGB2XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
_XYZ2RGB = np.linalg.inv(_RGB2XYZ)
_WHITE = np.array([0.95047, 1.0, 1.08883])
_EPS, _KAPPA = 216 / 24389, 24389 / 27


@dataclass(frozen=True)
class Correction:
    """What a colour match did: whether it ran, on how many pixels, and the per-channel transfer."""

    applied: bool
    pixels: int
    shift: tuple[float, float, float] = (0.0, 0.0, 0.0)  # μ_input − μ_gen, LAB
    gain: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def to_dict(self) -> dict:
        return {"applied": self.applied, "pixels": self.pixels,
                "shift_lab": [round(v, 3) for v in self.shift], "gain": [round(v, 4) for v in self.gain]}


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """(…, 3) sRGB in 0–255 → CIELAB (L 0–100), float64."""
    c = np.asarray(rgb, np.float64) / 255.0
    lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = lin @ _RGB2XYZ.T / _WHITE
    f = np.where(xyz > _EPS, np.cbrt(xyz), (_KAPPA * xyz + 16) / 116)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """CIELAB → sRGB in 0–255 (float64, not clipped)."""
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], -1)
    xyz = np.where(f**3 > _EPS, f**3, (116 * f - 16) / _KAPPA) * _WHITE
    lin = xyz @ _XYZ2RGB.T
    c = np.where(lin <= 0.0031308, 12.92 * lin, 1.055 * np.clip(lin, 0.0031308, None) ** (1 / 2.4) - 0.055)
    return c * 255.0


def surround(blend: np.ndarray, ring: int = RING_PX) -> np.ndarray:
    """Pixels outside the feathered mask (blend == 0) within `ring` px of it (square): the reference."""
    touched = blend > 0
    k = 2 * ring + 1
    near = touched
    for axis in (0, 1):  # a box sum > 0 along each axis in turn, from running sums: O(1) per pixel
        near = np.moveaxis(near, axis, 0)
        c = np.zeros((near.shape[0] + k, *near.shape[1:]), np.int32)
        np.cumsum(near, 0, out=c[ring + 1 : ring + 1 + near.shape[0]])
        c[ring + 1 + near.shape[0] :] = c[ring + near.shape[0]]
        near = np.moveaxis((c[k:] - c[:-k]) > 0, 0, axis)
    return near & ~touched


def match_colour(generated: np.ndarray, original: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, Correction]:
    """Match `generated`'s colours to `original`'s, statistics taken on the `reference` pixels.

    `generated` and `original` are (H, W, 3) uint8 of the same place; `reference` an (H, W) bool
    mask of where the generated picture should equal the original. Returns (corrected uint8, what
    was done); with fewer than MIN_PIXELS reference pixels the picture comes back unchanged.
    """
    n = int(reference.sum())
    if n < MIN_PIXELS:
        return generated, Correction(False, n)
    gen_lab = rgb_to_lab(generated)
    g, o = gen_lab[reference], rgb_to_lab(original[reference])
    mu_g, mu_o = g.mean(0), o.mean(0)
    gain = np.sqrt((o.var(0) + SHRINK) / (g.var(0) + SHRINK)).clip(*GAIN_RANGE)
    out = lab_to_rgb((gen_lab - mu_g) * gain + mu_o).round().clip(0, 255).astype(np.uint8)
    return out, Correction(True, n, tuple(float(v) for v in mu_o - mu_g), tuple(float(v) for v in gain))
