"""IP-Adapter and CLIP-vision-encoder files, from local files only (never the hub).

- An IP-Adapter `.safetensors` in the released layout: `image_proj.*` (the image-embedding projection)
  and `ip_adapter.N.to_k_ip` / `to_v_ip` (one pair per cross-attention layer, N counting the UNet's
  attention processors). Plain adapters (ip-adapter_sd15, ip-adapter_sdxl, `image_proj.proj` +
  `image_proj.norm`) take the encoder's projected image embedding; "plus" ones (`image_proj.latents`,
  a resampler) take its penultimate hidden states.
- The CLIP vision encoder they need (ViT-H/14 for SD 1.5 and the *_vit-h SDXL adapters, ViT-bigG/14 for
  ip-adapter_sdxl): a transformers folder (`config.json` + weights, as the IP-Adapter repository's
  `image_encoder/`), or one `.safetensors` in transformers' key layout (ComfyUI's `clip_vision/`), whose
  config is read from its shapes.

`read_adapter` checks the header only; `load_adapter` returns the nested state dict diffusers'
`_load_ip_adapter_weights` takes; `load_encoder` returns a `CLIPVisionModelWithProjection`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.plugin_api import PluginError

PICKLES = (".bin", ".pt", ".pth", ".ckpt")
CROSS_DIMS = {768: "SD 1.5", 1024: "SD 2.x", 2048: "SDXL"}
# Heads of the released CLIP vision towers by width (shapes do not tell them); else 64 wide per head.
HEADS = {768: 12, 1024: 16, 1280: 16, 1664: 16}


@dataclass(frozen=True)
class AdapterInfo:
    path: Path
    kind: str  # "plain" | "plus"
    cross_dim: int  # the UNet's cross-attention width it was made for
    image_dim: int  # what it takes from the encoder: projected embedding (plain) or hidden width (plus)
    layers: int  # cross-attention layers it adds keys/values to

    @property
    def made_for(self) -> str:
        return CROSS_DIMS.get(self.cross_dim, f"a {self.cross_dim}-wide model")


def _header(path: Path) -> dict[str, tuple[int, ...]]:
    from studio.core.checkpoint import read_header  # plain Python: the header only

    try:
        tensors, _ = read_header(path)
    except Exception as exc:  # noqa: BLE001 — a corrupt or truncated file: say which
        raise PluginError(f"{path.name} cannot be read: {exc}") from None
    return {k: v.shape for k, v in tensors.items()}


def _checked(path: str | Path, what: str) -> Path:
    p = Path(path).expanduser()
    if p.suffix.lower() in PICKLES:
        raise PluginError(f"{p.name} is a pickled file, which can run code when loaded; use the .safetensors {what}.")
    if not p.exists():
        raise PluginError(f"{what[:1].upper()}{what[1:]} not found: {p}")
    return p


def read_adapter(path: str | Path) -> AdapterInfo:
    p = _checked(path, "IP-Adapter")
    if p.is_dir() or p.suffix.lower() != ".safetensors":
        raise PluginError(f"{p.name}: give the IP-Adapter's .safetensors file.")
    shapes = _header(p)
    k_ip = [s for k, s in shapes.items() if re.fullmatch(r"ip_adapter\.\d+\.to_k_ip\.weight", k)]
    if not k_ip or not any(k.startswith("image_proj.") for k in shapes):
        raise PluginError(f"{p.name} is not an IP-Adapter (no image_proj.* and ip_adapter.*.to_k_ip weights).")
    cross = k_ip[0][1]
    if "image_proj.latents" in shapes:
        kind, image_dim = "plus", shapes["image_proj.proj_in.weight"][1]
    elif "image_proj.proj.weight" in shapes and "image_proj.norm.weight" in shapes:
        kind, image_dim = "plain", shapes["image_proj.proj.weight"][1]
    else:
        kinds = "FaceID" if any("perceiver_resampler" in k or "faceid" in k.lower() for k in shapes) else "full-face"
        raise PluginError(f"{p.name} is an IP-Adapter of a kind not supported yet ({kinds}); use a plain or plus one.")
    return AdapterInfo(p, kind, cross, image_dim, len(k_ip))


def load_adapter(info: AdapterInfo) -> dict[str, dict[str, Any]]:
    """{"image_proj": {...}, "ip_adapter": {...}}: what diffusers' loader takes (keys without the prefix)."""
    from safetensors import safe_open

    out: dict[str, dict[str, Any]] = {"image_proj": {}, "ip_adapter": {}}
    with safe_open(str(info.path), framework="pt", device="cpu") as f:
        for key in f.keys():  # noqa: SIM118 — safe_open has keys(), not iteration
            head, _, rest = key.partition(".")
            if head in out:
                out[head][rest] = f.get_tensor(key)
    return out


