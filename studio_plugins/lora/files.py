"""LoRA files from their safetensors header alone: names, rank, kohya metadata, fit to a model."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from studio.core.catalogue import identify_file
from studio.core.checkpoint import TensorInfo, read_header
from studio.core.errors import StudioError
from studio.plugin_api import PluginError


@dataclass
class LoraFile:
    path: Path
    name: str
    arch: str
    rank: int
    tensors: dict[str, TensorInfo] = field(repr=False, default_factory=dict)
    trigger_words: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)
    preview: Path | None = None

    def sha256(self) -> str:
        from studio.core.hashing import file_sha256

        return file_sha256(self.path)

    def addnet_sha256(self) -> str:
        """The hash A1111 and model sites give a LoRA ("Lora hashes"): of its tensors, not its header."""
        from studio.core.hashing import addnet_sha256

        return addnet_sha256(self.path)


# LyCORIS kinds, by a tensor name each writes (LoCon writes lora_down/lora_up, as a plain LoRA does).
LYCORIS = {
    ".hada_w1_a": "LyCORIS LoHa",
    ".lokr_w1": "LyCORIS LoKr",
    ".lokr_w1_a": "LyCORIS LoKr",
    ".oft_blocks": "LyCORIS OFT",
    ".oft_diag": "LyCORIS BOFT",
    ".on_input": "LyCORIS (IA)³",
    ".a1.weight": "LyCORIS GLoRA",
    ".diff": "LyCORIS full",
    ".lora_mid.weight": "LyCORIS LoCon with a Tucker (CP) decomposition",
}


def lora_format(tensors: dict[str, TensorInfo]) -> str | None:
    """The LyCORIS format a file is in when it is one that this studio cannot load (None: it can)."""
    for marker, kind in LYCORIS.items():
        if any(marker in k for k in tensors):
            return kind
    return None


def read_lora(path: Path) -> LoraFile:
    try:
        tensors, meta = read_header(path)
    except StudioError as exc:
        raise PluginError(str(exc)) from None
    entry = identify_file(path)
    if entry.kind != "LoRA":
        raise PluginError(f"{path.name} is not a LoRA ({entry.kind}).")
    kind = lora_format(tensors)
    if kind is not None:
        raise PluginError(
            f"LoRA “{path.stem}” is a {kind} file; this studio loads LoRA and LyCORIS LoCon files "
            "(kohya, diffusers and peft layouts), not this kind yet."
        )
    ranks = [t.shape[0] for k, t in tensors.items() if k.endswith(("lora_down.weight", "lora_A.weight"))]
    tags: list[str] = []
    try:
        freq = json.loads(meta.get("ss_tag_frequency", "{}"))
        counts: dict[str, int] = {}
        for bucket in freq.values():
            for tag, n in bucket.items():
                counts[tag.strip()] = counts.get(tag.strip(), 0) + int(n)
        tags = [t for t, _ in sorted(counts.items(), key=lambda kv: -kv[1])][:20]
    except (ValueError, AttributeError, TypeError):
        pass
    triggers = [w.strip() for w in meta.get("ss_trigger_words", meta.get("trigger_words", "")).split(",") if w.strip()]
    preview = next(
        (
            p
            for p in (path.with_suffix(".preview.png"), path.with_suffix(".png"), path.with_suffix(".jpg"))
            if p.is_file()
        ),
        None,
    )
    return LoraFile(path, path.stem, entry.arch, max(ranks, default=0), tensors, triggers or tags[:3], tags, preview)


def _module_tables(pipe) -> dict[str, dict[str, object]]:
    tables: dict[str, dict[str, object]] = {}
    for prefix, attr in (("unet", "unet"), ("te", "text_encoder"), ("te2", "text_encoder_2")):
        model = getattr(pipe, attr, None)
        if model is None:
            continue
        table: dict[str, object] = {}
        for name, mod in model.named_modules():
            base = getattr(mod, "base_layer", mod)
            for n in (name, "text_model." + name if prefix != "unet" and not name.startswith("text_model") else name):
                n = n.replace(".base_layer", "")
                table[n] = base
                table[n.replace(".", "_")] = base
        tables[prefix] = table
    return tables


def _in_features(mod) -> int | None:
    return getattr(mod, "in_features", None) or getattr(mod, "in_channels", None)


def _diffusers_block_names(tensors: dict[str, TensorInfo], pipe) -> dict[str, TensorInfo]:
    """kohya's SDXL layout names the original UNet's blocks (`lora_unet_input_blocks_4_1_…`): the same
    tensors under diffusers' block names (`lora_unet_down_blocks_1_attentions_0_…`), as diffusers maps
    them when it loads the file (its mapping reads names only)."""
    if not any(p in k for k in tensors for p in ("input_blocks", "middle_block", "output_blocks")):
        return tensors
    try:
        from diffusers.loaders.lora_conversion_utils import _maybe_map_sgm_blocks_to_diffusers
    except ImportError:  # pragma: no cover - diffusers moved it: let the loader decide
        return tensors
    mapped = _maybe_map_sgm_blocks_to_diffusers(dict(tensors), pipe.unet.config)  # diffusers' numbers, SGM words
    words = (("input_blocks", "down_blocks"), ("middle_block", "mid_block"), ("output_blocks", "up_blocks"))
    out = {}
    for key, t in mapped.items():
        for old, new in words:
            key = key.replace(old, new)
        out[key] = t
    return out


def check_fits(lf: LoraFile, pipe) -> None:
    """Refuse a LoRA whose layers are missing from, or shaped differently than, the model's."""
    tables = _module_tables(pipe)
    checked = 0
    for key, t in _diffusers_block_names(lf.tensors, pipe).items():
        m = re.match(
            r"(?:lora_(unet|te2|te\d?)_(.+)\.lora_down\.weight|(unet|text_encoder_2|text_encoder)\.(.+)\.lora_A\.weight)$",
            key,
        )
        if not m:
            continue
        part = m[1] or {"unet": "unet", "text_encoder": "te", "text_encoder_2": "te2"}[m[3]]
        part = "te" if part == "te1" else part
        path = m[2] or m[4]
        table = tables.get(part)
        if table is None:
            raise PluginError(
                f"LoRA “{lf.name}” has layers for a second text encoder: it is for SDXL, and this model is not."
            )
        mod = table.get(path)
        if mod is None:
            continue
        checked += 1
        want = _in_features(mod)
        if want is not None and t.shape[1] != want:
            raise PluginError(
                f"LoRA “{lf.name}” was made for another model architecture"
                f"{f' ({lf.arch.upper()})' if lf.arch else ''}: its layer {path} takes {t.shape[1]} inputs, "
                f"this model's takes {want}."
            )
    if checked == 0:
        raise PluginError(f"LoRA “{lf.name}” matches none of this model's layers: it is for another architecture.")


