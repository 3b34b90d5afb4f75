"""Plain data that flows out of the engine: per-step previews and finished results.

No tensors: images are uint8 numpy arrays (H, W, 3); latents are float32 numpy arrays on the CPU.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
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
    mode: str = "x0"
    elapsed_s: float = 0.0  # since the sampling loop started
    # What drew `image` (the canvas label): "x0 · preview decoder", "noisy latent · latent→RGB
    # factors", "the finished picture" (the last step, once the pipeline has decoded it) …
    decoder: str = ""


@dataclass(frozen=True)
class LoadProgress:
    stage: str  # e.g. "loading text encoder"
    fraction: float  # 0..1


@dataclass
class GenerationResult:
    """One finished (or cancelled) run: its images and what it was, for the window, the CLI and the gallery."""

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
    timings: dict[str, float] = field(default_factory=dict)  # load_s, sample_s, total_s, preview_s
    # What ran (set by the engine): the model's architecture and file, the kind of run, the step a
    # branched run started at, the memory preset.
    arch: str = ""  # "sd1" | "sd2" | "sdxl" | "sdxl-refiner"
    model_path: str = ""
    kind: str = ""  # request.kind as run: txt2img | img2img | inpaint | outpaint | branch
    guidance: str = ""  # the model family's guidance: "cfg" | "distilled" (FLUX dev) | "none"
    branch_start: int = 0
    preset: str = ""
    upscaler: str = ""  # an upscale run: the upscaler network's name (Real-ESRGAN …)
    # A hires fix: both passes' sizes and steps, the upscaler, the pass it got to (None: not one).
    hires: dict[str, Any] | None = None
    # What the user should be told: a switch the engine made (out-of-memory fallback), plugins' notes.
    notice: str = ""
    notes: list[str] = field(default_factory=list)
    # Inpaint / outpaint colour correction, one entry per image (None: not asked for).
    color_correction: list[dict[str, Any]] | None = None
    # What plugins recorded for provenance (`PipelineContext.metadata`: lora_hashes, controlnets,
    # plugin_parameters …): plugin-defined, so untyped here.
    plugin_metadata: dict[str, Any] = field(default_factory=dict)
    # The textual-inversion embeddings the prompt used ({name: file SHA-256}: A1111's "TI hashes"),
    # and the prediction type the scheduler ran with (an SD 2.x file's ε or v).
    ti_hashes: dict[str, str] = field(default_factory=dict)
    prediction_type: str = ""
    # Who ran it when not this process's engine: a cluster worker's name and host (`device` is its device).
    worker: str = ""
    # Set by whoever runs and records the job (the window's engine thread).
    run_id: str = ""  # the gallery groups a run's images under it
    gallery_error: str = ""  # saving to the gallery failed (the images are still on the canvas)
    cancel_requested_at_step: int | None = None  # the step shown when Cancel was pressed

    @property
    def cancelled(self) -> bool:
        return self.status == "cancelled"

    @property
    def extra(self) -> Mapping[str, Any]:
        """Read-only: the fields above that are set and the plugins' metadata, under the keys of the
        untyped `extra` dict this class once had (for scripts written against it). Write the fields."""
        out: dict[str, Any] = {"arch": self.arch, "model_path": self.model_path, "branch_start": self.branch_start}
        optional = {
            "kind": self.kind,
            "guidance": self.guidance,
            "preset": self.preset,
            "upscaler": self.upscaler,
            "notice": self.notice,
            "notes": self.notes,
            "run_id": self.run_id,
            "gallery_error": self.gallery_error,
            "cancel_requested_at_step": self.cancel_requested_at_step,
            "ti_hashes": self.ti_hashes,
            "prediction_type": self.prediction_type,
            "worker": self.worker,
        }
        out.update({k: v for k, v in optional.items() if v not in (None, "", [], {})})
        if self.color_correction is not None:
            out["color_correction"] = self.color_correction
        if self.hires is not None:
            out["hires"] = self.hires
        out.update(self.plugin_metadata)
        return MappingProxyType(out)
