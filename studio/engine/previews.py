"""Step previews: what each step's picture is drawn from and with.

From: the model's current estimate of the clean image (x0, the default) or the latent the sampler
holds (noisy until the last step). With: a tiny decoder (the model's own preview decoder, or a
published TAESD / TAESDXL / TAESD3 / TAEF1 the user has), linear latent→RGB factors fitted per
latent space, or the full VAE when asked. `PreviewDrawer` is that choice for one run; its `label`
says on the canvas what drew the picture.

Cost: a tiny decoder draws at most `max_latent_pixels` latent pixels per step (the latents are
averaged down first when larger), so the preview stays a small share of a step on the CPU (see
`studio bench previews`); on a GPU it draws at full size.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from studio.core.paths import resources_dir
from studio.core.request import PreviewMode


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


# Latent pixels (all images of a batch together) a tiny decoder draws per step: on the CPU, 20×20
# (an SD 1.5 512² latent averaged down 4×: 16×16, a 128×128 preview) keeps TAESD well under 5 % of
# an SD 1.5 step at 512² (`studio bench previews`: 32×32 measured 5.1 %, 22×22 4.6 % on two busy
# cores); GPUs draw it whole. The demo model's 16×16 latents are drawn whole.
CPU_TINY_LATENT_PIXELS = 20 * 20
GPU_TINY_LATENT_PIXELS = 128 * 128 * 4
SOURCE_LABELS = {"x0": "x0", "latent": "noisy latent"}
FINAL_LABEL = "the finished picture"
LINEAR_LABEL = "latent→RGB factors"  # the last step shows what the pipeline decoded


@dataclass
class PreviewDrawer:
    """How one run draws its step previews (see the module docstring)."""

    source: str  # "x0" | "latent" | "" (no previews)
    how: str  # "tiny" | "linear" | "vae" | ""
    decoder_label: str  # "preview decoder", "TAESD", "latent→RGB factors", "VAE" …
    factors: torch.Tensor | None = None
    bias: torch.Tensor | None = None
    tiny: Any = None  # studio.engine.tiny_decoders.TinyDecoder
    vae: Any = None
    every: int = 1  # the full VAE draws every `every` steps (and the last)
    max_latent_pixels: int = CPU_TINY_LATENT_PIXELS
    _last: np.ndarray | None = field(default=None, repr=False)

    @property
    def label(self) -> str:
        """What the canvas says about a step's picture: "x0 · preview decoder"."""
        return f"{SOURCE_LABELS.get(self.source, self.source)} · {self.decoder_label}" if self.source else ""

    def draw(self, step: int, steps: int, vp: torch.Tensor, x0: torch.Tensor | None) -> np.ndarray | None:
        """The picture of `step`: vp is the step's latent (variance-preserving form), x0 its estimate of
        the clean latent (None where the scheduler gives none: the latent stands in)."""
        if not self.source:
            return None
        lat = x0 if (self.source == "x0" and x0 is not None) else vp
        if self.how == "linear":
            return latent_to_rgb(lat, self.factors, self.bias)
        if self.how == "tiny":
            return to_uint8(grid(self.tiny.decode(_shrink(lat, self.max_latent_pixels)).permute(0, 2, 3, 1)))
        if step % self.every == 0 or step == steps or self._last is None:  # the full VAE
            self._last = decode_preview(self.vae, lat)
        return self._last


def make_drawer(
    mode: PreviewMode, tiny: Any, factors: torch.Tensor, bias: torch.Tensor, vae: Any, every: int, device: str
) -> PreviewDrawer:
    """x0 (the default): the tiny decoder when there is one, else the linear factors; latent2rgb:
    the noisy latent through the factors; taesd: x0 through the tiny decoder (there must be one);
    vae: x0 through the full VAE every `every` steps; none: no pictures (the latents still come)."""
    cap = CPU_TINY_LATENT_PIXELS if device == "cpu" else GPU_TINY_LATENT_PIXELS
    linear = {"factors": factors, "bias": bias}
    if mode is PreviewMode.NONE:
        return PreviewDrawer("", "", "")
    if mode is PreviewMode.LATENT2RGB:
        return PreviewDrawer("latent", "linear", LINEAR_LABEL, **linear)
    if mode is PreviewMode.VAE:
        return PreviewDrawer("x0", "vae", "VAE", vae=vae, every=every, **linear)
    if tiny is not None:
        return PreviewDrawer("x0", "tiny", tiny.label, tiny=tiny, max_latent_pixels=cap, **linear)
    return PreviewDrawer("x0", "linear", LINEAR_LABEL, **linear)


def _shrink(latents: torch.Tensor, max_pixels: int) -> torch.Tensor:
    """Latents averaged down by a whole factor until the batch has at most `max_pixels` latent pixels."""
    b, _, h, w = latents.shape
    f = 1
    while b * math.ceil(h / f) * math.ceil(w / f) > max_pixels and f < max(h, w):
        f += 1
    if f == 1:
        return latents
    return torch.nn.functional.adaptive_avg_pool2d(latents.float(), (math.ceil(h / f), math.ceil(w / f)))


def final_preview(images: list[np.ndarray], like: np.ndarray) -> np.ndarray:
    """The finished pictures as a step preview: their grid at the size of the step's own preview."""
    from PIL import Image

    full = grid(torch.from_numpy(np.stack([np.asarray(im) for im in images])))
    out = Image.fromarray(full.numpy()).resize((like.shape[1], like.shape[0]), Image.Resampling.BOX)
    return np.asarray(out, dtype=np.uint8)


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