def check_fits(info: AdapterInfo, unet) -> None:
    """Refuse an adapter made for another model before anything is loaded into it."""
    cross = unet.config.cross_attention_dim
    cross = cross[0] if isinstance(cross, (list, tuple)) else cross
    layers = sum(1 for name in unet.attn_processors if name.endswith("attn2.processor"))
    if info.cross_dim != cross or info.layers != layers:
        raise PluginError(
            f"IP-Adapter {info.path.name} was made for {info.made_for} ({info.layers} cross-attention layers); "
            f"this model has {layers} at width {cross}."
        )


def encoder_config(shapes: dict[str, tuple[int, ...]]) -> dict[str, Any]:
    """A `CLIPVisionConfig` from a vision tower's tensor shapes (transformers' key layout)."""
    pre = "vision_model."
    patch = shapes[pre + "embeddings.patch_embedding.weight"]
    hidden, channels, size = patch[0], patch[1], patch[2]
    positions = shapes[pre + "embeddings.position_embedding.weight"][0]
    image = int(round((positions - 1) ** 0.5)) * size
    layers = len({m[1] for k in shapes if (m := re.match(r"vision_model\.encoder\.layers\.(\d+)\.", k))})
    return {
        "hidden_size": hidden,
        "intermediate_size": shapes[pre + "encoder.layers.0.mlp.fc1.weight"][0],
        "num_hidden_layers": layers,
        "num_attention_heads": HEADS.get(hidden, max(1, hidden // 64)),
        "num_channels": channels,
        "image_size": image,
        "patch_size": size,
        "projection_dim": shapes["visual_projection.weight"][0],
        "hidden_act": "quick_gelu" if hidden == 1024 else "gelu",  # OpenAI's ViT-L; LAION's H and bigG: gelu
        "layer_norm_eps": 1e-5,
    }


def load_encoder(path: str | Path):
    """A `CLIPVisionModelWithProjection` from a folder (config.json + weights) or one .safetensors."""
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    p = _checked(path, "image encoder")
    try:
        if p.is_dir():
            if not (p / "config.json").is_file():
                raise PluginError(f"{p.name} has no config.json; give the image encoder's folder or its .safetensors.")
            if not any(p.glob("*.safetensors")):
                raise PluginError(f"{p.name} holds no .safetensors weights (pickled weights are refused).")
            return CLIPVisionModelWithProjection.from_pretrained(p, local_files_only=True, use_safetensors=True)
        shapes = _header(p)
        if "visual_projection.weight" not in shapes:
            raise PluginError(f"{p.name} is not a CLIP vision encoder with a projection (transformers' layout).")
        from safetensors.torch import load_file

        model = CLIPVisionModelWithProjection(CLIPVisionConfig(**encoder_config(shapes)))
        missing, unexpected = model.load_state_dict(load_file(str(p)), strict=False)
        missing = [k for k in missing if not k.endswith("position_ids")]
        if missing or unexpected:
            raise PluginError(f"{p.name} does not load as a CLIP vision encoder ({len(missing)} missing, "
                              f"{len(unexpected)} unexpected tensors).")  # fmt: skip
        return model
    except PluginError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise PluginError(f"The image encoder {p.name} cannot be loaded: {str(exc).splitlines()[0]}") from None


def encoder_widths(encoder) -> dict[str, int]:
    c = encoder.config
    return {"plain": int(c.projection_dim), "plus": int(c.hidden_size)}
