"""The fast path on a CUDA GPU (skipped without one; tools/gpu-check.sh runs these): every part on
fp16, compiled blocks replayed as CUDA graphs, TF32 on Ampere and newer, no NaN or black images from
the fp16 run's VAE decode, and CPU offload undone by the "fast" preset."""

import numpy as np
import pytest
import torch

from studio.core.request import FastPath, GenerationRequest

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (tools/gpu-check.sh)")


@pytest.fixture(scope="module")
def gpu_engine():
    from studio.engine.engine import Engine

    return Engine(device="cuda", dtype="float16", preset="fast")


def _req(model, **kw):
    fields = dict(model=str(model), prompt="a red circle", steps=6, width=128, height=128, seed=3, scheduler="Euler")
    return GenerationRequest.create(**{**fields, **kw})


def _ok(image: np.ndarray) -> bool:
    return bool(np.isfinite(image).all() and image.max() > 0)


def test_every_part_in_fp16_gives_a_picture(gpu_engine):
    from studio.engine import fast

    bare = gpu_engine.generate(_req("demo")).images[0].astype(int)
    assert _ok(bare)
    everything = FastPath(channels_last=True, tf32=True, fused_qkv=True, compile=True, cuda_graphs=True)
    for speed in (fast.recommended(gpu_engine.device_info), everything, FastPath(draft=True)):
        img = gpu_engine.generate(_req("demo", fast=speed)).images[0].astype(int)
        assert _ok(img)
        if not speed.draft:
            assert np.abs(img - bare).mean() < 2, speed  # fp16 rounding, not another picture
    assert np.array_equal(gpu_engine.generate(_req("demo")).images[0], bare)  # all of it undone


def test_tf32_is_on_during_the_run_on_ampere(gpu_engine):
    from studio.engine import fast

    if not fast.tf32_supported(gpu_engine.device_info):
        pytest.skip("TF32 needs compute capability 8.0 or newer")
    lm = gpu_engine.load("demo")
    with fast.running(lm.pipe, FastPath(tf32=True), gpu_engine.device_info):
        assert torch.backends.cuda.matmul.fp32_precision == "tf32"


def test_fp16_vae_decode_of_a_full_size_vae_has_no_nans():
    """SDXL's VAE in fp16 overflows on real latents unless decoded in fp32 (force_upcast) or replaced
    by an fp16-fix VAE: a full-size pipeline's fp16 run must give finite, non-black pixels."""
    from studio.dev import fullsize

    pipe = fullsize.pipeline("sdxl", "cuda", torch.float16)
    kw = fullsize.prompt_kwargs("sdxl", "cuda", torch.float16)
    with torch.inference_mode():
        out = pipe(**kw, num_inference_steps=2, height=512, width=512, output_type="np")
    assert _ok(np.asarray(out.images))


def test_fast_preset_removes_cpu_offload(gpu_engine):
    from studio.engine.memory import apply, offloaded, options_for

    lm = gpu_engine.load("demo")
    apply(lm.pipe, options_for("low memory"), gpu_engine.device_info)
    assert offloaded(lm.pipe) == "model"
    apply(lm.pipe, options_for("fast"), gpu_engine.device_info)
    assert offloaded(lm.pipe) == "none" and lm.pipe.unet.device.type == "cuda"
    lm.extra.pop("preset", None)
    assert _ok(gpu_engine.generate(_req("demo")).images[0])
