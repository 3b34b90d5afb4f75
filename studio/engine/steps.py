"""What the engine does at the end of every denoising step, as diffusers step callbacks.

One `PipelineCallback` per concern, combined in order by diffusers' `MultiPipelineCallbacks`
(`step_callbacks`), which also collects the tensor inputs each one asks the pipeline for:

- `CancelCheck` — raises `Cancelled` when the run's cancel flag is set (out of the loop: a cancel
  costs no VAE decode); it runs first, and again after the preview, which can take a while;
- `StepCount` — the run's step clock: whole steps done so far, counting from a branched run's
  branch step (a second-order scheduler such as Heun calls back after each half step; only whole
  steps count, and the callbacks below act on whole steps only);
- `GuidanceCutoff` — classifier-free guidance off after the first `guided` steps
  (`studio.engine.guidance`);
- `PromptSchedule` (in `studio.engine.prompt_encoder`) — prompt editing and alternation: the next
  step's conditioning, in the shape the cutoff left;
- `Previews` — a `StepPreview` (plain numpy) for the window or the CLI, in the request's preview
  mode, from the latents (unpacked, for FLUX) and the predicted clean latent `SchedulerTap` caught.

`SchedulerTap` is the one patch on the scheduler, as a context manager: while it is entered the
scheduler's `step` records each step's predicted clean latent (x0; computed from the velocity for
flow-matching schedulers) and hands stochastic flow schedulers the run's seeded generators, and,
for a branched run, `set_timesteps` / `set_begin_index` start the loop at the branch point.
Leaving it restores the scheduler's own methods.

The callbacks hold per-run state (the cancel flag, the step offset, the preview sink), not
configuration: diffusers' `PipelineCallback` is a `ConfigMixin` built around a cutoff step, so each
one here passes the base a neutral cutoff and keeps its state in plain attributes.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from diffusers.callbacks import MultiPipelineCallbacks, PipelineCallback

from studio.core.request import PreviewMode
from studio.core.results import StepPreview
from studio.engine import flow
from studio.engine.guidance import is_fast, stop_guidance, tensor_inputs
from studio.engine.previews import FINAL_LABEL, PreviewDrawer, final_preview
from studio.engine.schedulers import is_flow, is_sigma_space, step_complete


class Cancelled(Exception):
    """Raised out of the sampling loop when the run's cancel flag is set."""


class StepCallback(PipelineCallback):
    """A diffusers step callback that carries per-run state instead of configuration."""

    tensor_inputs: list[str] = []  # diffusers reads it as a class attribute

    def __init__(self) -> None:
        super().__init__(cutoff_step_ratio=1.0)  # the base insists on a cutoff; these decide per step


class StepCount(StepCallback):
    """The run's step clock (see the module docstring); the other callbacks read it."""

    def __init__(self, start: int, scheduler: Any) -> None:
        super().__init__()
        self.start, self.scheduler = start, scheduler
        self.done = start  # whole steps finished, counting those a branched run took from its parent
        self.whole = True  # whether the current callback ends a whole step

    def callback_fn(self, pipeline, step_index, timestep, callback_kwargs) -> dict[str, Any]:
        last = step_index == getattr(pipeline, "_num_timesteps", 0) - 1
        self.whole = step_complete(self.scheduler) or last
        if self.whole:
            self.done += 1
        return callback_kwargs


class CancelCheck(StepCallback):
    def __init__(self, cancel: threading.Event, clock: StepCount | None = None) -> None:
        super().__init__()
        self.cancel, self.clock = cancel, clock  # with a clock: on whole steps only

    def callback_fn(self, pipeline, step_index, timestep, callback_kwargs) -> dict[str, Any]:
        if (self.clock is None or self.clock.whole) and self.cancel.is_set():
            raise Cancelled
        return callback_kwargs


