"""Full-size pipelines with random weights, for speed and memory benchmarks (speed does not depend on
the weights' values): SD 1.5 and SDXL (UNet + VAE), FLUX.1-dev (the 12B transformer + its VAE).

The text encoders are left out: a benchmark hands every path the same random prompt embeddings of the
real shapes, so what is timed is the denoising loop and the VAE decode. Weights are created directly
on the device in its dtype (FLUX.1-dev's 12B parameters never pass through the CPU).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch

FULL_UNETS: dict[str, dict[str, Any]] = {
    "sd15": dict(
        sample_size=64,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(320, 640, 1280, 1280),
        down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
        up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
        cross_attention_dim=768,
        attention_head_dim=8,
    ),
    "sdxl": dict(
        sample_size=128,
        in_channels=4,
        out_channels=4,
        layers_per_block=2,
        block_out_channels=(320, 640, 1280),
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        transformer_layers_per_block=(1, 2, 10),
        attention_head_dim=(5, 10, 20),
        use_linear_projection=True,
        cross_attention_dim=2048,
        addition_embed_type="text_time",
        addition_time_embed_dim=256,
        projection_class_embeddings_input_dim=2816,
    ),
}
_VAE = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(128, 256, 512, 512),
    layers_per_block=2,
)
VAES: dict[str, dict[str, Any]] = {
    "sd15": dict(_VAE, latent_channels=4, scaling_factor=0.18215, sample_size=512),
    "sdxl": dict(_VAE, latent_channels=4, scaling_factor=0.13025, sample_size=1024, force_upcast=True),
    "flux-dev": dict(
        _VAE,
        latent_channels=16,
        scaling_factor=0.3611,
        shift_factor=0.1159,
        sample_size=1024,
        use_quant_conv=False,
        use_post_quant_conv=False,
    ),
}
FLUX_DEV = dict(guidance_embeds=True)  # the rest is FluxTransformer2DModel's default: FLUX.1-dev's size
NATIVE = {"sd15": 512, "sdxl": 1024, "flux-dev": 1024}
ARCHS = tuple(NATIVE)


@contextlib.contextmanager
def _building(device: torch.device, dtype: torch.dtype) -> Iterator[None]:
    old = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        with torch.device(device):
            yield
    finally:
        torch.set_default_dtype(old)


def pipeline(arch: str, device: str, dtype: torch.dtype, seed: int = 0):
    """A diffusers pipeline of `arch`'s full size with random weights, no text encoders."""
    import diffusers

    torch.manual_seed(seed)
    dev = torch.device(device)
    with _building(dev, dtype):
        vae = diffusers.AutoencoderKL(**VAES[arch]).eval()
        if arch == "flux-dev":
            transformer = diffusers.FluxTransformer2DModel(**FLUX_DEV).eval()
        else:
            unet = diffusers.UNet2DConditionModel(**FULL_UNETS[arch]).eval()
    if arch == "flux-dev":
        scheduler = diffusers.FlowMatchEulerDiscreteScheduler(
            shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15
        )
        pipe = diffusers.FluxPipeline(
            scheduler=scheduler,
            vae=vae,
            text_encoder=None,
            tokenizer=None,
            text_encoder_2=None,
            tokenizer_2=None,
            transformer=transformer,
        )
    elif arch == "sdxl":
        scheduler = diffusers.EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
        pipe = diffusers.StableDiffusionXLPipeline(
            vae=vae,
            text_encoder=None,
            text_encoder_2=None,
            tokenizer=None,
            tokenizer_2=None,
            unet=unet,
            scheduler=scheduler,
        )
    else:
        scheduler = diffusers.EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
        pipe = diffusers.StableDiffusionPipeline(
            vae=vae,
            text_encoder=None,
            tokenizer=None,
            unet=unet,
            scheduler=scheduler,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    pipe.set_progress_bar_config(disable=True)
    return pipe


def prompt_kwargs(arch: str, device: str, dtype: torch.dtype, batch: int = 1, seed: int = 1) -> dict[str, Any]:
    """Random prompt embeddings of the real shapes (CLIP-L 77×768; SDXL's 77×2048 + pooled 1280;
    FLUX's T5 512×4096 + pooled CLIP 768), the same for every path of a benchmark."""
    g = torch.Generator("cpu").manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g).to(device, dtype)

    if arch == "flux-dev":
        return dict(prompt_embeds=rand(batch, 512, 4096), pooled_prompt_embeds=rand(batch, 768))
    if arch == "sdxl":
        return dict(
            prompt_embeds=rand(batch, 77, 2048),
            negative_prompt_embeds=rand(batch, 77, 2048),
            pooled_prompt_embeds=rand(batch, 1280),
            negative_pooled_prompt_embeds=rand(batch, 1280),
        )
    return dict(prompt_embeds=rand(batch, 77, 768), negative_prompt_embeds=rand(batch, 77, 768))
