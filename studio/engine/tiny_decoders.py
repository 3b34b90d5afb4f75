"""Tiny preview decoders: the decoder half of diffusers' `AutoencoderTiny` (the TAESD architecture).

One loader for the layouts people have:
- a diffusers folder (`config.json` + `diffusion_pytorch_model.safetensors`, as `madebyollin/taesd`,
  `taesdxl`, `taesd3`, `taef1` download), or a model folder's `vae/` holding one;
- a `.safetensors` file of the whole autoencoder in diffusers' keys (`encoder.layers.…`,
  `decoder.layers.…`), with or without a `config.json` beside it;
- a decoder-only file: diffusers' keys (`decoder.layers.…`, as the demo model's own preview decoder is
  shipped) or the original `taesd_decoder.safetensors` layout ComfyUI keeps in `models/vae_approx`
  (`1.weight`, `3.conv.0.weight` …: the original Sequential starts with a weightless clamp, so every
  index is one more than diffusers').

Only the decoder is built (`DecoderTiny`); nothing here encodes. What a decoder reads: TAESD and
TAESDXL read the latents as the pipeline holds them (scaled); TAESD3 and TAEF1 read the VAE's raw
latents, so their configs carry the model's scaling and shift factors (a bare file gets the model
VAE's, which are the same numbers).
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from studio.core.errors import CorruptModel, InvalidRequest, StudioError, UnsupportedModel
from studio.core.families import tiny_autoencoder_name

log = logging.getLogger(__name__)
OWN_FOLDER = "preview_decoder"  # a model folder's own tiny decoder (the demo model ships one)

_ORIGINAL_KEY = re.compile(r"^(\d+)\.(.*)$")


@dataclass
class TinyDecoder:
    """A loaded decoder and how to feed it: input = pipeline latents / scale + shift."""

    decoder: Any  # diffusers DecoderTiny
    scale: float
    shift: float
    label: str  # what the canvas says: "TAESD", "preview decoder" …
    latent_channels: int

    @torch.no_grad()
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) pipeline latents -> (B, 3, 8h, 8w) in [-1, 1]."""
        p = next(self.decoder.parameters())
        x = latents.to(p.device, p.dtype) / self.scale + self.shift
        return self.decoder(x).clamp(-1, 1)


