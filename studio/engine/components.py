"""Stand-alone components a user points at: a VAE used instead of a model's own, and the tiny
autoencoder (TAESD) that draws previews.

Both load from a diffusers folder (`config.json`) or from one `.safetensors` file. A VAE file in
the original LDM layout (A1111 / Civitai `*.vae.safetensors`) is converted to diffusers' names and
takes the configuration of the model's own VAE, which it replaces (same shapes; the model's
latent scaling factor is kept, since the latents are the model's). Pickled files are refused.

fp16 decoding: SDXL's VAE overflows fp16 on real latents (NaN, a black image), so diffusers decodes it
in fp32 when its config says `force_upcast` — slower. An fp16-safe VAE (madebyollin's "SDXL-VAE-FP16-Fix",
as a file whose name says fp16-fix, or a folder whose config says no upcast) decodes in fp16 instead.
Whatever the VAE, `nan_safe_decode` redoes a half-precision decode that produced NaN/inf in fp32.
"""

from __future__ import annotations

import logging
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any

from studio.core.errors import CorruptModel, ModelNotFound, PickleRefused, UnsupportedModel
from studio.engine.devices import DeviceInfo

log = logging.getLogger(__name__)
LDM_VAE_MARKERS = ("encoder.down.", "decoder.up.", "first_stage_model.", "vae.encoder.down.")
FP16_FIX = re.compile(r"fp16[-_ .]?fix", re.IGNORECASE)  # sdxl_vae_fp16_fix.safetensors, sdxl-vae-fp16-fix …


def _check_file(path: Path, what: str) -> None:
    if not path.exists():
        raise ModelNotFound(f"The {what} is not there any more: {path}", "Choose another one in the Models dialog.")
    if path.is_file() and path.suffix.lower() != ".safetensors":
        raise PickleRefused(f"{path.name} is not a .safetensors file; the {what} must be one (pickles can run code).")


def _component_folder(path: Path, sub: str) -> Path:
    """A component folder itself, or a whole diffusers model folder's `sub/` component."""
    if (path / "config.json").is_file():
        return path
    if (path / sub / "config.json").is_file():
        return path / sub
    raise UnsupportedModel(f"{path.name} has no config.json: not a diffusers {sub} folder.")


def load_vae(path: str | Path, like: Any, info: DeviceInfo) -> Any:
    """An AutoencoderKL from `path`, shaped like `like` (the model's own VAE) when the file has no config."""
    from diffusers import AutoencoderKL

    path = Path(path)
    _check_file(path, "VAE")
    try:
        if path.is_dir():
            vae = AutoencoderKL.from_pretrained(
                _component_folder(path, "vae"),
                local_files_only=True,
                torch_dtype=info.torch_dtype,
                use_safetensors=True,
            )
        else:
            from safetensors.torch import load_file

            state = load_file(str(path))
            config = dict(like.config)
            if any(k.startswith(LDM_VAE_MARKERS) for k in state):
                from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

                state = convert_ldm_vae_checkpoint(state, config)
            vae = AutoencoderKL.from_config(config)
            if FP16_FIX.search(path.name):  # made to decode in fp16 without overflowing: no upcast needed
                vae.register_to_config(force_upcast=False)
            missing, unexpected = vae.load_state_dict(state, strict=False)
            if missing:
                raise UnsupportedModel(
                    f"{path.name} does not fit this model's VAE ({len(missing)} weights missing, e.g. {missing[0]}).",
                    "Choose a VAE made for this architecture.",
                )
    except (UnsupportedModel, PickleRefused):
        raise
    except Exception as exc:  # noqa: BLE001 — a broken or foreign file: say which
        raise CorruptModel(f"The VAE {path.name} cannot be loaded ({type(exc).__name__}: {exc}).") from None
    if vae.config.latent_channels != like.config.latent_channels:
        raise UnsupportedModel(
            f"{path.name} has {vae.config.latent_channels} latent channels; this model uses "
            f"{like.config.latent_channels}.",
            "Choose a VAE made for this architecture.",
        )
    return vae.to(info.torch_device, info.torch_dtype).eval()


def nan_safe_decode(vae: Any) -> None:
    """Make `vae.decode` redo, in fp32, a half-precision decode that gave NaN or inf (the black image
    of an fp16 VAE overflowing), then put the VAE back in its dtype. Idempotent."""
    import torch

    if getattr(vae, "_studio_nan_safe", False):
        return
    original = vae.decode

    def decode(z: Any, *args: Any, **kwargs: Any) -> Any:
        out = original(z, *args, **kwargs)
        sample = out[0] if isinstance(out, tuple) else out.sample
        if sample.dtype not in (torch.float16, torch.bfloat16) or torch.isfinite(sample).all():
            return out
        log.warning("the VAE's %s decode overflowed (NaN/inf); decoding again in float32", sample.dtype)
        dtype = vae.dtype
        vae.to(torch.float32)
        try:
            again = original(z.float(), *args, **kwargs)
        finally:
            vae.to(dtype)
        fixed = (again[0] if isinstance(again, tuple) else again.sample).to(sample.dtype)
        if isinstance(out, tuple):
            return (fixed, *out[1:])
        out.sample = fixed
        return out

    vae.decode = decode
    vae._studio_nan_safe = True


class VaeSwitch:
    """Puts the request's VAE into a loaded model's pipeline (and its img2img/inpaint views), or
    its own back. Keeps the last few loaded VAEs so switching back and forth costs nothing."""

    def __init__(self, capacity: int = 2) -> None:
        self.capacity = capacity
        self._cache: OrderedDict[tuple, Any] = OrderedDict()

    def use(self, lm: Any, vae_path: str, info: DeviceInfo) -> bool:
        """Returns True when the pipeline's VAE changed (memory options must be applied again)."""
        own = lm.extra.setdefault("own_vae", lm.pipe.vae)
        current = lm.extra.get("vae_path", "")
        if current == vae_path:
            return False
        vae = own if not vae_path else self._get(vae_path, own, info, lm.key)
        for pipe in [lm.pipe, *lm.extra.values()]:
            if pipe is not own and hasattr(pipe, "vae") and hasattr(pipe, "unet"):
                pipe.vae = vae
        lm.extra["vae_path"] = vae_path
        log.info("VAE for %s: %s", lm.name, vae_path or "its own")
        return True

    def _get(self, path: str, own: Any, info: DeviceInfo, model_key: tuple) -> Any:
        p = Path(path)
        st = p.stat() if p.exists() else None
        key = (str(p), st.st_mtime_ns if st else 0, model_key)
        if key not in self._cache:
            self._cache[key] = load_vae(p, own, info)
            while len(self._cache) > self.capacity:
                self._cache.popitem(last=False)
        self._cache.move_to_end(key)
        return self._cache[key]
