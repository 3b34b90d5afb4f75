"""Tiny random FLUX.1 and SD 3/3.5 pipelines, built offline with diffusers' own classes, and saved
in every format users download them in.

FLUX.1 dev (guidance embedder), schnell (none) and Fill (latents + masked-image latents + mask in);
SD 3 medium, 3.5 medium (dual attention, qk norm) and 3.5 large (qk norm). The real topology with
tiny widths: a 16-channel AutoencoderKL (four levels, no quant convs, the families' scale and
shift), CLIP text encoders with the real CLIP vocabulary, and a T5 encoder from a small T5Config
with a tokenizer built here (a small Unigram vocabulary made with `tokenizers`, wrapped as
T5TokenizerFast — T5's own vocabulary cannot be shipped or fetched).

Formats (`save_tiny_flow`): `diffusers` (a model folder); `single-file` (SD 3.5: one all-in-one
`.safetensors` in Stability's layout with VAE and text encoders; FLUX: BFL's transformer-only
file); `comfy` (the transformer under ComfyUI's `model.diffusion_model.` prefix); `gguf` (the
transformer quantized with gguf's numpy quantizers, Q8_0 by default); `fp8` (the transformer
stored as float8_e4m3fn). Transformer-only formats come with the separate files ComfyUI's folders
hold: `models/text_encoders/clip_l.safetensors` (+ `clip_g` for SD3), `t5xxl.safetensors` with a
`t5_tokenizer/` folder beside it, and `models/vae/ae.safetensors` (BFL/LDM keys).
"""

from __future__ import annotations

import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FLOW_ARCHS = ("flux-dev", "flux-schnell", "flux-fill", "sd3-medium", "sd35-medium", "sd35-large")
FLOW_FORMATS = ("diffusers", "single-file", "comfy", "gguf", "fp8")
NATIVE_SIZE = 64
_WORDS = (  # noqa: SIM905 — a readable word list
    "a the of and on in at with to is red green blue yellow white black orange purple circle "
    "square star triangle large small big top left right bottom middle center background photo "
    "picture painting cat dog house tree sky sea lighthouse dusk night day sun moon mountain "
    "city street portrait face woman man person blurry ugly detailed sharp high quality"
).split()


