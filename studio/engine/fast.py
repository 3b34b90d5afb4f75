"""The fast path: the speed settings of a request (`studio.core.request.FastPath`) on a loaded pipeline.

Each part is switchable and undoes itself when a later request does not ask for it:

- sdpa:          PyTorch SDPA with its fused kernels (flash, memory-efficient), diffusers' default;
                 off: SDPA restricted to its math kernel for the run.
- channels_last: the UNet's and the VAE's weights in NHWC layout (cuDNN's fast convolutions).
- tf32:          TF32 for fp32 matmuls and convolutions during the run (CUDA, compute capability ≥ 8;
                 the fp32 VAE decode is the main fp32 work of an fp16 run).
- fused_qkv:     one projection matmul for attention's query/key/value (diffusers' fuse_qkv_projections;
                 undone here completely: the fused weights are dropped again).
- compile:       torch.compile of the denoiser's repeated blocks only (regional compilation: one
                 transformer block is compiled and reused for every block like it, so a first compile
                 takes seconds, not minutes), with inductor's caches in the studio's cache folder, kept
                 across runs and restarts (`compile_cache_dir`).
- cuda_graphs:   with compile on CUDA, mode "reduce-overhead": each block replayed as a CUDA graph
                 where its shapes repeat (a new size records new graphs).
- draft:         step caching ("draft speed", studio.engine.stepcache): a DeepCache-style cache for
                 UNets, diffusers' first-block cache for the flow transformers.

The model-level parts (channels_last, fused_qkv, compile, draft) are applied by `apply` and recorded on
the pipeline; the run-level ones (sdpa, tf32, the step cache's reset) by the `running` context.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from studio.core.request import FastPath
from studio.engine import stepcache
from studio.engine.devices import DeviceInfo

BARE = FastPath()  # what diffusers does by itself (SDPA, nothing else)
_APPLIED = "_studio_fast"  # the model-level parts on a pipeline, as a FastPath


def cuda_capability(info: DeviceInfo) -> tuple[int, int] | None:
    if not info.device.startswith("cuda"):
        return None
    return tuple(torch.cuda.get_device_capability(info.torch_device))


def tf32_supported(info: DeviceInfo) -> bool:
    cap = cuda_capability(info)
    return cap is not None and cap[0] >= 8


def recommended(info: DeviceInfo) -> FastPath:
    """The fast path this device gains from (what `--fast` and the window's "fast" turn on).

    On CUDA: every part but step caching (which changes the picture) and CUDA graphs (which hold
    memory per recorded size). On CPU and MPS: fused QKV projections only (measured on this CPU with
    the demo model, `studio bench speed`: channels-last and the compiled blocks were not faster than
    bare diffusers there)."""
    if info.device.startswith("cuda"):
        return FastPath(channels_last=True, tf32=tf32_supported(info), fused_qkv=True, compile=True)
    return FastPath(fused_qkv=True)


def denoiser_of(pipe: Any) -> torch.nn.Module:
    model = getattr(pipe, "unet", None)
    return model if model is not None else pipe.transformer


def applied(pipe: Any) -> FastPath:
    """The model-level parts now on the pipeline (the run-level ones as bare)."""
    return getattr(pipe, _APPLIED, BARE)


def effective(request: Any) -> FastPath:
    """The request's fast path as it can run: fused QKV projections are left off when LoRAs or plugins
    are in play (a LoRA patches the separate q/k/v layers and IP-Adapter swaps attention processors;
    a fused projection would silently bypass both)."""
    want: FastPath = request.fast
    if want.fused_qkv and (request.loras or request.plugins or "<lora:" in request.prompt.lower()):
        return want.model_copy(update={"fused_qkv": False})
    return want


def apply(pipe: Any, want: FastPath, info: DeviceInfo) -> bool:
    """Put the model-level parts of `want` on the pipeline and take off those it does not ask for
    (cheap when nothing changes). True when blocks were newly set to compile (the next run compiles)."""
    have = applied(pipe)
    model = denoiser_of(pipe)
    if have.draft and not want.draft:  # hooks off first, so unfusing and uncompiling see plain modules
        stepcache.disable(model)
    if want.fused_qkv != have.fused_qkv:
        (fuse_qkv if want.fused_qkv else unfuse_qkv)(model)
    fmt = torch.channels_last if want.channels_last else torch.contiguous_format
    unet, vae = getattr(pipe, "unet", None), getattr(pipe, "vae", None)
    if unet is not None and want.channels_last != have.channels_last:
        unet.to(memory_format=fmt)
    if vae is not None:  # every time: the request's VAE may have been switched in since (a no-op otherwise)
        vae.to(memory_format=fmt)
    compiled = False
    if (want.compile, want.cuda_graphs) != (have.compile, have.cuda_graphs):
        uncompile(model)
        if want.compile:
            graphs = want.cuda_graphs and info.device.startswith("cuda")
            compiled = compile_blocks(model, mode="reduce-overhead" if graphs else None) > 0
    if want.draft and not have.draft:
        stepcache.enable(model)
    parts = ("channels_last", "fused_qkv", "compile", "cuda_graphs", "draft")
    setattr(pipe, _APPLIED, BARE.model_copy(update={k: getattr(want, k) for k in parts}))
    return compiled


@contextlib.contextmanager
def running(pipe: Any, want: FastPath, info: DeviceInfo) -> Iterator[None]:
    """The run-level parts around one pipeline call: SDPA's kernels, TF32, a fresh step cache."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    with contextlib.ExitStack() as stack:
        if not want.sdpa:
            stack.enter_context(sdpa_kernel([SDPBackend.MATH]))
        if want.tf32 and tf32_supported(info):
            stack.enter_context(tf32())
        if applied(pipe).draft:
            stack.enter_context(stepcache.run(denoiser_of(pipe)))
        yield


@contextlib.contextmanager
def tf32() -> Iterator[None]:
    """TF32 for fp32 matmuls and cuDNN convolutions, restored afterwards."""
    matmul, conv = torch.backends.cuda.matmul, torch.backends.cudnn
    if hasattr(matmul, "fp32_precision") and hasattr(conv, "conv"):  # torch ≥ 2.9's precision API
        before = (matmul.fp32_precision, conv.conv.fp32_precision)
        matmul.fp32_precision, conv.conv.fp32_precision = "tf32", "tf32"
        try:
            yield
        finally:
            matmul.fp32_precision, conv.conv.fp32_precision = before
        return
    old = (matmul.allow_tf32, conv.allow_tf32)
    matmul.allow_tf32, conv.allow_tf32 = True, True
    try:
        yield
    finally:
        matmul.allow_tf32, conv.allow_tf32 = old


# -- fused QKV projections ------------------------------------------------------------------------
def fuse_qkv(model: torch.nn.Module) -> None:
    model.fuse_qkv_projections()


def unfuse_qkv(model: torch.nn.Module) -> None:
    """diffusers' unfuse puts the UNet's attention processors back but keeps the fused weights (memory,
    and a later fuse would not refresh them after a LoRA changed q/k/v): drop them here."""
    model.unfuse_qkv_projections()
    for module in model.modules():
        if getattr(module, "fused_projections", False) or hasattr(module, "to_qkv") or hasattr(module, "to_kv"):
            for name in ("to_qkv", "to_kv", "to_added_qkv"):
                if hasattr(module, name):
                    delattr(module, name)
            module.fused_projections = False


def is_fused(model: torch.nn.Module) -> bool:
    return any(getattr(m, "fused_projections", False) for m in model.modules())


# -- regional compilation -----------------------------------------------------------------------
def repeated_blocks(model: torch.nn.Module) -> list[torch.nn.Module]:
    """The blocks regional compilation compiles: the model's `_repeated_blocks` classes, else the
    entries of its transformer-block lists (SD3's transformer declares none)."""
    names = set(getattr(model, "_repeated_blocks", None) or ())
    if not names:
        for attr in ("transformer_blocks", "single_transformer_blocks"):
            names |= {type(b).__name__ for b in getattr(model, attr, ())}
    return [m for m in model.modules() if type(m).__name__ in names]


def compile_blocks(model: torch.nn.Module, mode: str | None = None) -> int:
    """torch.compile each repeated block (inductor, its caches in `compile_cache_dir`). A block compiled
    before with the same mode gets its compiled function back (no new trace). Returns the count."""
    use_compile_cache()
    import torch._dynamo

    # every block of one shape reuses one graph; SDXL has blocks of 3 widths, each at 2 batch sizes
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    blocks = repeated_blocks(model)
    for block in blocks:
        kept = getattr(block, "_studio_compiled", None)
        if kept is not None and kept[0] == mode:
            block._compiled_call_impl = kept[1]
            continue
        block.compile(mode=mode)
        block._studio_compiled = (mode, block._compiled_call_impl)
    return len(blocks)


def uncompile(model: torch.nn.Module) -> None:
    for block in model.modules():
        if getattr(block, "_compiled_call_impl", None) is not None:
            block._compiled_call_impl = None


def is_compiled(model: torch.nn.Module) -> bool:
    return any(getattr(m, "_compiled_call_impl", None) is not None for m in model.modules())


def compile_cache_dir() -> Path:
    from studio.core.paths import cache_dir

    return cache_dir() / "torch-compile"


def use_compile_cache() -> Path:
    """Keep inductor's compiled kernels (FX graph cache, autotuning, Triton's kernels) in the studio's
    cache folder, so a later start finds them (a warm start compiles nothing). An explicit
    TORCHINDUCTOR_CACHE_DIR / TRITON_CACHE_DIR in the environment wins."""
    from torch._inductor.runtime.cache_dir_utils import default_cache_dir

    folder = compile_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    # importing torch's inductor writes its default (a temporary folder) into the environment: replace that
    if os.environ.get("TORCHINDUCTOR_CACHE_DIR", default_cache_dir()) == os.path.abspath(default_cache_dir()):
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(folder)
    os.environ.setdefault("TRITON_CACHE_DIR", str(folder / "triton"))
    import torch._inductor.config as inductor

    inductor.fx_graph_cache = True
    return Path(os.environ["TORCHINDUCTOR_CACHE_DIR"])
