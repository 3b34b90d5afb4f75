"""Step caching for "draft speed": reuse what changes little from one denoising step to the next.

- UNets (SD 1.x/2.x, SDXL): a DeepCache-style cache (Ma et al., 2023). The deep part of the UNet —
  every down block after the first, the mid block, every up block but the last — is computed on one
  step in `INTERVAL` and its outputs reused on the steps between; those steps run only the shallow
  outer blocks (full resolution), fed by the fresh skip connections of the first down block. Written
  here as diffusers model hooks, because diffusers' cache hooks are built for transformer blocks.
- Flow transformers (FLUX, SD3): diffusers' first-block cache: when the first block's residual barely
  changed since the last full step (relative change below `FBC_THRESHOLD`), the other blocks' residual
  of that step is reused.

Both are stateful: `run` starts each generation with an empty cache (so a rerun is bit-identical).
A step whose input differs in shape from the cached one (guidance switched off mid-run halves the
batch) is computed in full.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from diffusers.hooks import HookRegistry, ModelHook

INTERVAL = 3  # DeepCache: a full UNet step, then two cached ones
FBC_THRESHOLD = 0.12  # first-block cache: relative change of the first block's residual below which steps are reused
_DEEP = "studio_deepcache"
_STEP = "studio_deepcache_step"
_FBC_HOOKS = ("fbc_leader_block_hook", "fbc_block_hook")  # the names diffusers' first-block cache registers


class _State:
    def __init__(self, interval: int) -> None:
        self.interval = interval
        self.calls = 0
        self.reuse = False
        self.shape: tuple[int, ...] | None = None
        self.full_steps = 0
        self.cached_steps = 0


class _StepHook(ModelHook):
    """On the UNet: decides before each call whether this step is computed in full or from the cache."""

    _is_stateful = True

    def __init__(self, state: _State) -> None:
        super().__init__()
        self.state = state

    def pre_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> tuple[tuple[Any], dict[str, Any]]:
        st = self.state
        sample = args[0] if args else kwargs.get("sample")
        shape = tuple(sample.shape) if isinstance(sample, torch.Tensor) else None
        st.reuse = st.calls % st.interval != 0 and shape == st.shape
        if st.reuse:
            st.cached_steps += 1
        else:
            st.full_steps += 1
            st.calls = 0  # a full step restarts the interval (after a shape change too)
        st.shape = shape
        st.calls += 1
        return args, kwargs

    def reset_state(self, module: torch.nn.Module) -> torch.nn.Module:
        st = self.state
        st.calls, st.reuse, st.shape, st.full_steps, st.cached_steps = 0, False, None, 0, 0
        return module


class _DeepHook(ModelHook):
    """On a deep block: its output from the last full step when the step reuses the cache."""

    _is_stateful = True

    def __init__(self, state: _State) -> None:
        super().__init__()
        self.state = state
        self.output: Any = None

    def new_forward(self, module: torch.nn.Module, *args: Any, **kwargs: Any) -> Any:
        if self.state.reuse and self.output is not None:
            return self.output
        self.output = self.fn_ref.original_forward(*args, **kwargs)
        return self.output

    def reset_state(self, module: torch.nn.Module) -> torch.nn.Module:
        self.output = None
        return module


def deep_blocks(unet: torch.nn.Module) -> list[torch.nn.Module]:
    """The blocks a cached step skips: down blocks after the first, the mid block, up blocks but the last."""
    blocks = [*list(unet.down_blocks)[1:], *list(unet.up_blocks)[:-1]]
    if unet.mid_block is not None:
        blocks.insert(len(unet.down_blocks) - 1, unet.mid_block)
    return blocks


def enable(model: torch.nn.Module) -> None:
    if is_enabled(model):
        return
    if hasattr(model, "down_blocks"):  # a UNet
        state = _State(INTERVAL)
        for block in deep_blocks(model):
            HookRegistry.check_if_exists_or_initialize(block).register_hook(_DeepHook(state), _DEEP)
        HookRegistry.check_if_exists_or_initialize(model).register_hook(_StepHook(state), _STEP)
    else:
        from diffusers.hooks import FirstBlockCacheConfig, apply_first_block_cache

        apply_first_block_cache(model, FirstBlockCacheConfig(threshold=FBC_THRESHOLD))
    # the model's registry keeps a list of its children's hook registries: new ones were added
    HookRegistry.check_if_exists_or_initialize(model).invalidate_child_registries_cache()
    model._studio_step_cache = True


def disable(model: torch.nn.Module) -> None:
    if not is_enabled(model):
        return
    registry = HookRegistry.check_if_exists_or_initialize(model)
    for name in (_STEP, _DEEP, *_FBC_HOOKS):
        registry.remove_hook(name, recurse=True)
    registry.invalidate_child_registries_cache()
    model._studio_step_cache = False


def is_enabled(model: torch.nn.Module) -> bool:
    return bool(getattr(model, "_studio_step_cache", False))


def stats(model: torch.nn.Module) -> dict[str, int] | None:
    """A UNet's full and cached steps in the last run (None for the first-block cache, which decides per step)."""
    hook = getattr(model, "_diffusers_hook", None)
    step = hook.get_hook(_STEP) if hook is not None else None
    if step is None:
        return None
    return {"full": step.state.full_steps, "cached": step.state.cached_steps}


@contextlib.contextmanager
def run(model: torch.nn.Module) -> Iterator[None]:
    """One generation: the cache starts empty; the transformers' cache hooks get the context they
    need (FLUX's pipeline names its own "cond"/"uncond" passes; SD3's and the edit pipelines do not)."""
    from diffusers.hooks.hooks import CacheContext, _set_cache_context

    HookRegistry.check_if_exists_or_initialize(model).reset_stateful_hooks(recurse=True)
    flow = not hasattr(model, "down_blocks")
    if flow:
        _set_cache_context(model, CacheContext("cond"))
    try:
        yield
    finally:
        if flow:
            _set_cache_context(model, None)