def _config_for(path: Path) -> dict[str, Any]:
    for cand in (path / "config.json", path / "vae" / "config.json", path.parent / "config.json"):
        if cand.is_file():
            try:
                cfg = json.loads(cand.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if cfg.get("_class_name", "AutoencoderTiny") == "AutoencoderTiny":
                return cfg
    return {}


def _weights_for(path: Path) -> Path:
    if path.is_file():
        return path
    for folder in (path, path / "vae"):
        files = sorted(folder.glob("*.safetensors"))
        if files:
            return files[0]
    raise CorruptModel(f"{path} holds no .safetensors weights for a tiny autoencoder.")


def decoder_state(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The decoder's weights under diffusers' `DecoderTiny` names (`layers.N…`), from any layout."""
    out = {k.removeprefix("decoder."): v for k, v in tensors.items() if k.startswith("decoder.layers.")}
    if out:
        return out
    for k, v in tensors.items():
        m = _ORIGINAL_KEY.match(k)
        if m and int(m.group(1)) > 0:
            out[f"layers.{int(m.group(1)) - 1}.{m.group(2)}"] = v
    return out


def _shape_of(state: dict[str, torch.Tensor]) -> tuple[int, int, tuple[int, ...]]:
    """(latent channels, width, blocks per stage) read from the weights."""
    first = state.get("layers.0.weight")
    if first is None or first.ndim != 4:
        raise UnsupportedModel("not a tiny autoencoder decoder (no first convolution)")
    channels, width = int(first.shape[1]), int(first.shape[0])
    # Walk the Sequential: conv, act, then per stage: blocks (…conv.0.weight), [upsample], conv.
    indices = sorted({int(k.split(".")[1]) for k in state})
    blocks: list[int] = []
    count = 0
    for i in indices[1:]:
        if f"layers.{i}.conv.0.weight" in state:
            count += 1
        else:  # a plain convolution ends a stage
            blocks.append(count)
            count = 0
    return channels, width, tuple(blocks)


def load_tiny_decoder(path: str | Path, device: Any = "cpu", dtype: Any = torch.float32, model_vae: Any = None):
    """A `TinyDecoder` from a folder or file (see the module docstring). `model_vae`: the model's own
    VAE, whose scaling and shift a 16-channel decoder without a config reads."""
    from diffusers.models.autoencoders.vae import DecoderTiny
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise CorruptModel(f"The tiny autoencoder {path} is not there any more.", "Choose another in Models ▸ Models….")
    try:
        tensors = load_file(str(_weights_for(path)))
    except CorruptModel:
        raise
    except Exception as exc:  # noqa: BLE001 — a damaged file: say which
        raise CorruptModel(f"The tiny autoencoder {path.name} cannot be read ({type(exc).__name__}: {exc}).") from None
    state = decoder_state(tensors)
    try:
        channels, width, blocks = _shape_of(state)
    except UnsupportedModel as exc:
        raise UnsupportedModel(f"{path.name} is {exc}.") from None
    cfg = _config_for(path)
    decoder = DecoderTiny(
        in_channels=channels,
        out_channels=3,
        num_blocks=tuple(cfg.get("num_decoder_blocks") or blocks),
        block_out_channels=tuple(cfg.get("decoder_block_out_channels") or (width,) * len(blocks)),
        upsampling_scaling_factor=int(cfg.get("upsampling_scaling_factor", 2)),
        act_fn=str(cfg.get("act_fn", "relu")),
        upsample_fn=str(cfg.get("upsample_fn", "nearest")),
    )
    try:
        decoder.load_state_dict(state)
    except RuntimeError as exc:
        raise CorruptModel(f"The tiny autoencoder {path.name} does not fit its own layout: {exc}") from None
    if "scaling_factor" in cfg:
        scale, shift = float(cfg["scaling_factor"] or 1.0), float(cfg.get("shift_factor") or 0.0)
    elif channels == 16 and model_vae is not None:  # TAESD3 / TAEF1 read raw latents, as the model's VAE
        scale = float(getattr(model_vae.config, "scaling_factor", 1.0) or 1.0)
        shift = float(getattr(model_vae.config, "shift_factor", None) or 0.0)
    else:
        scale, shift = 1.0, 0.0
    label = str(cfg.get("_studio_label") or tiny_autoencoder_name(path)[0] or "tiny autoencoder")
    decoder = decoder.to(device, dtype).eval()
    return TinyDecoder(decoder, scale, shift, label, channels)


class TinyDecoders:
    """The tiny decoders a run's previews may use, loaded once each: the model folder's own
    `preview_decoder/` first (made for exactly that VAE), else the one set or found for its
    architecture (`paths`: arch -> folder or file, from the settings and the models library)."""

    def __init__(self, device: Any = "cpu", dtype: Any = torch.float32) -> None:
        self.device, self.dtype = device, dtype
        self.paths: dict[str, Path] = {}
        self._cache: dict[tuple[str, int], TinyDecoder] = {}

    def set_paths(self, paths: dict[str, str | Path]) -> None:
        self.paths = {k: Path(v) for k, v in paths.items() if v}

    def candidates(self, model_path: Path, arch: str) -> list[Path]:
        out = []
        own = model_path / OWN_FOLDER if model_path.is_dir() else None
        if own is not None and own.is_dir():
            out.append(own)
        set_for_arch = self.paths.get(arch) or self.paths.get(arch.split("-")[0])
        if set_for_arch is not None:
            out.append(set_for_arch)
        return out

    def for_model(self, model_path: Path, arch: str, model_vae: Any, required: bool = False) -> TinyDecoder | None:
        """The first usable decoder for the model; None (or, when `required`, an error) without one.
        One that cannot be loaded is skipped with a warning: a preview never stops a run."""
        channels = int(getattr(model_vae.config, "latent_channels", 4))
        problems = []
        for path in self.candidates(model_path, arch):
            try:
                st = path.stat()
                key = (str(path), st.st_mtime_ns)
                if key not in self._cache:
                    self._cache[key] = load_tiny_decoder(path, self.device, self.dtype, model_vae)
                dec = self._cache[key]
            except (StudioError, OSError) as exc:
                problems.append(str(exc))
                log.warning("tiny preview decoder %s not used: %s", path, exc)
                continue
            if dec.latent_channels != channels:
                problems.append(f"{path.name} reads {dec.latent_channels}-channel latents; this model has {channels}")
                continue
            return dec
        if required:
            raise InvalidRequest(
                "The tiny-autoencoder preview needs a TAESD model for this architecture"
                + (f" ({'; '.join(problems)})." if problems else "."),
                "Download one in Models ▸ Models… ▸ Download (TAESD, TAESDXL, TAESD3, TAEF1) or set one as the "
                "default for the architecture, or choose the x0 preview.",
            )
        return None
