"""How much of a GPU's arithmetic a denoiser uses: FLOPs counted from the model's shapes, against a
table of NVIDIA GPUs' dense fp16/bf16 tensor-core peaks.

FLOPs come from PyTorch's FlopCounterMode over one denoiser call (matmuls, convolutions and attention
counted from their shapes: 2 FLOPs per multiply-add; elementwise work is not counted). It runs on
"meta" tensors as well, so the count for a full-size model needs no GPU: SD 1.5's UNet at 512², batch
2 (one CFG step) is 1.61 TFLOP.
"""

from __future__ import annotations

import re
from typing import Any

import torch

# Dense (no structured sparsity) fp16/bf16 tensor-core peaks with fp32 accumulation, in TFLOP/s, from
# NVIDIA's data sheets; the first name fragment found in the device's name wins (most specific first).
PEAK_TFLOPS: tuple[tuple[str, float], ...] = (
    ("GB200", 2500.0),
    ("B200", 2250.0),
    ("B100", 1750.0),
    ("H200", 989.4),
    ("H100 PCIe", 756.5),
    ("H100 NVL", 835.5),
    ("H100", 989.4),  # SXM5 ("NVIDIA H100 80GB HBM3")
    ("H800", 989.4),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.1),
    ("L40", 181.0),
    ("L4", 121.0),
    ("A40", 149.7),
    ("A10", 125.0),
    ("RTX A6000", 154.8),
    ("RTX 4090", 165.2),
    ("RTX 3090", 71.0),
    ("V100", 125.0),
    ("T4", 65.0),
)


def peak_tflops(device_name: str, dtype: str) -> float | None:
    """The device's dense fp16/bf16 peak, or None (not an NVIDIA GPU in the table, or fp32 work)."""
    if dtype not in ("float16", "bfloat16"):
        return None
    for fragment, tflops in PEAK_TFLOPS:
        if re.search(rf"(?<![A-Za-z0-9]){re.escape(fragment)}(?![A-Za-z0-9])", device_name):
            return tflops
    return None


def count_flops(model: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """FLOPs of one call `model(*args, **kwargs)`, counted from the shapes of what it runs."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(*args, **kwargs)
    return int(counter.get_total_flops())


class CallRecorder:
    """Remembers the arguments of a module's first call and counts its calls (a forward pre-hook)."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.args: tuple[Any, ...] | None = None
        self.kwargs: dict[str, Any] = {}
        self.calls = 0
        self._handle = module.register_forward_pre_hook(self._seen, with_kwargs=True)

    def _seen(self, module: torch.nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.calls += 1
        if self.args is None:
            self.args, self.kwargs = args, dict(kwargs)

    def remove(self) -> None:
        self._handle.remove()
