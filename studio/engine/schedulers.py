"""Schedulers by the names users know from A1111 / ComfyUI, for both kinds of model.

Stable Diffusion 1.x/2.x/XL (variance-preserving noise, ε or v prediction) get the k-diffusion
style schedulers; FLUX.1 and SD 3/3.5 (flow matching, x_t = (1 − σ)·x0 + σ·ε, velocity prediction)
get the flow-matching ones diffusers has: Euler (and Euler a, its stochastic form), Heun and DPM++ 2M,
each with the family's
timestep shift — a fixed shift (SD3: 3, FLUX schnell: 1) or FLUX dev's resolution-dependent
one (shift = e^μ with μ from the image's token count), which the pipelines pass as `mu`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    FlowMatchEulerDiscreteScheduler,
    FlowMatchHeunDiscreteScheduler,
    HeunDiscreteScheduler,
    LCMScheduler,
    UniPCMultistepScheduler,
)

from studio.core.errors import InvalidRequest

SCHEDULERS: dict[str, tuple[type, dict[str, Any]]] = {
    "Euler": (EulerDiscreteScheduler, {}),
    "Euler a": (EulerAncestralDiscreteScheduler, {}),
    "Heun": (HeunDiscreteScheduler, {}),
    "DPM++ 2M": (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": False},
    ),
    "DPM++ 2M Karras": (
        DPMSolverMultistepScheduler,
        {"algorithm_type": "dpmsolver++", "solver_order": 2, "use_karras_sigmas": True},
    ),
    "DDIM": (DDIMScheduler, {}),
    "UniPC": (UniPCMultistepScheduler, {}),
    "LCM": (LCMScheduler, {}),
}


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


def make_scheduler(name: str, base_config: dict[str, Any], flow: bool = False, family: str = ""):
    """A fresh scheduler of the named kind, keeping the model's noise schedule and prediction type
    (`flow`: a flow-matching model, where SD-only names run as their nearest flow scheduler)."""
    if flow:
        return _flow_scheduler(flow_name(name), base_config)
    try:
        cls, overrides = SCHEDULERS[name]
    except KeyError:
        raise InvalidRequest(f"Unknown scheduler {name!r}; choose one of: {', '.join(SCHEDULERS)}") from None
    return cls.from_config(dict(base_config), **overrides)  # type: ignore[attr-defined]  # diffusers is not analysed


def is_sigma_space(scheduler) -> bool:
    """True when the scheduler's latents are x0 + σ·ε (k-diffusion style) rather than variance-preserving."""
    return float(getattr(scheduler, "init_noise_sigma", 1.0)) > 1.0 + 1e-6 and hasattr(scheduler, "sigmas")


def is_flow(scheduler) -> bool:
    """True for flow-matching schedulers (latents (1 − σ)·x0 + σ·ε)."""
    cfg = scheduler.config
    return "shift" in cfg and "beta_start" not in cfg or bool(cfg.get("use_flow_sigmas", False))