def build_t5_tokenizer(max_length: int = 512):
    """A small T5-style tokenizer (Unigram pieces with SentencePiece's ▁ word marks, `</s>` appended)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import T5TokenizerFast

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -3.0)]
    vocab += [(c, -6.0) for c in string.ascii_letters + string.digits + string.punctuation]
    vocab += [("▁" + w, -2.0) for w in _WORDS]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(" +", " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    return T5TokenizerFast(
        tokenizer_object=tok,
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        extra_ids=0,
        model_max_length=max_length,
    )


def _clip_cfg(hidden: int, act: str = "quick_gelu", pad: int = 49407) -> dict[str, Any]:
    return dict(
        vocab_size=49408,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=2,
        num_attention_heads=max(1, hidden // 64),
        max_position_embeddings=77,
        hidden_act=act,
        projection_dim=hidden,
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=pad,
    )


def _t5(d_model: int, vocab: int):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(
        T5Config(
            vocab_size=vocab,
            d_model=d_model,
            d_kv=8,
            d_ff=2 * d_model,
            num_layers=2,
            num_heads=4,
            relative_attention_num_buckets=8,
            feed_forward_proj="gated-gelu",
            is_encoder_decoder=False,
            use_cache=False,
            pad_token_id=0,
            eos_token_id=1,
            decoder_start_token_id=0,
        )
    )


def _vae16(arch: str):
    from diffusers import AutoencoderKL

    from studio.core.checkpoint import defaults

    d = defaults()["flux" if arch.startswith("flux") else "sd3"]["vae"]
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=16,
        block_out_channels=(32, 32, 64, 64),
        layers_per_block=1,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        norm_num_groups=32,
        use_quant_conv=False,
        use_post_quant_conv=False,
        scaling_factor=d["scaling_factor"],
        shift_factor=d["shift_factor"],
        sample_size=NATIVE_SIZE,
    )


def tiny_flow_pipeline(arch: str = "flux-dev", seed: int = 0):
    """A tiny FluxPipeline / FluxFillPipeline / StableDiffusion3Pipeline with random weights."""
    import torch
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        FluxFillPipeline,
        FluxPipeline,
        FluxTransformer2DModel,
        SD3Transformer2DModel,
        StableDiffusion3Pipeline,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from studio.core.checkpoint import defaults
    from studio.engine.clip_vocab import build_clip_tokenizer

    if arch not in FLOW_ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose from {FLOW_ARCHS}")
    t5_tok = build_t5_tokenizer(256 if arch == "flux-schnell" or arch.startswith("sd3") else 512)
    torch.manual_seed(seed)
    if arch.startswith("flux"):
        fill = arch == "flux-fill"
        transformer = FluxTransformer2DModel(
            patch_size=1,
            in_channels=384 if fill else 64,
            out_channels=64 if fill else None,
            num_layers=1,
            num_single_layers=2,
            attention_head_dim=16,
            num_attention_heads=2,
            joint_attention_dim=32,
            pooled_projection_dim=32,
            guidance_embeds=arch != "flux-schnell",
            axes_dims_rope=(4, 6, 6),
        )
        torch.manual_seed(seed + 1)
        vae = _vae16(arch)
        torch.manual_seed(seed + 2)
        clip = CLIPTextModel(CLIPTextConfig(**_clip_cfg(32)))
        torch.manual_seed(seed + 3)
        t5 = _t5(32, len(t5_tok))
        sched = defaults()["flux"]["scheduler_schnell" if arch == "flux-schnell" else "scheduler"]
        cls = FluxFillPipeline if fill else FluxPipeline
        pipe = cls(
            scheduler=FlowMatchEulerDiscreteScheduler(**sched),
            vae=vae,
            text_encoder=clip,
            tokenizer=build_clip_tokenizer(),
            text_encoder_2=t5,
            tokenizer_2=t5_tok,
            transformer=transformer,
        )
    else:
        variant = {"sd3-medium": "3-medium", "sd35-medium": "3.5-medium", "sd35-large": "3.5-large"}[arch]
        qk = variant != "3-medium"
        transformer = SD3Transformer2DModel(
            sample_size=NATIVE_SIZE // 8,
            patch_size=2,
            in_channels=16,
            num_layers=2,
            attention_head_dim=32,
            num_attention_heads=2,
            joint_attention_dim=96,
            caption_projection_dim=64,
            pooled_projection_dim=96,
            out_channels=16,
            pos_embed_max_size=16,
            qk_norm="rms_norm" if qk else None,
            dual_attention_layers=(0,) if variant == "3.5-medium" else (),
        )
        torch.manual_seed(seed + 1)
        vae = _vae16(arch)
        torch.manual_seed(seed + 2)
        clip_l = CLIPTextModelWithProjection(CLIPTextConfig(**_clip_cfg(32)))
        clip_g = CLIPTextModelWithProjection(CLIPTextConfig(**_clip_cfg(64, "gelu", pad=0)))
        torch.manual_seed(seed + 3)
        t5 = _t5(96, len(t5_tok))
        pipe = StableDiffusion3Pipeline(
            transformer=transformer,
            scheduler=FlowMatchEulerDiscreteScheduler(**defaults()["sd3"]["scheduler"]),
            vae=vae,
            text_encoder=clip_l,
            tokenizer=build_clip_tokenizer(),
            text_encoder_2=clip_g,
            tokenizer_2=build_clip_tokenizer(pad_token="!"),
            text_encoder_3=t5,
            tokenizer_3=t5_tok,
        )
    for part in pipe.components.values():
        if isinstance(part, torch.nn.Module):
            part.eval()
    return pipe


@dataclass
class FlowFiles:
    """What `save_tiny_flow` wrote: the model (folder or file) and the separate files it needs."""

    model: Path
    encoders: list[Path] = field(default_factory=list)
    vae: Path | None = None


def _hf_clip(model) -> dict:
    from studio.engine.ldm import _text_model_key

    return {_text_model_key(k): v for k, v in model.state_dict().items() if "position_ids" not in k}


def vae_to_ldm(vae) -> dict:
    from studio.engine.ldm import vae_key_to_ldm

    n = len(vae.config.block_out_channels)
    out = {}
    for k, v in vae.state_dict().items():
        name = vae_key_to_ldm(k, n)
        if ".mid.attn_1." in name and name.endswith(".weight") and v.ndim == 2:
            v = v[:, :, None, None]
        out[name] = v
    return out


def _save(tensors: dict, path: Path, metadata: dict[str, str] | None = None) -> Path:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.detach().contiguous().clone() for k, v in tensors.items()},
        str(path),
        metadata={"format": "pt", **(metadata or {})},
    )
    return path


def save_encoders(pipe, root: Path) -> list[Path]:
    """The pipeline's text encoders as ComfyUI keeps them, with the T5 tokenizer beside T5."""
    folder = root / "models" / "text_encoders"
    sd3 = hasattr(pipe, "text_encoder_3")
    files = [_save(_hf_clip(pipe.text_encoder), folder / "clip_l.safetensors")]
    if sd3:
        files.append(_save(_hf_clip(pipe.text_encoder_2), folder / "clip_g.safetensors"))
    t5 = pipe.text_encoder_3 if sd3 else pipe.text_encoder_2
    files.append(_save(t5.state_dict(), folder / "t5xxl.safetensors"))
    (pipe.tokenizer_3 if sd3 else pipe.tokenizer_2).save_pretrained(folder / "t5_tokenizer")
    return files


