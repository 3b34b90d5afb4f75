"""Colour correction for inpainting and outpainting (numpy only).

A model, and above all its VAE, repaints with a small colour cast: decoding shifts a flat blue by
a dozen levels, say. Feathered compositing then shows that cast as a soft step across the band.
`match_colour` measures the cast and takes it off the generated region before compositing.

Where it is measured is the choice that matters: on **the unmasked surround**, the pixels just
outside the feathered mask, compared with the input at the same places. There the model was asked
to keep the picture, so any difference is cast, never intent, and each pair is the same content,
so a textured surround measures it as exactly as a plain one. The alternatives were rejected: the
masked area itself (A1111 matches the whole image) and a band just inside the mask both hold what
the user asked for; matching them pulls a red object painted on blue towards blue, the well-known
"colour correction washes out my inpaint".

How it is applied: in CIELAB (perceptual, so distances between colours mean something), as a
shift that depends on the colour. A decoder's cast is not one offset for the whole picture (the
demo model's VAE adds blue to blue but green to red), so one mean shift measured on a surround of
blue sky and a red roof would tint the sky purple. The surround's pairs are pooled into cells of
similar colour (their mean colour, mean shift and count), and each generated colour gets the
shifts of the cells near it, weighted by a Gaussian of the colour distance (σ = SIGMA) and by
their counts. A colour the surround does not show (new content) gets the surround's mean shift,
which is also what a plain surround gives everywhere: the per-channel mean match in LAB.
The shift is a smooth function of colour, so neighbouring pixels move together (no banding).

The correction changes only generated pixels; compositing afterwards still takes the input,
byte for byte, wherever the feathered mask is 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RING_PX = 32  # how far beyond the feathered mask the surround is sampled (at least 2 × feather)
MIN_PIXELS = 64  # fewer surround pixels than this: no reliable statistics, leave the colours alone
CELL = 6.0  # LAB units: surround pixels are pooled in cells this size
SIGMA = 10.0  # LAB units: how far a cell's shift reaches to other colours
PRIOR = 8.0  # weight of the mean shift, in surround pixels: wins only where no cell is near
LOOKUP = 2.0  # LAB units: the shift is evaluated once per distinct colour at this resolution (it varies over SIGMA)
CHUNK = 4096  # distinct colours per step (bounds memory on big, noisy regions)

# sRGB (D65) <-> XYZ, and the D65 white point for LAB.
_RGB2XYZ = np.array(
    [[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750], [0.0193339, 0.1191920, 0.9503041]]
)
_XYZ2RGB = np.linalg.inv(_RGB2XYZ)
_WHITE = np.array([0.95047, 1.0, 1.08883])
_EPS, _KAPPA = 216 / 24389, 24389 / 27


@dataclass(frozen=True)
class Correction:
    """What a colour match did: whether it ran, on how many surround pixels, in how many colour
    cells, and the mean shift (input − generated, LAB)."""

    applied: bool
    pixels: int
    cells: int = 0
    shift: tuple[float, float, float] = (0.0, 0.0, 0.0)

    def to_dict(self) -> dict:
        return {
            "applied": self.applied,
            "pixels": self.pixels,
            "cells": self.cells,
            "shift_lab": [round(v, 3) for v in self.shift],
        }


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


def match_colour(
    generated: np.ndarray, original: np.ndarray, reference: np.ndarray, target: np.ndarray | None = None
) -> tuple[np.ndarray, Correction]:
    """Take the colour cast off `generated`, measured against `original` on the `reference` pixels.

    `generated` and `original` are (H, W, 3) uint8 of the same place; `reference` an (H, W) bool
    mask of where the generated picture should equal the original; `target` (default: all) where
    to correct (compositing throws the rest away). Returns (corrected uint8, what was done); with
    fewer than MIN_PIXELS reference pixels the picture comes back unchanged.
    """
    n = int(reference.sum())
    if n < MIN_PIXELS:
        return generated, Correction(False, n)
    g = rgb_to_lab(generated[reference])
    d = rgb_to_lab(original[reference]) - g
    _, cell, counts = np.unique(_key(np.floor(g / CELL)), return_inverse=True, return_counts=True)
    cell = cell.reshape(-1)
    centres = np.stack([np.bincount(cell, g[:, c]) for c in range(3)], 1) / counts[:, None]
    shifts = np.stack([np.bincount(cell, d[:, c]) for c in range(3)], 1) / counts[:, None]
    mean = d.mean(0)
    out = generated.copy()
    target = np.ones(generated.shape[:2], bool) if target is None else target
    lab = rgb_to_lab(generated[target])
    # The shift is a smooth function of colour: evaluate it once per distinct colour (to LOOKUP units).
    q = np.round(lab / LOOKUP)
    _, first, where = np.unique(_key(q), return_index=True, return_inverse=True)
    colours = q[first] * LOOKUP
    shift = np.empty_like(colours)
    for i in range(0, len(colours), CHUNK):
        dist2 = ((colours[i : i + CHUNK, None, :] - centres[None]) ** 2).sum(-1)
        w = counts * np.exp(-dist2 / (2 * SIGMA**2))
        shift[i : i + CHUNK] = (w @ shifts + PRIOR * mean) / (w.sum(1, keepdims=True) + PRIOR)
    out[target] = lab_to_rgb(lab + shift[where.reshape(-1)]).round().clip(0, 255).astype(np.uint8)
    m0, m1, m2 = (float(v) for v in mean)
    return out, Correction(True, n, len(counts), (m0, m1, m2))


def _key(cells: np.ndarray) -> np.ndarray:
    """One int64 per row of integer-valued LAB cells (|value| < 2**20), for a fast 1-D unique."""
    c = cells.astype(np.int64) + (1 << 20)
    return (c[:, 0] << 42) | (c[:, 1] << 21) | c[:, 2]
