"""Identify a single-file checkpoint from its safetensors header and derive every component's config.

Only the header (tensor names, dtypes, shapes) is read — never the weights. The architecture comes
from tensor names; channel widths, layers per block, transformer depths, attention/context widths,
in-channels, vocabulary and text widths come from shapes; what shapes cannot tell (head counts,
norm groups, VAE scaling factor, prediction type) comes from `resources/model_defaults.json`.
Plain Python (no torch): the model catalogue uses it to scan folders. The engine turns the result
into a local diffusers config folder (`studio.engine.single_file`) for `from_single_file`.
"""

from __future__ import annotations

import functools
import json
import math
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.core.errors import CorruptModel, NotADiffusionModel, UnsupportedModel
from studio.core.paths import resources_dir

UNET = "model.diffusion_model."
VAE = "first_stage_model."
CLIP_SD1 = "cond_stage_model.transformer.text_model."
OPENCLIP_SD2 = "cond_stage_model.model."
CLIP_XL = "conditioner.embedders.0.transformer.text_model."
OPENCLIP_XL = "conditioner.embedders.1.model."
OPENCLIP_XL_REFINER = "conditioner.embedders.0.model."
MAX_HEADER = 100 * 1024 * 1024


@dataclass(frozen=True)
class TensorInfo:
    dtype: str
    shape: tuple[int, ...]


@dataclass
class CheckpointInfo:
    path: Path
    arch: str  # "sd1" | "sd2" | "sdxl" | "sdxl-refiner"
    inpaint: bool
    prediction_type: str
    dtype: str
    configs: dict[str, Any] = field(default_factory=dict)  # component name -> config dict
    # What decided prediction_type: "file" (a key, the modelspec metadata, an A1111 .yaml beside it),
    # "name" (SD 2.x: 768-v / 512-base / inpainting in the file name), "shape" (SD 2.x inpainting:
    # 9 input channels, ε), or "default" (the architecture's usual; for SD 2.x the engine then asks
    # the UNet itself, as A1111 does: studio.engine.prediction).
    prediction_source: str = "default"

    @property
    def pipeline_class(self) -> str:
        if self.inpaint:
            return (
                "StableDiffusionXLInpaintPipeline" if self.arch.startswith("sdxl") else "StableDiffusionInpaintPipeline"
            )
        return str(defaults()[self.arch]["pipeline"])


@functools.lru_cache(maxsize=1)
def defaults() -> dict[str, Any]:
    table: dict[str, Any] = json.loads((resources_dir() / "model_defaults.json").read_text())
    return table


