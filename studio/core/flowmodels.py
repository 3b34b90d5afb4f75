"""FLUX.1 and SD 3/3.5 files from their headers alone: which family and variant, which parts the file
holds, and the diffusers configs its tensor shapes (plus `resources/model_defaults.json`) describe.

Layouts read: BFL's (`double_blocks.…`, FLUX) and Stability's (`joint_blocks.…`, SD3) key names,
bare or under ComfyUI's `model.diffusion_model.` prefix; an SD 3.5 all-in-one file with its VAE
(`first_stage_model.`) and text encoders (`text_encoders.clip_l|clip_g|t5xxl.transformer.`);
diffusers' own transformer files; GGUF files (`.gguf`, quantized: their shapes are given in
GGUF's reversed order and turned back here). Separate text-encoder and VAE files are told apart by
their keys and widths. Plain Python, no torch.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.core.checkpoint import TensorInfo, clip_config, defaults, read_header, vae_config
from studio.core.errors import CorruptModel

COMFY = "model.diffusion_model."
FLUX_MARK = "double_blocks.0.img_attn.norm.key_norm.scale"
FLUX_DIFFUSERS_MARK = "single_transformer_blocks.0.attn.norm_k.weight"
SD3_MARK = "joint_blocks.0.context_block.adaLN_modulation.1.bias"
SD3_DIFFUSERS_MARK = "transformer_blocks.0.norm1_context.linear.weight"
AIO_ENCODERS = {
    "clip_l": "text_encoders.clip_l.transformer.",
    "clip_g": "text_encoders.clip_g.transformer.",
    "t5xxl": "text_encoders.t5xxl.transformer.",
}
AIO_VAE = "first_stage_model."
NF4_MARK = "quant_state.bitsandbytes__nf4"


@dataclass
class FlowInfo:
    """What a FLUX/SD3 file holds and the configs its shapes describe."""

    path: Path
    arch: str  # flux | sd3
    variant: str  # flux: dev | schnell | fill | control; sd3: 3-medium | 3.5-medium | 3.5-large
    layout: str  # bfl | diffusers  (Stability's MMDiT keys count as "bfl": the original layout)
    prefix: str  # the denoiser's key prefix in the file ("" or "model.diffusion_model.")
    precision: str  # bf16 | fp16 | fp32 | fp8 | nf4 | a GGUF type (Q8_0 …)
    transformer: dict[str, Any]
    encoders: dict[str, dict[str, Any]] = field(default_factory=dict)  # slot -> config (all-in-one files)
    vae: dict[str, Any] | None = None  # the VAE's config when the file holds one

    @property
    def gguf(self) -> bool:
        return self.path.suffix.lower() == ".gguf"


def read_any_header(path: str | Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    """Tensor names and shapes (torch order) of a `.safetensors` or `.gguf` file."""
    path = Path(path)
    if path.suffix.lower() == ".gguf":
        return read_gguf_header(path)
    return read_header(path)


def read_gguf_header(path: Path) -> tuple[dict[str, TensorInfo], dict[str, str]]:
    try:
        from gguf import GGUFReader
    except ImportError:  # pragma: no cover - gguf is a dependency
        raise CorruptModel(f"{path.name}: reading GGUF files needs the gguf package (pip install gguf).") from None
    try:
        reader = GGUFReader(str(path))
    except Exception as exc:  # noqa: BLE001 — truncated or not a GGUF file
        raise CorruptModel(f"{path.name} is not a readable GGUF file ({type(exc).__name__}: {exc}).") from None
    tensors = {
        t.name: TensorInfo(t.tensor_type.name, tuple(int(s) for s in reversed(t.shape.tolist())))
        for t in reader.tensors
    }
    meta: dict[str, str] = {}
    arch = reader.fields.get("general.architecture")
    if arch is not None and arch.data:
        meta["general.architecture"] = bytes(arch.parts[arch.data[0]]).decode(errors="replace")
    return tensors, meta


def _strip(tensors: dict[str, TensorInfo]) -> tuple[dict[str, TensorInfo], str]:
    if any(k.startswith(COMFY) for k in tensors):
        return {k[len(COMFY) :]: v for k, v in tensors.items() if k.startswith(COMFY)}, COMFY
    return tensors, ""


def is_flow_denoiser(tensors: dict[str, TensorInfo]) -> bool:
    t, _ = _strip(tensors)
    return (
        any(m in t for m in (FLUX_MARK, SD3_MARK))
        or (FLUX_DIFFUSERS_MARK in t and "x_embedder.weight" in t)
        or (SD3_DIFFUSERS_MARK in t and "pos_embed.pos_embed" in t)
    )


def _count(keys: Iterable[str], pattern: str) -> int:
    rx = re.compile(pattern)
    found = {int(m[1]) for k in keys if (m := rx.match(k))}
    return max(found) + 1 if found else 0


def _precision(tensors: dict[str, TensorInfo]) -> str:
    from studio.core.catalogue import DTYPE_NAMES

    if any(k.endswith(NF4_MARK) for k in tensors):
        return "nf4"
    weights = [t.dtype for k, t in tensors.items() if k.endswith(".weight") and len(t.shape) == 2]
    if not weights:
        return ""
    top = max(set(weights), key=weights.count)
    return DTYPE_NAMES.get(top, top)


def flux_rope_axes(head_dim: int) -> list[int]:
    """FLUX splits each head's rotary embedding over (index, height, width) axes: 16/56/56 for its
    128-wide heads. For other widths keep that shape: about an eighth for the first axis, the rest
    halved, every part even."""
    known = defaults()["flux"]["transformer"].get("axes_dims_rope_by_head_dim", {})
    if str(head_dim) in known:
        return list(known[str(head_dim)])
    a = 2 * max(1, round(head_dim / 16))
    while (head_dim - a) % 4:
        a += 2
    return [a, (head_dim - a) // 2, (head_dim - a) // 2]


def flux_config(t: dict[str, TensorInfo], layout: str) -> tuple[dict[str, Any], str]:
    """FluxTransformer2DModel config and variant from a FLUX denoiser's (prefix-free) tensors."""
    d = defaults()["flux"]["transformer"]
    keys = list(t)
    if layout == "bfl":
        hidden, in_ch = t["img_in.weight"].shape[:2]
        head_dim = t["double_blocks.0.img_attn.norm.query_norm.scale"].shape[0]
        joint, pooled = t["txt_in.weight"].shape[1], t["vector_in.in_layer.weight"].shape[1]
        out_ch = t["final_layer.linear.weight"].shape[0]
        layers, singles = _count(keys, r"double_blocks\.(\d+)\."), _count(keys, r"single_blocks\.(\d+)\.")
        guidance = "guidance_in.in_layer.weight" in t
    else:
        hidden, in_ch = t["x_embedder.weight"].shape[:2]
        head_dim = t["transformer_blocks.0.attn.norm_q.weight"].shape[0]
        joint, pooled = (
            t["context_embedder.weight"].shape[1],
            t["time_text_embed.text_embedder.linear_1.weight"].shape[1],
        )
        out_ch = t["proj_out.weight"].shape[0]
        layers = _count(keys, r"transformer_blocks\.(\d+)\.")
        singles = _count(keys, r"single_transformer_blocks\.(\d+)\.")
        guidance = "time_text_embed.guidance_embedder.linear_1.weight" in t
    cfg = dict(
        _class_name="FluxTransformer2DModel",
        patch_size=1,
        in_channels=in_ch,
        out_channels=out_ch if out_ch != in_ch else None,
        num_layers=layers,
        num_single_layers=singles,
        attention_head_dim=head_dim,
        num_attention_heads=hidden // head_dim,
        joint_attention_dim=joint,
        pooled_projection_dim=pooled,
        guidance_embeds=guidance,
        axes_dims_rope=flux_rope_axes(head_dim),
    )
    ratio = in_ch / out_ch
    if ratio == d["fill_in_ratio"]:
        variant = "fill"  # latents + masked-image latents + the packed 8×8 mask
    elif ratio == 2:
        variant = "control"  # Canny/Depth "control" checkpoints: latents + control-image latents
    else:
        variant = "dev" if guidance else "schnell"
    return cfg, variant


