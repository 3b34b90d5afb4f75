"""Device and dtype choice: CUDA > MPS > CPU unless the user says otherwise; fp16 on GPUs, fp32 on CPU.

Overrides: arguments, or STUDIO_DEVICE / STUDIO_DTYPE in the environment.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import torch

from studio.core.errors import InvalidRequest

DTYPES = {
    "float16": torch.float16,
    "fp16": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float32": torch.float32,
    "fp32": torch.float32,
}


@dataclass(frozen=True)
class DeviceInfo:
    device: str  # "cuda", "cuda:1", "mps", "cpu"
    dtype: str  # "float16" | "bfloat16" | "float32"
    name: str  # human-readable

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def choose_device(device: str | None = None, dtype: str | None = None) -> DeviceInfo:
    device = (device or os.environ.get("STUDIO_DEVICE") or "auto").lower()
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    kind = device.split(":")[0]
    if kind == "cuda" and not torch.cuda.is_available():
        raise InvalidRequest("CUDA was asked for but no CUDA GPU is available.", "Use --device cpu.")
    if kind == "cuda" and ":" in device:
        index, count = device.split(":", 1)[1], torch.cuda.device_count()
        if not index.isdigit() or int(index) >= count:
            gpus = ", ".join(f"cuda:{i}" for i in range(count))
            raise InvalidRequest(f"There is no GPU {device!r} on this machine; it has {gpus}.", "Use one of those.")
    if kind == "mps" and not _mps_available():
        raise InvalidRequest("MPS was asked for but is not available on this machine.", "Use --device cpu.")
    if kind not in ("cuda", "mps", "cpu"):
        raise InvalidRequest(f"Unknown device {device!r}; use auto, cuda, mps or cpu.")
    dtype = (dtype or os.environ.get("STUDIO_DTYPE") or "auto").lower()
    if dtype == "auto":
        dtype = "float32" if kind == "cpu" else "float16"
    if dtype not in DTYPES:
        raise InvalidRequest(f"Unknown dtype {dtype!r}; use float16, bfloat16 or float32.")
    dtype = str(DTYPES[dtype]).removeprefix("torch.")
    if kind == "cuda":
        name = torch.cuda.get_device_name(torch.device(device))
    elif kind == "mps":
        name = "Apple GPU (MPS)"
    else:
        name = f"CPU ({torch.get_num_threads()} threads)"
    return DeviceInfo(device, dtype, name)


def available_devices() -> list[tuple[str, str]]:
    """Every device the studio can run on, as (device, name): each CUDA GPU by index, MPS, the CPU
    (the Device dialog's choice; `--device cuda:N` on the command line)."""
    found = [(f"cuda:{i}", torch.cuda.get_device_name(i)) for i in range(torch.cuda.device_count())]
    if _mps_available():
        found.append(("mps", "Apple GPU (MPS)"))
    return [*found, ("cpu", f"CPU ({torch.get_num_threads()} threads)")]


def memory_info(info: DeviceInfo) -> dict[str, float | None]:
    """Memory in use and peak on the device, in MiB (process RSS on CPU)."""
    mib = 1024 * 1024
    if info.device.startswith("cuda"):
        dev = info.torch_device
        return {
            "allocated_mb": torch.cuda.memory_allocated(dev) / mib,
            "peak_mb": torch.cuda.max_memory_allocated(dev) / mib,
            "total_mb": torch.cuda.get_device_properties(dev).total_memory / mib,
        }
    if info.device == "mps":
        return {
            "allocated_mb": torch.mps.current_allocated_memory() / mib,
            "peak_mb": None,
            "total_mb": torch.mps.recommended_max_memory() / mib,
        }
    import psutil

    proc = psutil.Process()
    rss = proc.memory_info().rss / mib
    return {"allocated_mb": rss, "peak_mb": _peak_rss_mb(), "total_mb": psutil.virtual_memory().total / mib}


def _peak_rss_mb() -> float | None:
    """The process's peak resident memory (Linux: KiB, macOS: bytes from getrusage)."""
    try:
        import resource
        import sys

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak / 2**20 if sys.platform == "darwin" else peak / 1024
    except (ImportError, OSError):  # Windows has no resource module
        return None


def attention_backend(info: DeviceInfo, sliced: bool = False) -> str:
    """What computes attention: PyTorch's scaled_dot_product_attention (SDPA) and, on CUDA, the
    kernels it may pick; attention slicing (low-memory preset) runs it in slices."""
    text = "PyTorch SDPA"
    if info.device.startswith("cuda"):
        kernels = [
            name
            for name, on in (
                ("flash", torch.backends.cuda.flash_sdp_enabled()),
                ("memory-efficient", torch.backends.cuda.mem_efficient_sdp_enabled()),
                ("math", torch.backends.cuda.math_sdp_enabled()),
            )
            if on
        ]
        text += f" ({', '.join(kernels)})"
    return text + (", sliced" if sliced else "")


def empty_cache(info: DeviceInfo) -> None:
    if info.device.startswith("cuda"):
        torch.cuda.empty_cache()
    elif info.device == "mps":
        torch.mps.empty_cache()


HEAP_MMAP_THRESHOLD = 16 * 2**20


def bound_heap() -> None:
    """Keep the process's footprint from creeping up as models are loaded and dropped (Linux, glibc).

    glibc raises its mmap threshold each time a large block is freed, up to 32 MiB, so the next
    weights of that size come from the heap, which fragments and never shrinks: switching models
    A → B → A grew the process by ~20 MB per switch here. A fixed threshold (which also turns the
    adjustment off) puts large tensors in their own mappings, returned to the system when freed:
    with it the same switches stay flat (`studio bench soak`)."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").mallopt(-3, HEAP_MMAP_THRESHOLD)  # -3: M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc (musl): its allocator behaves differently
        pass


def release_memory(info: DeviceInfo) -> None:
    """Give memory that dropped objects held back to the system: collect them now, empty the device's
    allocator cache, and on Linux ask glibc to return freed heap pages (after a model is unloaded, the
    process's footprint then goes back down instead of staying at its peak)."""
    import gc

    gc.collect()
    empty_cache(info)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL("libc.so.6").malloc_trim(0)
        except (OSError, AttributeError):  # not glibc (musl): nothing to ask
            pass


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, torch.OutOfMemoryError):
        return True
    return isinstance(exc, RuntimeError) and "out of memory" in str(exc).lower()
