"""Samplers by the names users know from A1111 / ComfyUI (studio.core.samplers), for both kinds of model.

Stable Diffusion 1.x/2.x/XL (variance-preserving noise, ε or v prediction) get the k-diffusion
style schedulers, each with A1111's schedule types where diffusers has them; which diffusers
scheduler runs each follows diffusers' own table ("A1111/k-diffusion → Diffusers" in its scheduler
docs). Two are approximations, said in docs/prompts.md: "DPM++ 2S a" is diffusers' single-step
DPM-Solver++ (2nd order) with SDE noise, and "UniPC" is diffusers' default (B(h) 2).
FLUX.1 and SD 3/3.5 (flow matching, x_t = (1 − σ)·x0 + σ·ε, velocity prediction) get the
flow-matching ones diffusers has: Euler (and Euler a, its stochastic form), Heun and DPM++ 2M, each
with the family's timestep shift — a fixed shift (SD3: 3, FLUX schnell: 1) or FLUX dev's resolution-dependent
one (shift = e^μ with μ from the image's token count), which the pipelines pass as `mu`.
"""

from __future__ import annotations

import inspect
from typing import Any

import numpy as np
import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    DPMSolverSinglestepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FlowMatchHeunDiscreteScheduler,
    HeunDiscreteScheduler,
    KDPM2AncestralDiscreteScheduler,
    KDPM2DiscreteScheduler,
    LCMScheduler,
    PNDMScheduler,
    UniPCMultistepScheduler,
)

from studio.core import samplers
from studio.core.errors import InvalidRequest

