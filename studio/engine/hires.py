"""Hires fix in the engine: the first pass (the request at its own size), the upscale, and the second
pass as an image-to-image run of the same loop (`Engine._generate` with a `SecondPassPlan`), one run
as the window and the CLI see it.

- Upscalers: "latent" interpolates the first pass's final latents (bilinear, as A1111's "Latent");
  "lanczos" resizes the decoded image; anything else is an upscaler model (a `.safetensors` file, or a
  name found among the upscalers in the models library and extra folders) run on the decoded image.
- Previews and scrubbing cover both passes: every `StepPreview` counts steps across them (the second
  pass's steps follow the first's) against `studio.core.hires.total_steps`.
- Plugins (LoRA, ControlNet, IP-Adapter …) prepare each pass, so both are drawn with them.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from studio.core import hires as plan_mod
from studio.core.errors import InvalidRequest
from studio.core.request import GenerationRequest
from studio.core.results import GenerationResult, StepPreview
from studio.core.upscalers import find_upscaler


@dataclass
class SecondPassPlan:
    """What `Engine._generate` reads from an edit plan, for the second pass: its input is the first
    pass upscaled — latents (B, 4, h, w) or images — handed over in memory; nothing is composited."""

    image: Any
    gen_size: tuple[int, int]
    kind: str = "img2img"
    color_correction: bool = False
    corrections: list = field(default_factory=list)

    def region_image(self) -> Any:
        return self.image

    def region_mask(self) -> None:
        return None

    def finish(self, generated: np.ndarray) -> np.ndarray:
        return generated

    def preview(self, image: np.ndarray) -> np.ndarray:
        return image


def run_hires(engine, lm, request: GenerationRequest, on_step, cancel, branch_latent, t0, t_loaded) -> GenerationResult:
    """Both passes of a hires-fix request; the result is the request's as one run."""
    assert request.hires is not None
    if lm.inpaint:
        raise InvalidRequest("Hires fix needs an ordinary checkpoint; this one is an inpainting model.")
    model_upscaler = None
    if request.hires.upscaler not in (plan_mod.LATENT, plan_mod.LANCZOS):  # found and loaded before the first pass
        model_upscaler = engine.upscalers.get(find_upscaler(request.hires.upscaler), engine.device_info)
    first, second = plan_mod.first_pass(request), plan_mod.second_pass(request)
    total = plan_mod.total_steps(request)
    last: dict[str, Any] = {}

    def first_steps(p: StepPreview) -> None:
        last["latent"] = p.latent
        if on_step is not None:
            on_step(dataclasses.replace(p, total=total))

    one = engine._generate(lm, first, first_steps, cancel, branch_latent, t0, t_loaded)
    if one.cancelled or not one.images:
        return _as_whole(one, request, total, None)
    t_up = time.perf_counter()
    image = _upscaled(engine, lm, request, one, last.get("latent"), model_upscaler, cancel)
    if image is None:  # cancelled while the upscaler ran
        one.status = "cancelled"
        return _as_whole(one, request, total, None)
    t_up = time.perf_counter() - t_up
    offset = first.steps

    def second_steps(p: StepPreview) -> None:
        if on_step is not None:
            on_step(dataclasses.replace(p, step=offset + p.step, total=total))

    two = engine._generate(
        lm, second, second_steps, cancel, None, t0, t_loaded, plan=SecondPassPlan(image, plan_mod.target_size(request))
    )
    two.steps_done += offset
    two.timings = {
        "load_s": one.timings.get("load_s", 0.0),
        "first_pass_s": one.timings.get("sample_s", 0.0),
        "upscale_s": t_up,
        "sample_s": one.timings.get("sample_s", 0.0) + t_up + two.timings.get("sample_s", 0.0),
        "total_s": time.perf_counter() - t0,
        "preview_s": one.timings.get("preview_s", 0.0) + two.timings.get("preview_s", 0.0),
    }
    return _as_whole(two, request, total, one)


def _as_whole(result: GenerationResult, request: GenerationRequest, total: int, first) -> GenerationResult:
    result.request = request
    result.total_steps = total
    result.kind = request.kind
    result.hires = {
        "first_pass_size": [request.width, request.height],
        "size": list(plan_mod.target_size(request)),
        "first_pass_steps": request.steps - (request.branch.step if request.branch else 0),
        "second_pass_steps": plan_mod.second_pass_steps(request),
        "upscaler": plan_mod.upscaler_label(request),
        "finished_pass": 2 if first is not None and not result.cancelled else 1,
    }
    if first is not None:
        result.branch_start = first.branch_start
    return result


@torch.inference_mode()
def _upscaled(engine, lm, request: GenerationRequest, one: GenerationResult, latent, model_upscaler, cancel) -> Any:
    """The first pass at the target size: latents for "latent", images for the others."""
    assert request.hires is not None
    tw, th = plan_mod.target_size(request)
    up = request.hires.upscaler
    if up == plan_mod.LATENT:
        if latent is None:
            raise InvalidRequest("The first pass gave no latents to upscale.")
        lat = torch.as_tensor(np.asarray(latent, np.float32))
        lat = F.interpolate(lat, size=(th // 8, tw // 8), mode="bilinear", antialias=False)
        return lat.to(engine.device_info.torch_device, lm.pipe.unet.dtype)
    if up == plan_mod.LANCZOS:
        return [Image.fromarray(im).resize((tw, th), Image.Resampling.LANCZOS) for im in one.images]
    from studio.engine.upscale import UpscaleCancelled, upscale_image

    info, net = model_upscaler
    out = []
    for im in one.images:
        scale = max(tw / im.shape[1], th / im.shape[0])
        try:
            big = upscale_image(net, info, im, engine.device_info, scale=scale, cancel=cancel)
        except UpscaleCancelled:
            return None
        img = Image.fromarray(big)
        out.append(img if img.size == (tw, th) else img.resize((tw, th), Image.Resampling.LANCZOS))
    return out