class GuidanceCutoff(StepCallback):
    """Guidance on the first `guided` of `steps` only; asks for every input the pipeline can hand
    back when it will cut, so the doubled ones can be halved."""

    def __init__(self, pipe: Any, clock: StepCount, guided: int, steps: int) -> None:
        super().__init__()
        self.clock, self.guided, self.steps = clock, guided, steps
        self.tensor_inputs = tensor_inputs(pipe) if clock.start < guided < steps else []
        self.both_positive = False  # cut the slow way: the positive conditioning in both halves

    def callback_fn(self, pipeline, step_index, timestep, callback_kwargs) -> dict[str, Any]:
        if self.clock.whole and self.clock.done == self.guided < self.steps:
            self.both_positive = not is_fast(pipeline)
            return stop_guidance(pipeline, callback_kwargs)
        return callback_kwargs


class SchedulerTap:
    """`with SchedulerTap(scheduler, start, generators) as tap:` — `tap.x0` is the last step's
    predicted clean latent (None where the scheduler gives none); `start` > 0 skips that many steps."""

    PATCHED = ("step", "set_timesteps", "set_begin_index")

    def __init__(self, scheduler: Any, start: int = 0, generators: Any = None) -> None:
        self.scheduler, self.start, self.generators = scheduler, start, generators
        self.x0: torch.Tensor | None = None
        self._full_timesteps: Any = None

    def __enter__(self) -> SchedulerTap:
        scheduler, start = self.scheduler, self.start
        orig_step, orig_set = scheduler.step, scheduler.set_timesteps

        @functools.wraps(orig_step)  # keeps the signature: pipelines look for `generator`/`eta` in it
        def step(model_output, timestep, sample, *args, **kwargs):
            if self._full_timesteps is not None:  # the loop has its shortened copy; solvers need the whole list
                scheduler.timesteps, self._full_timesteps = self._full_timesteps, None
            flow_x0 = None
            if is_flow(scheduler) and not hasattr(scheduler, "model_outputs"):
                if scheduler.step_index is None:
                    scheduler._init_step_index(timestep)
                sigma = float(scheduler.sigmas[scheduler.step_index])
                flow_x0 = flow.x0_from(scheduler, model_output, sample, sigma)
            if scheduler.config.get("stochastic_sampling") and kwargs.get("generator") is None:
                kwargs["generator"] = self.generators  # FLUX/SD3 pipelines pass none: keep Euler a's noise seeded
            out = orig_step(model_output, timestep, sample, *args, **kwargs)
            self.x0 = flow_x0 if flow_x0 is not None else _predicted_x0(scheduler, out)
            return out

        orig_begin = getattr(scheduler, "set_begin_index", None)

        @functools.wraps(orig_set)
        def set_timesteps(*args, **kwargs):
            orig_set(*args, **kwargs)
            if start:
                # The pipeline loops over what set_timesteps leaves in .timesteps: hand it the remaining
                # steps, start the scheduler's own index at the branch step, and restore the full list
                # at the first step (solvers count steps left from it).
                k = start * scheduler.order
                self._full_timesteps = scheduler.timesteps
                scheduler.timesteps = scheduler.timesteps[k:]
                if orig_begin is not None:  # DDIM derives its position from t alone
                    orig_begin(k)

        scheduler.step, scheduler.set_timesteps = step, set_timesteps
        if start and orig_begin is not None:

            @functools.wraps(orig_begin)
            def set_begin_index(begin_index: int = 0):
                # Pipelines count from the list set_timesteps left: FLUX's reset the index to 0, an
                # edit's (img2img, inpaint) to where its strength starts. The branch step comes on top.
                orig_begin(begin_index + start * scheduler.order)

            scheduler.set_begin_index = set_begin_index
        return self

    def __exit__(self, *exc: object) -> None:
        for name in self.PATCHED:
            self.scheduler.__dict__.pop(name, None)  # the class's own methods show through again
        self._full_timesteps = None


def _predicted_x0(scheduler, out) -> torch.Tensor | None:
    x0 = None
    if isinstance(out, tuple) and len(out) > 1:
        x0 = out[1]
    elif not isinstance(out, tuple):
        x0 = getattr(out, "pred_original_sample", None)
        if x0 is None:
            x0 = getattr(out, "denoised", None)
    multistep_x0 = getattr(scheduler.config, "algorithm_type", "") == "dpmsolver++" or getattr(
        scheduler, "predict_x0", False
    )  # solvers that keep their x0 estimates in model_outputs
    if x0 is None and getattr(scheduler, "model_outputs", None) and multistep_x0:
        x0 = scheduler.model_outputs[-1]
    return x0


