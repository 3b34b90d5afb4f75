"""What the sampling loop does differently for the flow-matching families (FLUX.1, SD 3/3.5).

- Latents: FLUX's pipelines carry them packed (2×2 patches as tokens, (B, h/2·w/2, 4·C)); previews,
  the kept steps and branching use the plain (B, C, h, w) form, packed again to resume.
- Noise: flow-matching latents are x_t = (1 − σ)·x0 + σ·ε, not variance-preserving. A kept step is
  stored in the same variance-preserving form as SD's (x_t / √((1 − σ)² + σ²), so √ᾱ = (1 − σ)/n and
  √(1 − ᾱ) = σ/n): a latent from any scheduler can be resumed by another, each rescaling it to its
  own convention at the branch step's σ (`branch_scale`).
- The predicted clean latent for x0 previews: x0 = x_t − σ·v (the model predicts the velocity ε − x0).
- Which diffusers pipeline runs each kind of edit (`pipeline_name`).
"""

from __future__ import annotations

import math

import torch

from studio.engine.schedulers import is_flow

PIPELINES = {
    ("flux", "txt2img"): "FluxPipeline",
    ("flux", "img2img"): "FluxImg2ImgPipeline",
    ("flux", "inpaint"): "FluxInpaintPipeline",
    ("sd3", "txt2img"): "StableDiffusion3Pipeline",
    ("sd3", "img2img"): "StableDiffusion3Img2ImgPipeline",
    ("sd3", "inpaint"): "StableDiffusion3InpaintPipeline",
}


def pipeline_name(arch: str, kind: str) -> str:
    """The diffusers pipeline for an edit of `kind` (img2img, or inpaint for inpaint/outpaint)."""
    if arch in ("flux", "sd3"):
        return PIPELINES[(arch, "img2img" if kind == "img2img" else "inpaint")]
    return ""


def is_packed(pipe) -> bool:
    return type(pipe).__name__.startswith("Flux")


def unpack(pipe, latents: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """(B, C, h, w) latents from what the pipeline holds (FLUX: packed tokens)."""
    if latents.ndim == 3 and is_packed(pipe):
        return pipe._unpack_latents(latents, height, width, pipe.vae_scale_factor)
    return latents


def pack(pipe, latents: torch.Tensor) -> torch.Tensor:
    if is_packed(pipe):
        b, c, h, w = latents.shape
        return pipe._pack_latents(latents, b, c, h, w)
    return latents


def latent_shape(pipe, batch: int, width: int, height: int) -> tuple[int, int, int, int]:
    """(B, C, h, w) of a run's latents, unpacked."""
    f = int(pipe.vae_scale_factor)
    channels = int(pipe.vae.config.latent_channels)
    if is_packed(pipe):  # FLUX: latent sides rounded down to even (2×2 packing)
        return batch, channels, 2 * (height // (f * 2)), 2 * (width // (f * 2))
    return batch, channels, height // f, width // f


def current_sigma(scheduler) -> float | None:
    """σ of the latents the scheduler holds after its last step (None before the first)."""
    idx = getattr(scheduler, "step_index", None)
    if idx is None:
        return None
    return float(scheduler.sigmas[min(idx, len(scheduler.sigmas) - 1)])


def vp_norm(sigma: float) -> float:
    return math.sqrt((1.0 - sigma) ** 2 + sigma**2)


def to_vp(scheduler, latents: torch.Tensor) -> torch.Tensor:
    sigma = current_sigma(scheduler)
    return latents if sigma is None else latents / vp_norm(sigma)


def x0_from(scheduler, model_output: torch.Tensor, sample: torch.Tensor, sigma: float) -> torch.Tensor:
    """The clean latent a velocity prediction implies: x0 = x_t − σ·v."""
    return sample - sigma * model_output


def flow_sigmas(pipe, scheduler, steps: int, width: int, height: int) -> torch.Tensor:
    """The σ schedule the pipeline will run, set up the way the pipeline does (FLUX: its linspace
    sigmas and the resolution-dependent μ; SD3: μ only with dynamic shifting)."""
    import numpy as np
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift, retrieve_timesteps

    _, _, h, w = latent_shape(pipe, 1, width, height)
    seq = (h // 2) * (w // 2)
    cfg = scheduler.config
    kwargs = {}
    if is_packed(pipe) or cfg.get("use_dynamic_shifting", False):
        kwargs["mu"] = calculate_shift(
            seq,
            cfg.get("base_image_seq_len", 256),
            cfg.get("max_image_seq_len", 4096),
            cfg.get("base_shift", 0.5),
            cfg.get("max_shift", 1.15),
        )
    sigmas = None
    if is_packed(pipe) and not cfg.get("use_flow_sigmas", False):
        sigmas = np.linspace(1.0, 1 / steps, steps)
    if "mu" in kwargs and not is_packed(pipe) and not cfg.get("use_dynamic_shifting", False):
        kwargs.pop("mu")
    retrieve_timesteps(scheduler, steps, "cpu", sigmas=sigmas, **kwargs)
    return scheduler.sigmas


def branch_scale(pipe, probe, steps: int, k: int, width: int, height: int) -> float:
    """Factor from the stored variance-preserving latent to the probe scheduler's own at step k."""
    assert is_flow(probe)
    sigmas = flow_sigmas(pipe, probe, steps, width, height)
    sigma = float(sigmas[k * probe.order])
    return vp_norm(sigma)


def t5_tokenizer(pipe):
    """The T5 tokenizer of a FLUX (tokenizer_2) or SD3 (tokenizer_3) pipeline, else None."""
    for name in ("tokenizer_3", "tokenizer_2"):
        tok = getattr(pipe, name, None)
        if tok is not None and "T5" in type(tok).__name__:
            return tok
    return None


def t5_limit(lm) -> int:
    """T5 tokens (with </s>) the model reads: the family's limit for its variant (FLUX dev 512,
    schnell 256; SD3 256), or 0 for a model without T5."""
    if not lm.family.t5_limit or t5_tokenizer(lm.pipe) is None:
        return 0
    from studio.core.checkpoint import defaults

    return int(defaults()[lm.arch]["max_sequence_length"].get(lm.variant, lm.family.t5_limit))


def plugin_pipeline(pipe, base) -> bool:
    """A FLUX txt2img run through a pipeline a plugin put in place of the model's own (ControlNet)."""
    return is_packed(pipe) and pipe is not base and type(base).__name__ == "FluxPipeline"


def initial_noise(pipe, generators, batch: int, width: int, height: int) -> torch.Tensor:
    """The packed starting noise exactly as FluxPipeline draws it from the same generators. A FLUX
    ControlNet pipeline draws it only after encoding the control image with those generators, so
    without this a ControlNet at weight 0 would not give the model's own picture."""
    from diffusers.utils.torch_utils import randn_tensor

    shape = latent_shape(pipe, batch, width, height)
    shape = (shape[0], int(pipe.transformer.config.in_channels) // 4, shape[2], shape[3])
    noise = randn_tensor(shape, generator=generators, device=pipe._execution_device, dtype=pipe.transformer.dtype)
    return pack(pipe, noise)
