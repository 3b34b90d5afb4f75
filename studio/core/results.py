"""Plain data that flows out of the engine: per-step previews and finished results.

No tensors: images are uint8 numpy arrays (H, W, 3); latents are float32 numpy arrays on the CPU.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from studio.core.request import GenerationRequest


@dataclass(frozen=True)
class StepPreview:
    step: int  # 1-based index of the step just finished
    total: int  # steps this run does
    timestep: float  # scheduler timestep of that step
    image: np.ndarray | None  # (H, W, 3) uint8, small; None when preview mode is "none"
    latent: np.ndarray | None = None  # (B, C, h, w) float32 on CPU, for scrubbing and branching
    mode: str = "latent2rgb"
    elapsed_s: float = 0.0  # since the sampling loop started


@dataclass(frozen=True)
class LoadProgress:
    stage: str  # e.g. "loading text encoder"
    fraction: float  # 0..1


@dataclass
class GenerationResult:
    request: GenerationRequest
    images: list[np.ndarray] = field(default_factory=list)  # (H, W, 3) uint8 each
    seeds: list[int] = field(default_factory=list)
    status: str = "done"  # "done" | "cancelled"
    steps_done: int = 0
    total_steps: int = 0
    device: str = ""
    dtype: str = ""
    model_name: str = ""
    model_hash: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def cancelled(self) -> bool:
        return self.status == "cancelled"