def original_transformer(pipe) -> dict:
    from studio.engine.flow_keys import to_original

    return to_original(
        pipe.transformer.state_dict(),
        "flux" if hasattr(pipe, "text_encoder_2") and not hasattr(pipe, "text_encoder_3") else "sd3",
    )


def save_gguf(state: dict, path: Path, arch: str, quant: str = "Q8_0") -> Path:
    """A GGUF file as city96's FLUX/SD3 GGUFs are laid out: original key names, 2-D weights whose
    rows hold whole blocks quantized with `quant`, everything else kept in float32."""
    import gguf
    import numpy as np

    qtype = gguf.GGMLQuantizationType[quant]
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), arch=arch)
    for name, t in state.items():
        arr = t.detach().float().cpu().numpy()
        if arr.ndim == 2 and arr.shape[1] % block == 0 and name.endswith(".weight"):
            writer.add_tensor(name, gguf.quants.quantize(arr, qtype), raw_dtype=qtype)
        else:
            writer.add_tensor(name, np.ascontiguousarray(arr.astype(np.float32)))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def save_tiny_flow(
    out: str | Path, arch: str = "flux-dev", fmt: str = "diffusers", seed: int = 0, quant: str = "Q8_0"
) -> FlowFiles:
    """Write a tiny FLUX/SD3 model in `fmt` under `out` (see the module docstring)."""
    import torch

    from studio.core.flowmodels import AIO_ENCODERS, AIO_VAE, COMFY

    if fmt not in FLOW_FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {FLOW_FORMATS}")
    out = Path(out)
    pipe = tiny_flow_pipeline(arch, seed)
    if fmt == "diffusers":
        pipe.save_pretrained(out, safe_serialization=True)
        return FlowFiles(out)
    family = "flux" if arch.startswith("flux") else "sd3"
    state = original_transformer(pipe)
    if fmt == "single-file" and family == "sd3":  # one file: transformer, VAE and the three encoders
        tensors = {COMFY + k: v for k, v in state.items()}
        tensors.update({AIO_VAE + k: v for k, v in vae_to_ldm(pipe.vae).items()})
        for slot, enc in (("clip_l", pipe.text_encoder), ("clip_g", pipe.text_encoder_2)):
            tensors.update({AIO_ENCODERS[slot] + k: v for k, v in _hf_clip(enc).items()})
        tensors.update({AIO_ENCODERS["t5xxl"] + k: v for k, v in pipe.text_encoder_3.state_dict().items()})
        path = out if out.suffix == ".safetensors" else out / f"tiny-{arch}.safetensors"
        _save(tensors, path, {"modelspec.architecture": f"stable-diffusion-v3-{arch}"})
        pipe.tokenizer_3.save_pretrained(path.parent / "t5_tokenizer")
        return FlowFiles(path)
    root = out
    name = f"tiny-{arch}"
    if fmt == "gguf":
        path = save_gguf(state, root / "models" / "unet" / f"{name}-{quant}.gguf", family, quant)
    else:
        if fmt == "comfy":
            state = {COMFY + k: v for k, v in state.items()}
        elif fmt == "fp8":
            state = {k: v.to(torch.float8_e4m3fn) if v.ndim == 2 else v for k, v in state.items()}
        path = _save(
            state, root / "models" / "diffusion_models" / f"{name}{'-fp8' if fmt == 'fp8' else ''}.safetensors"
        )
    vae = _save(
        vae_to_ldm(pipe.vae),
        root / "models" / "vae" / ("ae.safetensors" if family == "flux" else "sd3_vae.safetensors"),
    )
    return FlowFiles(path, save_encoders(pipe, root), vae)


