"""Memory presets: how a pipeline trades speed for memory, chosen from the device's memory.

- fast:       everything on the device, SDPA attention, no slicing.
- balanced:   VAE decodes in slices and tiles (big images and batches fit).
- low memory: also attention slicing, and on CUDA the model is moved to the GPU one component
              at a time (model CPU offload).
On an out-of-memory error the engine frees memory and, if the user allows it, retries once with
the next lower preset.
"""

from __future__ import annotations

from dataclasses import dataclass

from studio.core.errors import InvalidRequest
from studio.engine.devices import DeviceInfo

PRESETS = ("fast", "balanced", "low memory")


@dataclass(frozen=True)
class MemoryOptions:
    attention_slicing: bool = False
    vae_slicing: bool = False
    vae_tiling: bool = False
    cpu_offload: str = "none"  # none | model | sequential


def options_for(preset: str) -> MemoryOptions:
    if preset == "fast":
        return MemoryOptions()
    if preset == "balanced":
        return MemoryOptions(vae_slicing=True, vae_tiling=True)
    if preset == "low memory":
        return MemoryOptions(attention_slicing=True, vae_slicing=True, vae_tiling=True, cpu_offload="model")
    raise InvalidRequest(f"Unknown memory preset {preset!r}; choose one of: {', '.join(PRESETS)}")


def auto_preset(info: DeviceInfo, total_mb: float | None) -> str:
    """fast with ≥ 12 GB on the GPU, balanced with ≥ 6 GB (and on CPU/MPS), low memory below."""
    if not info.device.startswith("cuda") or total_mb is None:
        return "balanced" if info.device == "mps" else "fast"
    if total_mb >= 12 * 1024:
        return "fast"
    return "balanced" if total_mb >= 6 * 1024 else "low memory"


def lower(preset: str) -> str | None:
    i = PRESETS.index(preset)
    return PRESETS[i + 1] if i + 1 < len(PRESETS) else None


def apply(pipe, options: MemoryOptions, info: DeviceInfo) -> None:
    """Set the pipeline's memory options (idempotent: turns off what the options do not ask for)."""
    if options.attention_slicing:
        pipe.enable_attention_slicing()
    else:
        pipe.disable_attention_slicing()
    vae = pipe.vae
    (vae.enable_slicing if options.vae_slicing else vae.disable_slicing)()
    (vae.enable_tiling if options.vae_tiling else vae.disable_tiling)()
    if options.cpu_offload != "none" and info.device.startswith("cuda"):
        if options.cpu_offload == "sequential":
            pipe.enable_sequential_cpu_offload(device=info.device)
        else:
            pipe.enable_model_cpu_offload(device=info.device)