def flow_lora(lf: LoraFile, pipe) -> dict:
    """A FLUX/SD3 LoRA file as diffusers' state dict for `pipe.load_lora_weights`, after checking
    that each adapted layer exists in the model's transformer with the LoRA's input width."""
    from safetensors.torch import load_file

    from studio.engine.flow_keys import lora_format, lora_to_diffusers

    arch = "flux" if type(pipe).__name__.startswith("Flux") else "sd3"
    state = load_file(str(lf.path))
    cfg = pipe.transformer.config
    hidden = int(cfg.num_attention_heads * cfg.attention_head_dim)
    if lora_format(state) == "diffusers":
        converted = {k: v for k, v in state.items() if k.startswith("transformer.")}
    else:
        converted = lora_to_diffusers(state, arch, hidden)
    modules = dict(pipe.transformer.named_modules())
    checked = 0
    for key, t in converted.items():
        if not key.endswith(".lora_A.weight"):
            continue
        name = key[len("transformer.") : -len(".lora_A.weight")]
        mod = modules.get(name)
        mod = getattr(mod, "base_layer", mod)
        if mod is None:
            raise PluginError(
                f"LoRA “{lf.name}” adapts {name}, which this {arch.upper()} model does not have: "
                "it is for another model."
            )
        want = _in_features(mod)
        if want is not None and t.shape[1] != want:
            raise PluginError(
                f"LoRA “{lf.name}” was made for another model: its layer {name} takes {t.shape[1]} "
                f"inputs, this model's takes {want}."
            )
        checked += 1
    if checked == 0:
        raise PluginError(f"LoRA “{lf.name}” matches none of this model's layers: it is for another architecture.")
    return converted