def save_tiny_flow_lora(
    out: str | Path, arch: str = "flux-dev", fmt: str = "kohya", seed: int = 0, rank: int = 4
) -> Path:
    """A tiny random LoRA for the tiny `arch` transformer's attention (and FLUX single blocks'
    fused q/k/v/MLP) layers, in `fmt`: kohya (`lora_unet_…` with alpha), bfl (`diffusion_model.…
    lora_A/B`, as BFL and ComfyUI save them) or diffusers (`transformer.…lora_A/B`). The same seed
    gives the same LoRA in every format."""
    import torch
    from safetensors.torch import save_file

    from studio.engine.flow_keys import lora_to_diffusers, rules_for, to_original

    pipe = tiny_flow_pipeline(arch, 0)
    family = "flux" if arch.startswith("flux") else "sd3"
    orig = to_original(pipe.transformer.state_dict(), family)
    g = torch.Generator().manual_seed(seed)
    wanted = ("img_attn.qkv", "txt_attn.proj", "linear1", "linear2", "x_block.attn.qkv", "x_block.attn.proj")
    modules: dict[str, tuple] = {}
    for rule in rules_for(orig, family, original=True):
        if rule.src.endswith(wanted):
            w = orig[rule.src + ".weight"]
            a = torch.randn(rank, w.shape[1], generator=g) / w.shape[1] ** 0.5
            b = torch.randn(w.shape[0], rank, generator=g) * 0.3
            modules[rule.src] = (a, b)
    alpha = float(rank) / 2
    if fmt == "kohya":  # alpha/rank = 0.5: the stored up-projection is twice the effective one
        tensors = {}
        for name, (a, b) in modules.items():
            base = "lora_unet_" + name.replace(".", "_")
            tensors.update(
                {f"{base}.lora_down.weight": a, f"{base}.lora_up.weight": b * 2, f"{base}.alpha": torch.tensor(alpha)}
            )
    else:
        tensors = {}
        for name, (a, b) in modules.items():
            tensors.update({f"diffusion_model.{name}.lora_A.weight": a, f"diffusion_model.{name}.lora_B.weight": b})
        if fmt == "diffusers":
            hidden = pipe.transformer.config.num_attention_heads * pipe.transformer.config.attention_head_dim
            tensors = lora_to_diffusers(tensors, family, hidden)
        elif fmt != "bfl":
            raise ValueError(f"unknown LoRA format {fmt!r}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(
        {k: v.contiguous().clone() for k, v in tensors.items()},
        str(out),
        metadata={"ss_base_model_version": "flux1" if family == "flux" else "sd3"},
    )
    return out


def save_tiny_flux_controlnet(out: str | Path, union: bool = False, seed: int = 0) -> Path:
    """A tiny FluxControlNetModel (a diffusers folder) for the tiny FLUX dev transformer — Union when
    asked (`num_mode`) — with its zero-initialised output projections randomised so that it steers."""
    import torch
    from diffusers import FluxControlNetModel

    pipe = tiny_flow_pipeline("flux-dev", 0)
    t = pipe.transformer
    cn = FluxControlNetModel.from_transformer(
        t,
        num_layers=1,
        num_single_layers=1,
        attention_head_dim=t.config.attention_head_dim,
        num_attention_heads=t.config.num_attention_heads,
    )
    if union:
        cfg = dict(cn.config)
        cfg["num_mode"] = 10
        union_cn = FluxControlNetModel.from_config(cfg)
        union_cn.load_state_dict(cn.state_dict(), strict=False)
        cn = union_cn
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in [*cn.controlnet_blocks, *cn.controlnet_single_blocks, cn.controlnet_x_embedder]:
            mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) * 0.05)
    cn.save_pretrained(Path(out), safe_serialization=True)
    return Path(out)