def sd3_config(t: dict[str, TensorInfo], layout: str) -> tuple[dict[str, Any], str]:
    """SD3Transformer2DModel config and variant (3 medium, 3.5 medium, 3.5 large) from its tensors."""
    keys = list(t)
    if layout == "bfl":
        proj = t["x_embedder.proj.weight"].shape
        layers = _count(keys, r"joint_blocks\.(\d+)\.")
        dual = sorted({int(m[1]) for k in keys if (m := re.match(r"joint_blocks\.(\d+)\.x_block\.attn2\.", k))})
        qk = any(".attn.ln_q." in k for k in keys)
        pos = t["pos_embed"].shape
        joint, caption = t["context_embedder.weight"].shape[1], t["context_embedder.weight"].shape[0]
        pooled = t["y_embedder.mlp.0.weight"].shape[1]
        final = t["final_layer.linear.weight"].shape[0]
        qk_dim = t["joint_blocks.0.x_block.attn.ln_q.weight"].shape[0] if qk else 0
    else:
        proj = t["pos_embed.proj.weight"].shape
        layers = _count(keys, r"transformer_blocks\.(\d+)\.")
        dual = sorted({int(m[1]) for k in keys if (m := re.match(r"transformer_blocks\.(\d+)\.attn2\.", k))})
        qk = "transformer_blocks.0.attn.norm_q.weight" in t
        pos = t["pos_embed.pos_embed"].shape
        joint, caption = t["context_embedder.weight"].shape[1], t["context_embedder.weight"].shape[0]
        pooled = t["time_text_embed.text_embedder.linear_1.weight"].shape[1]
        final = t["proj_out.weight"].shape[0]
        qk_dim = t["transformer_blocks.0.attn.norm_q.weight"].shape[0] if qk else 0
    hidden, in_ch, patch = proj[0], proj[1], proj[2]
    # MMDiT: hidden = 64 · depth with one 64-wide head per block (SD3 medium 24, SD3.5 large 38);
    # a qk-normed model says its head width outright.
    head_dim = qk_dim or max(1, hidden // max(layers, 1))
    cfg = dict(
        _class_name="SD3Transformer2DModel",
        sample_size=defaults()["sd3"]["sample_size"] // 8,
        patch_size=patch,
        in_channels=in_ch,
        num_layers=layers,
        attention_head_dim=head_dim,
        num_attention_heads=hidden // head_dim,
        joint_attention_dim=joint,
        caption_projection_dim=caption,
        pooled_projection_dim=pooled,
        out_channels=final // (patch * patch),
        pos_embed_max_size=round(pos[1] ** 0.5),
        qk_norm="rms_norm" if qk else None,
        dual_attention_layers=tuple(dual),
    )
    variant = "3.5-medium" if dual else "3.5-large" if qk else "3-medium"
    return cfg, variant


def t5_config(t: dict[str, TensorInfo], prefix: str = "") -> dict[str, Any]:
    """T5EncoderModel config (transformers' names) from a T5 encoder's tensors."""
    keys = [k[len(prefix) :] for k in t if k.startswith(prefix)]
    emb = t.get(prefix + "shared.weight") or t.get(prefix + "encoder.embed_tokens.weight")
    if emb is None:
        raise CorruptModel("the T5 encoder has no token embedding (shared.weight)")
    vocab, d_model = emb.shape
    bias = t[prefix + "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"].shape
    heads = bias[1]
    gated = prefix + "encoder.block.0.layer.1.DenseReluDense.wi_0.weight" in t
    wi = "wi_0" if gated else "wi"
    return dict(
        architectures=["T5EncoderModel"],
        model_type="t5",
        vocab_size=vocab,
        d_model=d_model,
        d_kv=t[prefix + "encoder.block.0.layer.0.SelfAttention.q.weight"].shape[0] // heads,
        d_ff=t[prefix + f"encoder.block.0.layer.1.DenseReluDense.{wi}.weight"].shape[0],
        num_layers=_count(keys, r"encoder\.block\.(\d+)\."),
        num_heads=heads,
        relative_attention_num_buckets=bias[0],
        relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu" if gated else "relu",
        is_encoder_decoder=False,
        use_cache=False,
        pad_token_id=0,
        eos_token_id=1,
        decoder_start_token_id=0,
        dense_act_fn="gelu_new" if gated else "relu",
        is_gated_act=gated,
        tie_word_embeddings=False,
    )


def encoder_kind(tensors: dict[str, TensorInfo], prefix: str = "") -> tuple[str, dict[str, Any]] | None:
    """("clip_l" | "clip_g" | "t5xxl", config) for a separate text-encoder file, or None."""
    if prefix + "encoder.block.0.layer.0.SelfAttention.q.weight" in tensors:
        return "t5xxl", t5_config(tensors, prefix)
    for p in (prefix + "text_model.", prefix + "transformer.text_model."):
        if p + "embeddings.token_embedding.weight" in tensors:
            d = defaults()["sdxl"]["text_encoder"]
            cfg = clip_config(tensors, p, d)
            hidden = cfg["hidden_size"]
            proj = tensors.get(p.removesuffix("text_model.") + "text_projection.weight")
            if proj is not None:
                cfg["projection_dim"] = proj.shape[0]
            slot = "clip_g" if hidden >= 1280 else "clip_l"
            if hidden >= 1280:
                cfg["hidden_act"] = "gelu"
            cfg["_prefix"] = p
            return slot, cfg
    return None


def vae16_config(tensors: dict[str, TensorInfo], arch: str) -> dict[str, Any] | None:
    """A 16-channel VAE's config (BFL/LDM keys, optionally `first_stage_model.`/`vae.`), or None."""
    for prefix in ("", AIO_VAE, "vae."):
        key = prefix + "decoder.conv_in.weight"
        if key in tensors and prefix + "encoder.down.0.block.0.conv1.weight" in tensors:
            fake = {AIO_VAE + k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
            d = defaults()[arch]["vae"]
            cfg = vae_config(fake, d)
            cfg.update(
                latent_channels=tensors[key].shape[1],
                scaling_factor=d["scaling_factor"],
                shift_factor=d["shift_factor"],
                use_quant_conv=prefix + "quant_conv.weight" in tensors,
                use_post_quant_conv=prefix + "post_quant_conv.weight" in tensors,
            )
            cfg["_prefix"] = prefix
            return cfg
    return None


def identify_flow(path: str | Path, tensors: dict[str, TensorInfo] | None = None) -> FlowInfo | None:
    """A FLUX or SD3 file (denoiser only, or SD3 all-in-one), or None when it is neither."""
    path = Path(path)
    if tensors is None:
        tensors, _ = read_any_header(path)
    t, prefix = _strip(tensors)
    if FLUX_MARK in t or (FLUX_DIFFUSERS_MARK in t and "x_embedder.weight" in t):
        layout = "bfl" if FLUX_MARK in t else "diffusers"
        cfg, variant = flux_config(t, layout)
        info = FlowInfo(path, "flux", variant, layout, prefix, _precision(t), cfg)
    elif SD3_MARK in t or (SD3_DIFFUSERS_MARK in t and "pos_embed.pos_embed" in t):
        layout = "bfl" if SD3_MARK in t else "diffusers"
        cfg, variant = sd3_config(t, layout)
        info = FlowInfo(path, "sd3", variant, layout, prefix, _precision(t), cfg)
    else:
        return None
    for slot, p in AIO_ENCODERS.items():
        found = encoder_kind(tensors, p)
        if found is not None:
            info.encoders[slot] = found[1]
    if any(k.startswith(AIO_VAE) for k in tensors):
        info.vae = vae16_config(tensors, info.arch)
    return info


def variant_label(arch: str, variant: str) -> str:
    from studio.core.families import FLUX_VARIANTS, SD3_VARIANTS

    if arch == "flux":
        return FLUX_VARIANTS.get(variant, variant)
    return SD3_VARIANTS.get(variant, variant)