def read_header(path: str | Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Tensor names/shapes and the `__metadata__` of a safetensors file, checking it is complete."""
    path = Path(path)
    size = path.stat().st_size
    with path.open("rb") as f:
        raw = f.read(8)
        if len(raw) < 8:
            raise CorruptModel(f"{path.name} is empty or truncated (only {size} bytes).")
        (n,) = struct.unpack("<Q", raw)
        if n <= 1 or n > MAX_HEADER or 8 + n > size:
            raise CorruptModel(
                f"{path.name} is not a valid safetensors file (bad header length).",
                "The file may be truncated or not a safetensors file; download it again.",
            )
        try:
            header = json.loads(f.read(n))
        except ValueError:
            raise CorruptModel(f"{path.name} has a corrupt safetensors header.") from None
    if not isinstance(header, dict):
        raise CorruptModel(f"{path.name} has a corrupt safetensors header.")
    meta = header.pop("__metadata__", None) or {}
    tensors: dict[str, TensorInfo] = {}
    end = 0
    try:
        for name, t in header.items():
            tensors[name] = TensorInfo(str(t["dtype"]), tuple(int(s) for s in t["shape"]))
            end = max(end, int(t["data_offsets"][1]))
    except (KeyError, TypeError, ValueError, IndexError):
        raise CorruptModel(f"{path.name} has a corrupt safetensors header.") from None
    if 8 + n + end > size:
        raise CorruptModel(
            f"{path.name} is truncated: {size:,} bytes of {8 + n + end:,}.",
            "Download or copy it again.",
        )
    return tensors, {str(k): str(v) for k, v in meta.items()}


def describe_non_checkpoint(keys: list[str]) -> str:
    """A short guess at what a safetensors file holds when it is not a full checkpoint."""
    if any("lora_" in k or ".lora." in k or "lora_A" in k or "lora_B" in k for k in keys):
        return "a LoRA"
    if any(k.startswith(("control_model.", "controlnet_")) for k in keys):
        return "a ControlNet"
    if any(k.startswith(("encoder.down", "decoder.up", "encoder.down_blocks")) for k in keys):
        return "a VAE"
    if any(k.startswith(("down_blocks.", "conv_in.")) for k in keys):
        return "a diffusers UNet (load its whole model folder instead)"
    if any("text_model." in k for k in keys):
        return "a text encoder"
    return "not a Stable Diffusion checkpoint"


def identify(path: str | Path) -> CheckpointInfo:
    path = Path(path)
    tensors, meta = read_header(path)
    keys = list(tensors)

    def has(prefix: str) -> bool:
        return any(k.startswith(prefix) for k in keys)

    if not has(UNET):
        raise NotADiffusionModel(
            f"{path.name} is {describe_non_checkpoint(keys)}, not a diffusion model checkpoint.",
            "Choose a full Stable Diffusion checkpoint (.safetensors) or a diffusers model folder.",
        )
    if not has(VAE):
        raise UnsupportedModel(f"{path.name} has no VAE weights; this studio needs a full checkpoint.")
    if has(OPENCLIP_XL) or has(CLIP_XL):
        arch = "sdxl"
    elif has(OPENCLIP_XL_REFINER):
        arch = "sdxl-refiner"
    elif has(OPENCLIP_SD2):
        arch = "sd2"
    elif has(CLIP_SD1):
        arch = "sd1"
    else:
        raise UnsupportedModel(f"{path.name}: no text encoder this studio knows (SD 1.x, 2.x or XL).")
    d = defaults()[arch]
    unet = unet_config(tensors, d["unet"])
    inpaint = unet["in_channels"] == 9
    prediction, source = d["scheduler"]["prediction_type"], "default"
    spec = meta.get("modelspec.prediction_type", "").lower()
    yaml = path.with_suffix(".yaml")  # A1111 convention: a config next to the checkpoint
    yaml_text = yaml.read_text(errors="ignore") if yaml.is_file() else ""
    if "v_pred" in tensors or spec.startswith("v") or re.search(r"parameterization:\s*['\"]?v['\"]?", yaml_text):
        prediction, source = "v_prediction", "file"
    elif spec.startswith("eps") or (yaml_text and "parameterization" not in yaml_text and "unet_config" in yaml_text):
        prediction, source = "epsilon", "file"
    elif arch == "sd2" and inpaint:  # SD 2.x inpainting (512-inpainting) is an ε model
        prediction, source = "epsilon", "shape"
    elif arch == "sd2":
        named = sd2_prediction_from_name(path.name)
        if named is not None:
            prediction, source = named, "name"
    configs: dict[str, Any] = {"unet": unet, "vae": vae_config(tensors, d["vae"])}
    dtype = tensors[f"{UNET}input_blocks.0.0.weight"].dtype
    if arch == "sd1":
        configs["text_encoder"] = clip_config(tensors, CLIP_SD1, d["text_encoder"])
    elif arch == "sd2":
        configs["text_encoder"] = openclip_config(tensors, OPENCLIP_SD2, d["text_encoder"])
    elif arch == "sdxl":
        configs["text_encoder"] = clip_config(tensors, CLIP_XL, d["text_encoder"])
        configs["text_encoder_2"] = openclip_config(tensors, OPENCLIP_XL, d["text_encoder_2"])
    else:
        configs["text_encoder_2"] = openclip_config(tensors, OPENCLIP_XL_REFINER, d["text_encoder_2"])
    if arch.startswith("sdxl"):
        pooled = configs["text_encoder_2"]["projection_dim"]
        n_time = 5 if arch == "sdxl-refiner" else 6
        in_dim = tensors[f"{UNET}label_emb.0.0.weight"].shape[1]
        unet.update(
            addition_embed_type="text_time",
            addition_time_embed_dim=(in_dim - pooled) // n_time,
            projection_class_embeddings_input_dim=in_dim,
        )
    unet["sample_size"] = d["sample_size"] // 8
    configs["vae"]["sample_size"] = d["sample_size"]
    return CheckpointInfo(path, arch, inpaint, prediction, dtype, configs, source)


def sd2_prediction_from_name(name: str) -> str | None:
    """What an SD 2.x file's name says: Stability's and the common names carry 768-v / v-ema / vpred
    (v-prediction) or 512-base / base-ema / inpainting / depth (ε); None when it says neither."""
    n = name.lower()
    if re.search(r"(768[-_]?v\b|[-_]v[-_]ema|v[-_]?pred|[-_]v\.safetensors$|v[-_]?param)", n):
        return "v_prediction"
    if re.search(r"(512[-_]?base|base[-_]ema|[-_]base\b|inpaint|depth|eps|epsilon)", n):
        return "epsilon"
    if re.search(r"(?<!\d)768(?!\d)", n):  # v2-1_768-ema-pruned: SD 2.x's 768 models are v-prediction
        return "v_prediction"
    if re.search(r"(?<!\d)512(?!\d)", n):  # v2-1_512-ema-pruned: its 512 base is ε
        return "epsilon"
    return None


def _indices(keys: list[str], pattern: str) -> list[int]:
    rx = re.compile(pattern)
    return sorted({int(m[1]) for k in keys if (m := rx.match(k))})


def _groups(widths: list[int], wanted: int) -> int:
    """The default GroupNorm group count if it divides every width, else the largest that does."""
    g = wanted
    for w in widths:
        g = math.gcd(g, w)
    return max(g, 1)


def unet_config(t: dict[str, TensorInfo], d: dict[str, Any]) -> dict[str, Any]:
    keys = [k[len(UNET) :] for k in t if k.startswith(UNET)]

    def shape(k: str) -> tuple[int, ...]:
        return t[UNET + k].shape

    model_ch = shape("input_blocks.0.0.weight")[0]
    levels: list[dict[str, Any]] = [dict(resnets=0, width=model_ch, attn=0)]
    for i in _indices(keys, r"input_blocks\.(\d+)\.")[1:]:
        if f"input_blocks.{i}.0.op.weight" in keys:
            levels.append(dict(resnets=0, width=levels[-1]["width"], attn=0))
            continue
        lvl = levels[-1]
        lvl["resnets"] += 1
        lvl["width"] = shape(f"input_blocks.{i}.0.out_layers.3.weight")[0]
        depth = len(_indices(keys, rf"input_blocks\.{i}\.1\.transformer_blocks\.(\d+)\."))
        lvl["attn"] = max(lvl["attn"], depth)
    widths = [lv["width"] for lv in levels]
    has_attn = [lv["attn"] > 0 for lv in levels]
    to_k = [k for k in keys if k.endswith("attn2.to_k.weight")]
    proj_in = [k for k in keys if k.endswith(".proj_in.weight")]
    if d["head_dim"]:
        heads: Any = [max(1, w // d["head_dim"]) for w in widths]
    else:
        heads = d["attention_heads"]
    mid_depth = len(_indices(keys, r"middle_block\.1\.transformer_blocks\.(\d+)\."))
    depths = [max(lv["attn"], 1) for lv in levels]
    if mid_depth:
        depths[-1] = mid_depth if not has_attn[-1] else depths[-1]
    cfg: dict[str, Any] = dict(
        _class_name="UNet2DConditionModel",
        in_channels=shape("input_blocks.0.0.weight")[1],
        out_channels=shape("out.2.weight")[0],
        block_out_channels=widths,
        layers_per_block=levels[0]["resnets"],
        down_block_types=["CrossAttnDownBlock2D" if a else "DownBlock2D" for a in has_attn],
        up_block_types=["CrossAttnUpBlock2D" if a else "UpBlock2D" for a in reversed(has_attn)],
        mid_block_type="UNetMidBlock2DCrossAttn" if mid_depth else None,
        transformer_layers_per_block=depths if any(x > 1 for x in depths) else 1,
        cross_attention_dim=t[UNET + to_k[0]].shape[1] if to_k else None,
        attention_head_dim=heads,
        use_linear_projection=bool(proj_in) and len(t[UNET + proj_in[0]].shape) == 2,
        norm_num_groups=_groups(widths, d["norm_num_groups"]),
        time_embedding_dim=None,
    )
    if shape("time_embed.0.weight")[0] != 4 * model_ch:
        cfg["time_embedding_dim"] = shape("time_embed.0.weight")[0]
    return cfg


def vae_config(t: dict[str, TensorInfo], d: dict[str, Any]) -> dict[str, Any]:
    keys = [k[len(VAE) :] for k in t if k.startswith(VAE)]

    def shape(k: str) -> tuple[int, ...]:
        return t[VAE + k].shape

    levels = _indices(keys, r"encoder\.down\.(\d+)\.")
    if not levels:
        raise UnsupportedModel("the checkpoint's VAE has an unknown layout")
    widths = [shape(f"encoder.down.{i}.block.0.conv2.weight")[0] for i in levels]
    return dict(
        _class_name="AutoencoderKL",
        in_channels=shape("encoder.conv_in.weight")[1],
        out_channels=shape("decoder.conv_out.weight")[0],
        latent_channels=shape("decoder.conv_in.weight")[1],
        block_out_channels=widths,
        layers_per_block=len(_indices(keys, r"encoder\.down\.0\.block\.(\d+)\.")),
        down_block_types=["DownEncoderBlock2D"] * len(widths),
        up_block_types=["UpDecoderBlock2D"] * len(widths),
        norm_num_groups=_groups(widths, d["norm_num_groups"]),
        scaling_factor=d["scaling_factor"],
    )


def _heads(hidden: int, head_dim: int) -> int:
    return hidden // head_dim if hidden % head_dim == 0 and hidden >= head_dim else 1


def clip_config(t: dict[str, TensorInfo], prefix: str, d: dict[str, Any]) -> dict[str, Any]:
    keys = [k[len(prefix) :] for k in t if k.startswith(prefix)]
    vocab, hidden = t[prefix + "embeddings.token_embedding.weight"].shape
    return dict(
        architectures=["CLIPTextModel"],
        model_type="clip_text_model",
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=t[prefix + "encoder.layers.0.mlp.fc1.weight"].shape[0],
        num_hidden_layers=len(_indices(keys, r"encoder\.layers\.(\d+)\.")),
        num_attention_heads=_heads(hidden, d["head_dim"]),
        max_position_embeddings=t[prefix + "embeddings.position_embedding.weight"].shape[0],
        hidden_act=d["hidden_act"],
        projection_dim=hidden,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407 if d["pad_token"] != "!" else 0,
    )


def openclip_config(t: dict[str, TensorInfo], prefix: str, d: dict[str, Any]) -> dict[str, Any]:
    keys = [k[len(prefix) :] for k in t if k.startswith(prefix)]
    vocab, hidden = t[prefix + "token_embedding.weight"].shape
    layers = len(_indices(keys, r"transformer\.resblocks\.(\d+)\."))
    if layers == d.get("drop_last_layer_when_count"):
        layers -= 1
    proj = t.get(prefix + "text_projection")
    return dict(
        architectures=["CLIPTextModelWithProjection" if proj else "CLIPTextModel"],
        model_type="clip_text_model",
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=t[prefix + "transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
        num_hidden_layers=layers,
        num_attention_heads=_heads(hidden, d["head_dim"]),
        max_position_embeddings=t[prefix + "positional_embedding"].shape[0],
        hidden_act=d["hidden_act"],
        projection_dim=proj.shape[1] if proj else hidden,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=0,
    )
