"""Classifier-free guidance for the first part of the steps only (`GenerationRequest.guidance_end`).

Guidance decides the layout at high noise; at low noise it only sharpens, and at a high scale it
over-shoots there: edges go lumpy and shapes distort (the demo model's 72 held-out prompts: 57 %
right at CFG 7 over all steps, 93 % with CFG over the first half, 78 % without CFG; see
resources/demo-model/README.md). As in the "dynamic CFG" example of diffusers' documentation, the
engine's step callback turns guidance off once `guided_steps` are done.

Two ways, the same result:
- fast (the pipelines in `FAST`, each checked by tests/engine/test_guidance_end.py): every callback
  input that holds the negative and positive halves side by side (twice the latents' batch) keeps
  its positive half and the scale becomes 1, so each later step runs the UNet once, not twice;
- any other pipeline (a plugin's, or one that doubles inputs its callback does not hand back): the
  negative half of the conditioning is replaced by the positive half, so both passes see the
  prompt and guidance has nothing left to push (uncond == cond), at the usual two passes a step.
"""

from __future__ import annotations

import math
from typing import Any

FAST = frozenset({
    "StableDiffusionPipeline", "StableDiffusionImg2ImgPipeline", "StableDiffusionInpaintPipeline",
    "StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline", "StableDiffusionXLInpaintPipeline",
    "StableDiffusionControlNetPipeline", "StableDiffusionControlNetImg2ImgPipeline",
    "StableDiffusion3Pipeline",
})  # fmt: skip
CONDITIONING = ("prompt_embeds", "add_text_embeds", "add_time_ids", "pooled_prompt_embeds")


def guided_steps(steps: int, guidance_end: float) -> int:
    """How many of `steps` are guided: the first ceil(guidance_end × steps) (all of them at 1.0)."""
    return min(steps, math.ceil(round(guidance_end * steps, 6)))


def tensor_inputs(pipe) -> list[str]:
    """Every input the pipeline can hand its step callback (so the callback can change them)."""
    return list(getattr(pipe, "_callback_tensor_inputs", ["latents"]))


def is_fast(pipe) -> bool:
    return type(pipe).__name__ in FAST


def stop_guidance(pipe, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The step callback's inputs for the steps after guidance ends (see the module docstring)."""
    n = kwargs["latents"].shape[0]

    def doubled(v) -> bool:
        return hasattr(v, "shape") and v.ndim > 0 and v.shape[0] == 2 * n

    if not is_fast(pipe):
        return {
            k: (v[n:].repeat(2, *[1] * (v.ndim - 1)) if k in CONDITIONING and doubled(v) else v)
            for k, v in kwargs.items()
        }

    def half(v):
        if doubled(v):
            return v[n:]
        if isinstance(v, (list, tuple)):  # Multi-ControlNet: one image per unit
            return type(v)(half(x) for x in v)
        return v

    pipe._guidance_scale = 1.0
    return {k: (v if k == "latents" or k.startswith("negative_") else half(v)) for k, v in kwargs.items()}
