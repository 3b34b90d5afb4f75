"""Memory presets: how a pipeline trades speed for memory, chosen from the device's memory.

- fast:       everything on the device, SDPA attention, no slicing.
- balanced:   VAE decodes in slices and tiles (big images and batches fit).
- low memory: also attention slicing, and on CUDA the model is moved to the GPU one component
              at a time (model CPU offload).

The flow-matching transformers (FLUX.1 12B, SD 3.5 large 8B) are larger than any UNet, so the same
names mean more for them (`options_for(preset, flow=True)`):
- balanced:   on CUDA also model CPU offload (a component on the GPU only while it runs: fits 16 GB).
- low memory: on CUDA the transformer and the text encoders are group-offloaded block by block
              (diffusers' hooks: a block is on the GPU only while it runs, the next one copied ahead
              on a side stream), and the transformer's weights are stored in fp8 and cast to the
              compute dtype layer by layer (layerwise casting): an 8–12 GB card runs FLUX. Weights
              already quantized (GGUF) are not cast again.
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
    cpu_offload: str = "none"  # none | model | sequential | group (block-level group offloading)
    layerwise_fp8: bool = False  # the transformer's weights stored in fp8, cast per layer when it runs


def options_for(preset: str, flow: bool = False) -> MemoryOptions:
    if preset == "fast":
        return MemoryOptions()
    if preset == "balanced":
        return MemoryOptions(vae_slicing=True, vae_tiling=True, cpu_offload="model" if flow else "none")
    if preset == "low memory":
        if flow:
            return MemoryOptions(vae_slicing=True, vae_tiling=True, cpu_offload="group", layerwise_fp8=True)
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
    """Set the pipeline's memory options (idempotent: turns off what the options do not ask for, CPU
    offload included; group offloading and fp8 storage cannot be undone in place: the engine reloads)."""
    if options.attention_slicing:
        pipe.enable_attention_slicing()
    else:
        pipe.disable_attention_slicing()
    vae = pipe.vae
    (vae.enable_slicing if options.vae_slicing else vae.disable_slicing)()
    (vae.enable_tiling if options.vae_tiling else vae.disable_tiling)()
    if options.layerwise_fp8 and info.device.startswith("cuda"):
        layerwise_fp8(pipe, info)
    if options.cpu_offload == "group" and info.device.startswith("cuda"):
        group_offload(pipe, info)
    elif options.cpu_offload != "none" and info.device.startswith("cuda"):
        if offloaded(pipe) != options.cpu_offload:
            remove_offload(pipe, info)
            if options.cpu_offload == "sequential":
                pipe.enable_sequential_cpu_offload(device=info.device)
            else:
                pipe.enable_model_cpu_offload(device=info.device)
            pipe._studio_offload = options.cpu_offload
    elif options.cpu_offload == "none":
        remove_offload(pipe, info)


def offloaded(pipe) -> str:
    """The accelerate CPU offload on the pipeline: "none", "model" or "sequential"."""
    import torch

    if not any(isinstance(m, torch.nn.Module) and hasattr(m, "_hf_hook") for m in pipe.components.values()):
        return "none"
    return getattr(pipe, "_studio_offload", "model")


def remove_offload(pipe, info: DeviceInfo) -> bool:
    """Undo model CPU offload: the hooks off, every component back on the device (switching from
    "low memory" or a flow model's "balanced" back to "fast"). Returns True when there was one."""
    if offloaded(pipe) == "none":
        return False
    pipe.remove_all_hooks()
    pipe._studio_offload = "none"
    pipe.to(info.torch_device)
    return True


def layerwise_fp8(pipe, info: DeviceInfo) -> bool:
    """Store the transformer's weights in fp8 and cast each layer to the compute dtype as it runs
    (diffusers' layerwise casting; norms and embeddings stay as they are). Skipped for weights that
    are already quantized (GGUF) and where torch has no fp8. Lossy: the engine reloads the model to
    undo it. Returns True when it was switched on."""
    import torch

    model = getattr(pipe, "transformer", None)
    if model is None or not hasattr(torch, "float8_e4m3fn") or getattr(model, "_studio_fp8", False):
        return False
    if any(type(p).__name__ == "GGUFParameter" for p in model.parameters()):
        return False
    model.enable_layerwise_casting(storage_dtype=torch.float8_e4m3fn, compute_dtype=info.torch_dtype)
    model._studio_fp8 = True
    return True


def group_offload(pipe, info: DeviceInfo) -> None:
    """Block-level group offloading of the transformer and text encoders (a block is copied to the
    GPU just before it runs, on a side stream), the VAE kept on the GPU."""
    import torch
    from diffusers.hooks import apply_group_offloading

    onload = torch.device(info.device)
    for name in ("transformer", "text_encoder", "text_encoder_2", "text_encoder_3"):
        module = getattr(pipe, name, None)
        if module is None or getattr(module, "_studio_grouped", False):
            continue
        apply_group_offloading(
            module,
            onload_device=onload,
            offload_device=torch.device("cpu"),
            offload_type="block_level",
            num_blocks_per_group=1,
            use_stream=True,
        )
        module._studio_grouped = True
    pipe.vae.to(onload)
