"""Schedulers by the names users know from A1111 / ComfyUI."""

from __future__ import annotations

from typing import Any

from diffusers import (
    DDIMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    LCMScheduler,
    UniPCMultistepScheduler,
)

from studio.core.errors import InvalidRequest

SCHEDULERS: dict[str, tuple[type, dict[str, Any]]] = {
    "Euler": (EulerDiscreteScheduler, {}),
    "Euler a": (EulerAncestralDiscreteScheduler, {}),
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


def make_scheduler(name: str, base_config: dict[str, Any]):
    """A fresh scheduler of the named kind, keeping the model's noise schedule and prediction type."""
    try:
        cls, overrides = SCHEDULERS[name]
    except KeyError:
        raise InvalidRequest(f"Unknown scheduler {name!r}; choose one of: {', '.join(SCHEDULERS)}") from None
    return cls.from_config(dict(base_config), **overrides)


def is_sigma_space(scheduler) -> bool:
    """True when the scheduler's latents are x0 + σ·ε (k-diffusion style) rather than variance-preserving."""
    return float(getattr(scheduler, "init_noise_sigma", 1.0)) > 1.0 + 1e-6 and hasattr(scheduler, "sigmas")
