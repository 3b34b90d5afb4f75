"""Tiny randomly initialised Stable Diffusion pipelines, for tests and for trying the studio offline.

They use the real block topology of each architecture (SD 1.x: four levels, two layers per block,
cross-attention at the first three; SDXL: three levels, two text encoders, added time embeddings)
with tiny widths, and the real 49,408-token CLIP vocabulary, so every loader path, the single-file
key mapping included, runs on them exactly as on a full checkpoint. Nothing is downloaded.

`save_tiny_model(out, arch=..., fmt="diffusers" | "single-file")` writes one; `fmt="single-file"`
writes one `.safetensors` in the original LDM (A1111 / Civitai) key layout via `studio.engine.ldm`.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

ARCHS = ("sd15", "sd15-inpaint", "sd2", "sdxl")
NATIVE_SIZE = 64  # pixels: 8×8 latents

# Shapes follow the rules of resources/model_defaults.json (heads, norm groups) so that a
# single-file checkpoint of them is fully described by its tensor shapes plus those defaults.
_SD_UNET: dict[str, Any] = dict(
    sample_size=NATIVE_SIZE // 8,
    in_channels=4,
    out_channels=4,
    block_out_channels=(32, 64, 64, 64),
    layers_per_block=2,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    cross_attention_dim=64,
    attention_head_dim=8,
    norm_num_groups=32,
)
_VAE: dict[str, Any] = dict(
    sample_size=NATIVE_SIZE,
    in_channels=3,
    out_channels=3,
    latent_channels=4,
    block_out_channels=(32, 32, 64, 64),
    layers_per_block=1,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    norm_num_groups=32,
)
_CLIP: dict[str, Any] = dict(
    vocab_size=49408,
    hidden_size=64,
    intermediate_size=128,
    num_hidden_layers=2,
    num_attention_heads=1,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    projection_dim=64,
    bos_token_id=49406,
    eos_token_id=49407,
    pad_token_id=49407,
)


def tiny_components(arch: str = "sd15", seed: int = 0) -> dict[str, Any]:
    """The components of a tiny pipeline (not yet wrapped in a pipeline object)."""
    import torch
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    from studio.engine.clip_vocab import build_clip_tokenizer

    if arch not in ARCHS:
        raise ValueError(f"unknown arch {arch!r}; choose from {ARCHS}")
    unet_cfg = copy.deepcopy(_SD_UNET)
    clip_cfg = copy.deepcopy(_CLIP)
    sched_kw: dict[str, Any] = dict(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        num_train_timesteps=1000,
        steps_offset=1,
        timestep_spacing="leading",
    )
    vae_cfg = copy.deepcopy(_VAE)
    if arch == "sd15-inpaint":
        unet_cfg["in_channels"] = 9
    if arch == "sd2":
        unet_cfg.update(attention_head_dim=(1, 1, 1, 1), use_linear_projection=True)
        clip_cfg.update(hidden_act="gelu")
        sched_kw.update(prediction_type="v_prediction")
    if arch == "sdxl":
        unet_cfg.update(
            block_out_channels=(32, 64, 64),
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
            transformer_layers_per_block=(1, 1, 2),
            attention_head_dim=(1, 1, 1),
            use_linear_projection=True,
            cross_attention_dim=64 + 128,  # both text encoders' widths, concatenated
            addition_embed_type="text_time",
            addition_time_embed_dim=8,
            projection_class_embeddings_input_dim=8 * 6 + 128,
        )
        sched_kw.update(timestep_spacing="leading")
        vae_cfg["scaling_factor"] = 0.13025

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**unet_cfg)
    torch.manual_seed(seed + 1)
    vae = AutoencoderKL(**vae_cfg)
    torch.manual_seed(seed + 2)
    components: dict[str, Any] = dict(
        unet=unet,
        vae=vae,
        scheduler=EulerDiscreteScheduler(**sched_kw),
        tokenizer=build_clip_tokenizer(),
    )
    if arch == "sdxl":
        components["text_encoder"] = CLIPTextModel(CLIPTextConfig(**clip_cfg))
        torch.manual_seed(seed + 3)
        # Wider than the first encoder, as in SDXL (768 vs 1280): the widths tell them apart.
        cfg2 = dict(
            clip_cfg,
            hidden_act="gelu",
            pad_token_id=0,
            hidden_size=128,
            intermediate_size=256,
            num_attention_heads=2,
            projection_dim=128,
        )
        components["text_encoder_2"] = CLIPTextModelWithProjection(CLIPTextConfig(**cfg2))
        components["tokenizer_2"] = build_clip_tokenizer(pad_token="!")
    else:
        if arch == "sd2":
            clip_cfg["pad_token_id"] = 0
            components["tokenizer"] = build_clip_tokenizer(pad_token="!")
        components["text_encoder"] = CLIPTextModel(CLIPTextConfig(**clip_cfg))
    for m in (components["unet"], components["vae"], components["text_encoder"]):
        m.eval()
    return components


def tiny_pipeline(arch: str = "sd15", seed: int = 0):
    """A tiny diffusers pipeline object (SD or SDXL, inpainting for `sd15-inpaint`)."""
    from diffusers import (
        StableDiffusionInpaintPipeline,
        StableDiffusionPipeline,
        StableDiffusionXLPipeline,
    )

    comps = tiny_components(arch, seed)
    if arch == "sdxl":
        return StableDiffusionXLPipeline(**comps)
    cls = StableDiffusionInpaintPipeline if arch == "sd15-inpaint" else StableDiffusionPipeline
    return cls(**comps, safety_checker=None, feature_extractor=None, requires_safety_checker=False)


def save_tiny_model(out: str | Path, arch: str = "sd15", fmt: str = "diffusers", seed: int = 0) -> Path:
    """Write a tiny model as a diffusers folder or as one LDM-layout `.safetensors` file."""
    out = Path(out)
    pipe = tiny_pipeline(arch, seed)
    if fmt == "diffusers":
        pipe.save_pretrained(out, safe_serialization=True)
        return out
    if fmt == "single-file":
        from studio.engine.ldm import save_ldm_checkpoint

        if out.suffix != ".safetensors":
            out = out / f"tiny-{arch}.safetensors"
        out.parent.mkdir(parents=True, exist_ok=True)
        save_ldm_checkpoint(pipe, out)
        return out
    raise ValueError(f"unknown format {fmt!r}")


def save_tiny_lora(
    out: str | Path, arch: str = "sd15", fmt: str = "peft", seed: int = 0, rank: int = 4, conv: bool = False
) -> Path:
    """A tiny random LoRA for the tiny `arch` pipeline's UNet attention layers.

    `fmt="peft"` writes diffusers' format (`unet.….lora_A.weight`); `fmt="kohya"` writes kohya's
    (`lora_unet_…​.lora_down.weight` + `.alpha`) with diffusers' block names (kohya's SD 1.x layout);
    `fmt="kohya-sgm"` writes kohya's SDXL layout, with the original UNet's block names
    (`lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q…`). `conv=True` adapts the ResNets'
    convolutions too (LyCORIS LoCon, written in the same layouts).
    """
    import torch
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    unet = tiny_components(arch, seed=0)["unet"]
    torch.manual_seed(seed)
    targets = ["to_q", "to_k", "to_v", "to_out.0"] + (["conv1", "conv2"] if conv else [])
    unet.add_adapter(LoraConfig(r=rank, lora_alpha=rank, target_modules=targets, init_lora_weights=False))
    state = {
        k: v.detach().clone() * (0.5 if ".lora_B." in k else 1.0) for k, v in get_peft_model_state_dict(unet).items()
    }
    if fmt == "peft":
        tensors = {f"unet.{k}": v.contiguous() for k, v in state.items()}
    elif fmt in ("kohya", "kohya-sgm"):
        from studio.engine.ldm import unet_key_to_ldm

        cfg = unet.config
        up_has_attn = ["CrossAttn" in t for t in cfg.up_block_types]
        tensors = {}
        for k, v in state.items():
            module, kind = k.rsplit(".lora_", 1)
            if fmt == "kohya-sgm":
                module = unet_key_to_ldm(module + ".weight", cfg.layers_per_block, up_has_attn).removesuffix(".weight")
            base = "lora_unet_" + module.replace(".", "_")
            tensors[f"{base}.lora_{'down' if kind.startswith('A') else 'up'}.weight"] = v.contiguous()
            tensors[f"{base}.alpha"] = torch.tensor(float(rank))
    else:
        raise ValueError(f"unknown LoRA format {fmt!r}")
    save_file(tensors, str(out), metadata={"ss_tag_frequency": '{"1_style": {"striped": 12, "outlined": 3}}'})
    return out


def save_tiny_controlnet(out: str | Path, arch: str = "sd15", fmt: str = "diffusers", seed: int = 0) -> Path:
    """A tiny ControlNet built from the tiny `arch` UNet, with its zero-initialised output
    convolutions randomised so that it visibly steers (a fresh ControlNet does nothing)."""
    import torch
    from diffusers import ControlNetModel
    from safetensors.torch import save_file

    out = Path(out)
    unet = tiny_components(arch, seed=0)["unet"]
    cn = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(8, 16, 32, 32))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for mod in [*cn.controlnet_down_blocks, cn.controlnet_mid_block, cn.controlnet_cond_embedding.conv_out]:
            mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) * 0.05)
    if fmt == "diffusers":
        cn.save_pretrained(out, safe_serialization=True)
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in cn.state_dict().items()}, str(out))
    return out


def tiny_upscaler_state(kind: str = "compact", scale: int = 4, seed: int = 0, feat: int = 8) -> dict[str, Any]:
    """Random weights for a tiny upscaler, named as the released files name them (not taken from the
    studio's own modules, so a test that loads them checks the layout):

    - `compact`: Real-ESRGAN's SRVGGNetCompact (realesr-general-x4v3, realesr-animevideov3):
      `body.0` conv, `body.1` PReLU, … `body.N` the conv giving 3·scale² channels;
    - `rrdb`: Real-ESRGAN's RRDBNet (`conv_first`, `body.N.rdbK.convM`, `conv_body`, `conv_up1/2`,
      `conv_hr`, `conv_last`); scale 2 and 1 fold the input into 12 or 48 channels;
    - `esrgan`: the original ESRGAN layout (`model.0`, `model.1.sub.N.RDBK.convM.0`, `model.1.sub.B`,
      upsampling convs at `model.3`, `model.6`, …, then the HR conv and the last conv).
    """
    import torch

    g = torch.Generator().manual_seed(seed)
    state: dict[str, Any] = {}

    def conv(name: str, cin: int, cout: int, std: float = 0.05) -> None:
        state[f"{name}.weight"] = torch.randn(cout, cin, 3, 3, generator=g) * std
        state[f"{name}.bias"] = torch.randn(cout, generator=g) * 0.01

    grow, blocks = feat // 2, 2
    if kind == "compact":
        convs = 3
        conv("body.0", 3, feat, 0.2)
        state["body.1.weight"] = torch.full((feat,), 0.25)
        for i in range(convs):
            conv(f"body.{2 + 2 * i}", feat, feat, 0.1)
            state[f"body.{3 + 2 * i}.weight"] = torch.full((feat,), 0.25)
        conv(f"body.{2 + 2 * convs}", feat, 3 * scale * scale, 0.05)
        return state
    ups = {1: 0, 2: 1, 4: 2, 8: 3}[scale]
    if kind == "rrdb":
        fold = {1: 16, 2: 4}.get(scale, 1)
        conv("conv_first", 3 * fold, feat, 0.1)
        for b in range(blocks):
            for r in (1, 2, 3):
                for c in range(1, 6):
                    conv(f"body.{b}.rdb{r}.conv{c}", feat + (c - 1) * grow, grow if c < 5 else feat)
        conv("conv_body", feat, feat)
        for i in range(1, max(ups, 2) + 1):  # Real-ESRGAN always upsamples ×4 (after folding for ×2, ×1)
            conv(f"conv_up{i}", feat, feat)
        conv("conv_hr", feat, feat)
        conv("conv_last", feat, 3)
        return state
    if kind == "esrgan":
        conv("model.0", 3, feat, 0.1)
        for b in range(blocks):
            for r in (1, 2, 3):
                for c in range(1, 6):
                    conv(f"model.1.sub.{b}.RDB{r}.conv{c}.0", feat + (c - 1) * grow, grow if c < 5 else feat)
        conv(f"model.1.sub.{blocks}", feat, feat)
        for i in range(ups):
            conv(f"model.{3 + 3 * i}", feat, feat)
        conv(f"model.{2 + 3 * ups}", feat, feat)
        conv(f"model.{4 + 3 * ups}", feat, 3)
        return state
    raise ValueError(f"unknown upscaler kind {kind!r}")


def save_tiny_upscaler(out: str | Path, kind: str = "compact", scale: int = 4, seed: int = 0, feat: int = 8) -> Path:
    """`tiny_upscaler_state` written as one `.safetensors` file."""
    from safetensors.torch import save_file

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tiny_upscaler_state(kind, scale, seed, feat).items()}, str(out))
    return out


def save_tiny_clip_vision(out: str | Path, fmt: str = "folder", seed: int = 0, projection_dim: int = 48) -> Path:
    """A tiny `CLIPVisionModelWithProjection` (64 wide, one head, 2 layers, 32-pixel input), as the
    IP-Adapter repository's `image_encoder/` folder (`fmt="folder"`) or as one `.safetensors` in
    transformers' key layout (`fmt="single-file"`, as ComfyUI's `clip_vision/` files)."""
    import torch
    from safetensors.torch import save_file
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(seed)
    config = CLIPVisionConfig(
        hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=1, image_size=32,
        patch_size=8, projection_dim=projection_dim, hidden_act="gelu", layer_norm_eps=1e-5,
    )  # fmt: skip
    model = CLIPVisionModelWithProjection(config).eval()
    out = Path(out)
    if fmt == "folder":
        model.save_pretrained(out, safe_serialization=True)
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in model.state_dict().items() if "position_ids" not in k}, str(out))
    return out


def save_tiny_ip_adapter(
    out: str | Path, arch: str = "sd15", kind: str = "plain", seed: int = 0, image_dim: int = 48
) -> Path:
    """Random IP-Adapter weights for the tiny `arch` UNet in the released layout: `image_proj.*` and
    `ip_adapter.N.to_k_ip/to_v_ip.weight`, N counting the UNet's attention processors as the original
    training code does (cross-attention ones are the odd N). `kind="plain"`: `image_proj.proj` (four
    tokens) + `image_proj.norm`, taking `image_dim`-wide projected embeddings; `kind="plus"`: the
    resampler (`latents`, `proj_in`, four `layers`, `proj_out`, `norm_out`) over 64-wide hidden states."""
    import torch
    from safetensors.torch import save_file

    unet = tiny_components(arch, seed=0)["unet"]
    cross = unet.config.cross_attention_dim
    g = torch.Generator().manual_seed(seed)

    def rand(*shape, std=0.2):
        return torch.randn(*shape, generator=g) * std

    state: dict[str, Any] = {}
    for i, name in enumerate(unet.attn_processors):
        if name.endswith("attn2.processor"):
            hidden = unet.get_submodule(name.rsplit(".processor", 1)[0]).to_q.out_features
            state[f"ip_adapter.{i}.to_k_ip.weight"] = rand(hidden, cross)
            state[f"ip_adapter.{i}.to_v_ip.weight"] = rand(hidden, cross)
    if kind == "plain":
        state["image_proj.proj.weight"] = rand(4 * cross, image_dim)
        state["image_proj.proj.bias"] = rand(4 * cross, std=0.05)
        state["image_proj.norm.weight"] = torch.ones(cross)
        state["image_proj.norm.bias"] = torch.zeros(cross)
    elif kind == "plus":
        dim = 64  # one 64-wide head: diffusers reads the heads as to_q's width // 64
        state["image_proj.latents"] = rand(1, 4, dim)
        state["image_proj.proj_in.weight"], state["image_proj.proj_in.bias"] = rand(dim, 64), torch.zeros(dim)
        state["image_proj.proj_out.weight"], state["image_proj.proj_out.bias"] = rand(cross, dim), torch.zeros(cross)
        state["image_proj.norm_out.weight"], state["image_proj.norm_out.bias"] = torch.ones(cross), torch.zeros(cross)
        for n in range(4):
            p = f"image_proj.layers.{n}"
            for norm in ("0.norm1", "0.norm2", "1.0"):
                state[f"{p}.{norm}.weight"], state[f"{p}.{norm}.bias"] = torch.ones(dim), torch.zeros(dim)
            state[f"{p}.0.to_q.weight"], state[f"{p}.0.to_kv.weight"] = rand(dim, dim), rand(2 * dim, dim)
            state[f"{p}.0.to_out.weight"] = rand(dim, dim)
            state[f"{p}.1.1.weight"], state[f"{p}.1.3.weight"] = rand(4 * dim, dim), rand(dim, 4 * dim)
    else:
        raise ValueError(f"unknown IP-Adapter kind {kind!r}")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out))
    return out