_DPMPP = {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": False}  # as older recipes ran it
_SDE = {"algorithm_type": "sde-dpmsolver++"}

SCHEDULERS: dict[str, tuple[str, dict[str, Any]]] = {  # sampler -> (diffusers class name, config overrides)
    "Euler": ("EulerDiscreteScheduler", {}),
    "Euler a": ("EulerAncestralDiscreteScheduler", {}),
    "Heun": ("HeunDiscreteScheduler", {}),
    "LMS": ("LMSDiscreteScheduler", {}),  # needs scipy
    "DPM2": ("KDPM2DiscreteScheduler", {}),
    "DPM2 a": ("KDPM2AncestralDiscreteScheduler", {}),
    "DPM++ 2S a": ("DPMSolverSinglestepScheduler", {**_SDE, "solver_order": 2}),
    "DPM++ 2M": ("DPMSolverMultistepScheduler", _DPMPP),
    "DPM++ SDE": ("DPMSolverSDEScheduler", {}),  # needs torchsde
    "DPM++ 2M SDE": ("DPMSolverMultistepScheduler", {**_SDE, "solver_order": 2}),
    "DPM++ 3M SDE": ("DPMSolverMultistepScheduler", {**_SDE, "solver_order": 3}),
    "DDIM": ("DDIMScheduler", {}),
    "PLMS": ("PNDMScheduler", {"skip_prk_steps": True}),
    "UniPC": ("UniPCMultistepScheduler", {}),
    "LCM": ("LCMScheduler", {}),
    "DDPM": ("DDPMScheduler", {}),
}
_PLAIN_SIGMAS = {"use_karras_sigmas": False, "use_exponential_sigmas": False, "use_beta_sigmas": False}
SCHEDULE_OVERRIDES: dict[str, dict[str, Any]] = {
    samplers.AUTOMATIC: {},  # the model's own scheduler config decides
    "Karras": {**_PLAIN_SIGMAS, "use_karras_sigmas": True},
    "Exponential": {**_PLAIN_SIGMAS, "use_exponential_sigmas": True, "timestep_spacing": "linspace"},
    "SGM Uniform": {**_PLAIN_SIGMAS, "timestep_spacing": "trailing"},
}
_CLASSES = {c.__name__: c for c in (
    DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, DPMSolverSinglestepScheduler,
    EulerAncestralDiscreteScheduler, EulerDiscreteScheduler, HeunDiscreteScheduler,
    KDPM2AncestralDiscreteScheduler, KDPM2DiscreteScheduler, LCMScheduler, PNDMScheduler, UniPCMultistepScheduler,
)}  # fmt: skip


def _class(name: str) -> type:
    cls = _CLASSES.get(name)
    if cls is None:  # the two that need an extra library are imported when asked for
        import diffusers

        try:
            cls = getattr(diffusers, name)
            cls.from_config({})  # diffusers raises ImportError here when scipy/torchsde is missing
        except ImportError as exc:
            raise InvalidRequest(f"This sampler needs a library that is not installed: {exc}".strip()) from None
    return cls


class FlowHeun(FlowMatchHeunDiscreteScheduler):
    """Heun on a flow-matching schedule that takes the pipeline's sigmas and dynamic shift (`mu`),
    as FLUX's pipelines hand them to every scheduler (diffusers' Heun takes only a step count)."""

    dynamic_shift = False

    def set_timesteps(self, num_inference_steps: int | None = None, device=None, sigmas=None, mu=None, timesteps=None):
        n = int(num_inference_steps if num_inference_steps is not None else len(sigmas))
        base = np.asarray(sigmas, dtype=np.float64) if sigmas is not None else np.linspace(1.0, 1.0 / n, n)
        shift = float(np.exp(mu)) if (mu is not None and self.dynamic_shift) else float(self.config.shift)
        s = torch.from_numpy(shift * base / (1 + (shift - 1) * base)).to(torch.float32)
        self.num_inference_steps = n
        t = s * self.config.num_train_timesteps
        self.timesteps = torch.cat([t[:1], t[1:].repeat_interleave(2)]).to(device=device)
        s = torch.cat([s, torch.zeros(1)])
        self.sigmas = torch.cat([s[:1], s[1:-1].repeat_interleave(2), s[-1:]]).to(device=device)
        self.prev_derivative = None
        self.dt = None
        self._step_index = None
        self._begin_index = None


class FlowDPM(DPMSolverMultistepScheduler):
    """DPM++ 2M on flow sigmas; ignores `mu` when the model's shift is fixed (FLUX schnell, SD3)."""

    def set_timesteps(self, num_inference_steps=None, device=None, sigmas=None, mu=None, timesteps=None):
        # FLUX's pipelines hand every scheduler linspace(1, 1/N, N) sigmas; DPM's own flow sigmas are the same
        # schedule, so only their count is taken.
        if num_inference_steps is None and sigmas is not None:
            num_inference_steps = len(sigmas)
        if not self.config.use_dynamic_shifting:
            mu = None
        return super().set_timesteps(num_inference_steps, device, mu=mu, timesteps=timesteps)


def _flow_scheduler(name: str, base: dict[str, Any]):
    base = dict(base)
    dynamic = bool(base.get("use_dynamic_shifting", False))
    if name in ("Euler", "Euler a"):  # Euler a: fresh noise each step (diffusers' stochastic sampling)
        return FlowMatchEulerDiscreteScheduler.from_config(base, stochastic_sampling=name == "Euler a")
    if name == "Heun":
        s = FlowHeun.from_config({k: base[k] for k in ("num_train_timesteps", "shift") if k in base})
        s.dynamic_shift = dynamic
        return s
    if name == "DPM++ 2M":
        return FlowDPM(
            num_train_timesteps=base.get("num_train_timesteps", 1000),
            algorithm_type="dpmsolver++",
            solver_order=2,
            prediction_type="flow_prediction",
            use_flow_sigmas=True,
            flow_shift=float(base.get("shift", 1.0)),
            use_dynamic_shifting=dynamic,
            time_shift_type="exponential",
            final_sigmas_type="zero",
        )
    raise AssertionError(name)


def flow_name(name: str) -> str:
    """The flow-matching scheduler an SD scheduler name runs as on FLUX/SD3 (itself when it is one)."""
    from studio.core.families import FLOW_EQUIVALENT, FLOW_SCHEDULERS

    if name in FLOW_SCHEDULERS:
        return name
    if name in FLOW_EQUIVALENT:
        return FLOW_EQUIVALENT[name]
    raise InvalidRequest(f"Unknown scheduler {name!r}; choose one of: {', '.join(FLOW_SCHEDULERS)}")


def make_scheduler(
    name: str,
    base_config: dict[str, Any],
    flow: bool = False,
    family: str = "",
    *,
    schedule: str = samplers.AUTOMATIC,
    seed: int | None = None,
):
    """A fresh scheduler of the named kind and schedule type, keeping the model's noise schedule and
    prediction type. `seed` seeds DPM++ SDE's Brownian noise (its other noise comes from the run's
    generators). `flow`: a flow-matching model, where SD-only names run as their nearest flow
    scheduler and the schedule type is the family's own."""
    sampler, from_name = samplers.split(name)
    if flow:
        return _flow_scheduler(flow_name(sampler), base_config)
    if from_name is not None and schedule == samplers.AUTOMATIC:  # "DPM++ 2M Karras" and friends
        schedule = from_name
    problem = samplers.check(sampler, schedule)
    if problem is not None:
        raise InvalidRequest(problem[0].upper() + problem[1:] + ".")
    cls_name, overrides = SCHEDULERS[sampler]
    cls = _class(cls_name)
    accepted = inspect.signature(cls).parameters
    extra = {k: v for k, v in {**overrides, **SCHEDULE_OVERRIDES[schedule]}.items() if k in accepted}
    if "noise_sampler_seed" in accepted and seed is not None:
        extra["noise_sampler_seed"] = seed
    return cls.from_config(dict(base_config), **extra)  # type: ignore[attr-defined]  # diffusers is not analysed


def scheduler_for(request, base_config: dict[str, Any], family):
    """The request's sampler and schedule type on a model whose scheduler config is `base_config`, with
    the recipe's prediction type where it names one (an SD 2.x file's ε or v, set in the Models dialog)."""
    if request.prediction_type:
        base_config = {**base_config, "prediction_type": request.prediction_type}
    return make_scheduler(
        request.scheduler, base_config, family.flow, family.label, schedule=request.schedule_type, seed=request.seed
    )


def is_sigma_space(scheduler) -> bool:
    """True when the scheduler's latents are x0 + σ·ε (k-diffusion style) rather than variance-preserving."""
    return float(getattr(scheduler, "init_noise_sigma", 1.0)) > 1.0 + 1e-6 and hasattr(scheduler, "sigmas")


def is_flow(scheduler) -> bool:
    """True for flow-matching schedulers (latents (1 − σ)·x0 + σ·ε)."""
    cfg = scheduler.config
    return "shift" in cfg and "beta_start" not in cfg or bool(cfg.get("use_flow_sigmas", False))


def step_complete(scheduler) -> bool:
    """Whether the scheduler's last `step` call finished a sampling step. Second-order samplers
    (Heun, DPM2, DPM2 a, DPM++ SDE) evaluate the model twice a step, and PLMS twice for its first:
    the pipeline calls back after each evaluation, the studio counts steps."""
    if hasattr(scheduler, "state_in_first_order"):
        return bool(scheduler.state_in_first_order)
    if getattr(scheduler.config, "skip_prk_steps", False) and hasattr(scheduler, "counter"):
        return scheduler.counter != 1
    return True
