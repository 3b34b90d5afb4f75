"""Step previews: cheap linear latent→RGB every step, or a tiny/full VAE decode when asked."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np
import torch

from studio.core.paths import resources_dir


@functools.lru_cache(maxsize=8)
def _factors_file(path: str) -> dict:
    return json.loads(Path(path).read_text())


def latent_rgb_factors(
    space: str, model_dir: Path | None = None, channels: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """(C×3 factors, 3 bias) for a latent space; a model folder's own latent_rgb.json wins. When
    `channels` is given and no entry has that many rows, a generic projection stands in."""
    entry = None
    if model_dir is not None and (model_dir / "latent_rgb.json").is_file():
        entry = _factors_file(str(model_dir / "latent_rgb.json"))
        entry = entry.get(space, entry) if "factors" not in entry else entry
    if entry is None or "factors" not in entry:
        entry = _factors_file(str(resources_dir() / "latent_rgb.json")).get(space)
    if entry is None or (channels is not None and len(entry["factors"]) != channels):
        return generic_factors(channels or 4)
    return torch.tensor(entry["factors"], dtype=torch.float32), torch.tensor(entry["bias"], dtype=torch.float32)


def generic_factors(channels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A stand-in projection for a latent space with no factors: channels spread over R, G and B in
    turn, scaled so unit-variance latents stay within range. Shows structure, not true colour."""
    f = torch.zeros(channels, 3)
    for c in range(channels):
        f[c, c % 3] = 1.0
    f /= max(1.0, channels / 3) ** 0.5 * 2
    return f, torch.zeros(3)


def grid(images: torch.Tensor) -> torch.Tensor:
    """(B, H, W, 3) -> one (H', W', 3) grid, roughly square."""
    b, h, w, c = images.shape
    if b == 1:
        return images[0]
    cols = math.ceil(math.sqrt(b))
    rows = math.ceil(b / cols)
    out = images.new_zeros(rows * h, cols * w, c)
    for i in range(b):
        r, q = divmod(i, cols)
        out[r * h : (r + 1) * h, q * w : (q + 1) * w] = images[i]
    return out


def to_uint8(rgb: torch.Tensor) -> np.ndarray:
    """(…, 3) in [-1, 1] -> uint8 numpy."""
    return ((rgb.float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu().numpy()


def latent_to_rgb(latents: torch.Tensor, factors: torch.Tensor, bias: torch.Tensor) -> np.ndarray:
    """(B, 4, h, w) latents -> (h, w·…, 3) uint8 preview grid at latent resolution."""
    lat = latents.detach().to("cpu", torch.float32)
    rgb = torch.einsum("bchw,cr->bhwr", lat, factors) + bias
    return to_uint8(grid(rgb))


@torch.no_grad()
def decode_preview(vae, latents: torch.Tensor) -> np.ndarray:
    """Decode scaled latents with a VAE or AutoencoderTiny -> uint8 grid at full resolution."""
    scale = getattr(vae.config, "scaling_factor", 1.0) or 1.0
    shift = getattr(vae.config, "shift_factor", None) or 0.0
    lat = latents.to(vae.device, vae.dtype) / scale + shift
    img = vae.decode(lat).sample
    return to_uint8(grid(img.permute(0, 2, 3, 1)))


def _sample_images(n: int, size: int, seed: int) -> np.ndarray:
    """Flat-colour backgrounds with a few coloured blocks and discs: enough to tie latents to colour."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    out = np.empty((n, size, size, 3), np.float32)
    for i in range(n):
        img = np.empty((size, size, 3), np.float32)
        img[:] = rng.uniform(-1, 1, 3)
        for _ in range(rng.integers(1, 4)):
            cx, cy, r = rng.uniform(0, size, 2).tolist() + [rng.uniform(size / 8, size / 3)]
            inside = (
                (xx - cx) ** 2 + (yy - cy) ** 2 < r**2
                if rng.random() < 0.5
                else (abs(xx - cx) < r) & (abs(yy - cy) < r)
            )
            img[inside] = rng.uniform(-1, 1, 3)
        out[i] = img
    return out


@torch.no_grad()
def fit_latent_rgb(vae, n: int = 48, size: int = 128, seed: int = 0) -> dict:
    """Least-squares latent→RGB factors for a VAE (scaled latents → colour at 1/8 resolution)."""
    imgs = torch.from_numpy(_sample_images(n, size, seed)).permute(0, 3, 1, 2)
    scale = getattr(vae.config, "scaling_factor", 1.0) or 1.0
    lats = []
    for i in range(0, n, 8):
        batch = imgs[i : i + 8].to(vae.device, vae.dtype)
        lats.append(vae.encode(batch).latent_dist.mean.float().cpu() * scale)
    lat = torch.cat(lats)  # (n, 4, h, w)
    target = torch.nn.functional.avg_pool2d(imgs, 8)  # (n, 3, h, w)
    x = torch.cat([lat.permute(0, 2, 3, 1).reshape(-1, lat.shape[1]), torch.ones(lat.numel() // lat.shape[1], 1)], 1)
    y = target.permute(0, 2, 3, 1).reshape(-1, 3)
    sol = torch.linalg.lstsq(x.double(), y.double()).solution.float()
    return {"factors": sol[:-1].tolist(), "bias": sol[-1].tolist()}


def latent_rgb_error(
    vae, factors: torch.Tensor, bias: torch.Tensor, n: int = 16, size: int = 128, seed: int = 1
) -> float:
    """Mean absolute colour error of a linear preview against the images (held-out samples)."""
    imgs = torch.from_numpy(_sample_images(n, size, seed)).permute(0, 3, 1, 2)
    scale = getattr(vae.config, "scaling_factor", 1.0) or 1.0
    with torch.no_grad():
        lat = vae.encode(imgs.to(vae.device, vae.dtype)).latent_dist.mean.float().cpu() * scale
    rgb = torch.einsum("bchw,cr->brhw", lat, factors) + bias[None, :, None, None]
    return float((rgb.clamp(-1, 1) - torch.nn.functional.avg_pool2d(imgs, 8)).abs().mean())