def to_vp(scheduler: Any, latents: torch.Tensor) -> torch.Tensor:
    """The scheduler's current latents in variance-preserving form."""
    if is_flow(scheduler):
        return flow.to_vp(scheduler, latents)
    if is_sigma_space(scheduler) and scheduler.step_index is not None:
        sigma = float(scheduler.sigmas[min(scheduler.step_index, len(scheduler.sigmas) - 1)])
        return latents / math.sqrt(sigma**2 + 1.0)
    return latents


class Previews(StepCallback):
    """Hands `on_step` a `StepPreview` after every whole step (`preview_s`: the time that took).

    The last step's preview waits for the pipeline's own decode: `final(images)` sends it with the
    finished pictures (at the preview's size), so the last step shows exactly what the run made;
    `flush()` sends it as drawn when the run ends without pictures (cancelled at its last step)."""

    tensor_inputs = ["latents"]

    def __init__(
        self,
        on_step: Callable[[StepPreview], None],
        tap: SchedulerTap,
        clock: StepCount,
        *,
        drawer: PreviewDrawer,
        steps: int,
        mode: PreviewMode,
        unpack: Callable[[torch.Tensor], torch.Tensor] | None = None,
        finish: Callable[[Any], Any] | None = None,
    ) -> None:
        super().__init__()
        self.on_step, self.tap, self.clock, self.drawer = on_step, tap, clock, drawer
        self.steps, self.mode = steps, mode
        self.unpack = unpack or (lambda latents: latents)
        self.finish = finish
        self.t_sample = time.perf_counter()
        self.preview_s = 0.0
        self._held: StepPreview | None = None

    def callback_fn(self, pipeline, step_index, timestep, callback_kwargs) -> dict[str, Any]:
        if not self.clock.whole:
            return callback_kwargs
        tc = time.perf_counter()
        step = self.clock.done
        vp = to_vp(self.tap.scheduler, self.unpack(callback_kwargs["latents"]))
        x0 = self.tap.x0
        if x0 is not None:
            x0 = self.unpack(x0)
        image = self.drawer.draw(step, self.steps, vp, x0)
        if self.finish is not None and image is not None:
            image = self.finish(image)
        preview = StepPreview(
            step=step,
            total=self.steps,
            timestep=float(timestep),
            image=image,
            latent=vp.detach().to("cpu", torch.float32).numpy(),
            mode=self.mode.value,
            elapsed_s=time.perf_counter() - self.t_sample,
            decoder=self.drawer.label,
        )
        if step == self.steps and image is not None:
            self._held = preview  # sent with the finished pictures (final())
        else:
            self.on_step(preview)
        self.preview_s += time.perf_counter() - tc
        return callback_kwargs

    def final(self, images: list[np.ndarray]) -> None:
        """The last step's preview, showing the finished pictures the pipeline decoded."""
        held, self._held = self._held, None
        if held is None:
            return
        if images and held.image is not None:
            held = dataclasses.replace(held, image=final_preview(images, held.image), decoder=FINAL_LABEL)
        self.on_step(held)

    def flush(self) -> None:
        """Send a held last-step preview as drawn (the run ended without pictures)."""
        held, self._held = self._held, None
        if held is not None:
            self.on_step(held)


def step_callbacks(
    count: StepCount,
    cutoff: GuidanceCutoff,
    cancel: threading.Event | None,
    previews: Previews | None,
    prompts: StepCallback | None = None,
) -> MultiPipelineCallbacks:
    """The callbacks of one run, in the order they act at each step (`prompts`: prompt editing's
    conditioning for the next step, studio.engine.prompt_encoder.PromptSchedule, after the cutoff)."""
    first = [CancelCheck(cancel)] if cancel is not None else []
    after = [previews] if previews is not None else []
    if previews is not None and cancel is not None:
        after.append(CancelCheck(cancel, count))  # the preview may have taken a while
    editing = [prompts] if prompts is not None else []
    return MultiPipelineCallbacks([*first, count, cutoff, *editing, *after])
