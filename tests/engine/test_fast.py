"""The fast path: each part switched on and off again on tiny pipelines, the pixel-changing ones in the
recipe (and through a PNG's provenance), step caching as "draft speed", compiled = eager within a
stated tolerance on CPU, and memory presets that undo CPU offload."""

import numpy as np
import pytest
import torch

from studio.core.metadata import read_metadata, write_png
from studio.core.request import FastPath, GenerationRequest
from studio.engine import fast, stepcache
from studio.engine.devices import DeviceInfo
from studio.engine.engine import Engine
from studio.engine.memory import apply as apply_memory
from studio.engine.memory import offloaded, options_for
from studio.testing import tiny_pipeline

CPU = DeviceInfo("cpu", "float32", "CPU")
# Compiled (inductor) and eager pixels differ by rounding only: on average at most 0.5 level of 255,
# and 99 % of the values within 2 levels.
COMPILE_MEAN, COMPILE_P99 = 0.5, 2


def _req(model, **kw):
    fields = dict(model=str(model), prompt="a red circle", steps=6, width=64, height=64, seed=3, scheduler="Euler")
    return GenerationRequest.create(**{**fields, **kw})


def _attn_hooks(module) -> list[str]:
    return [
        name
        for m in module.modules()
        if getattr(m, "_diffusers_hook", None) is not None
        for name in m._diffusers_hook.hooks
    ]


def test_each_model_level_part_is_applied_and_removed():
    pipe = tiny_pipeline("sd15")
    unet = pipe.unet
    conv = unet.conv_in.weight
    assert not fast.is_fused(unet) and not fast.is_compiled(unet) and not stepcache.is_enabled(unet)

    fast.apply(pipe, FastPath(channels_last=True), CPU)
    assert unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    assert pipe.vae.decoder.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
    fast.apply(pipe, FastPath(), CPU)
    assert unet.conv_in.weight.is_contiguous() and torch.equal(unet.conv_in.weight, conv)

    fast.apply(pipe, FastPath(fused_qkv=True), CPU)
    assert fast.is_fused(unet) and any(hasattr(m, "to_qkv") for m in unet.modules())
    assert {type(p).__name__ for p in unet.attn_processors.values()} == {"FusedAttnProcessor2_0"}
    fast.apply(pipe, FastPath(), CPU)
    assert not fast.is_fused(unet) and not any(hasattr(m, "to_qkv") or hasattr(m, "to_kv") for m in unet.modules())
    assert "FusedAttnProcessor2_0" not in {type(p).__name__ for p in unet.attn_processors.values()}

    assert fast.apply(pipe, FastPath(compile=True), CPU)  # newly set to compile
    blocks = fast.repeated_blocks(unet)
    assert blocks and all(b._compiled_call_impl is not None for b in blocks)
    assert not fast.apply(pipe, FastPath(compile=True), CPU)  # unchanged: nothing to do
    fast.apply(pipe, FastPath(), CPU)
    assert not fast.is_compiled(unet)

    fast.apply(pipe, FastPath(draft=True), CPU)
    assert stepcache.is_enabled(unet) and len(_attn_hooks(unet)) == len(stepcache.deep_blocks(unet)) + 1
    fast.apply(pipe, FastPath(), CPU)
    assert not stepcache.is_enabled(unet) and _attn_hooks(unet) == []
    assert fast.applied(pipe) == FastPath()


def test_run_level_parts_sdpa_kernels_and_tf32(monkeypatch):
    pipe = tiny_pipeline("sd15")
    with fast.running(pipe, FastPath(sdpa=False), CPU):
        assert not torch.backends.cuda.flash_sdp_enabled() and torch.backends.cuda.math_sdp_enabled()
    assert torch.backends.cuda.flash_sdp_enabled()
    matmul = torch.backends.cuda.matmul
    before = matmul.fp32_precision
    with fast.running(pipe, FastPath(tf32=True), CPU):  # no CUDA: asked for, does nothing
        assert matmul.fp32_precision == before
    monkeypatch.setattr(fast, "tf32_supported", lambda info: True)  # an Ampere GPU, as far as the switch can tell
    with fast.running(pipe, FastPath(tf32=True), DeviceInfo("cuda", "float16", "A100")):
        assert matmul.fp32_precision == "tf32" and torch.backends.cudnn.conv.fp32_precision == "tf32"
    assert matmul.fp32_precision == before


def test_recommended_fast_path_per_device(monkeypatch):
    assert fast.recommended(CPU) == FastPath(fused_qkv=True)
    monkeypatch.setattr(fast, "cuda_capability", lambda info: (9, 0))
    gpu = fast.recommended(DeviceInfo("cuda", "float16", "H100"))
    assert gpu.compile and gpu.channels_last and gpu.fused_qkv and gpu.tf32 and not gpu.draft
    monkeypatch.setattr(fast, "cuda_capability", lambda info: (7, 5))
    assert not fast.recommended(DeviceInfo("cuda", "float16", "T4")).tf32


def test_fused_qkv_is_left_off_with_loras_and_plugins():
    on = FastPath(fused_qkv=True)
    assert fast.effective(GenerationRequest.create(fast=on)).fused_qkv
    assert not fast.effective(GenerationRequest.create(fast=on, loras=[{"name": "x", "path": "/x"}])).fused_qkv
    assert not fast.effective(GenerationRequest.create(fast=on, prompt="a cat <lora:ink:0.5>")).fused_qkv
    assert not fast.effective(GenerationRequest.create(fast=on, plugins={"ip_adapter": {}})).fused_qkv


def test_the_fast_path_in_the_recipe_round_trips_through_provenance(tmp_path):
    req = GenerationRequest.create(fast=FastPath(channels_last=True, fused_qkv=True, compile=True, draft=True))
    assert GenerationRequest.from_json(req.to_json()) == req
    path = write_png(tmp_path / "x.png", np.zeros((8, 8, 3), np.uint8), req, {"model_sha256": "ab" * 32})
    back = read_metadata(path).request
    assert back == req and back.fast.draft and back.fast.compile
    old = {k: v for k, v in req.to_dict().items() if k != "fast"}  # a recipe from before the fast path
    assert GenerationRequest.from_dict({**old, "schema_version": 7}).fast == FastPath()


def test_engine_runs_each_part_and_undoes_it(engine, tiny_sd15):
    bare = engine.generate(_req(tiny_sd15)).images[0].astype(int)
    for part in ("channels_last", "fused_qkv", "sdpa"):
        speed = FastPath(**{part: not getattr(FastPath(), part)})
        img = engine.generate(_req(tiny_sd15, fast=speed)).images[0].astype(int)
        assert np.abs(img - bare).max() <= 2, part  # another memory layout / kernel: rounding only
    again = engine.generate(_req(tiny_sd15)).images[0].astype(int)
    assert np.array_equal(again, bare)  # every part undone: the bare pixels exactly


def test_draft_speed_caches_unet_steps(engine, tiny_sd15):
    bare = engine.generate(_req(tiny_sd15, steps=9)).images[0].astype(int)
    one = engine.generate(_req(tiny_sd15, steps=9, fast=FastPath(draft=True)))
    unet = engine.load(str(tiny_sd15)).pipe.unet
    assert stepcache.stats(unet) == {"full": 3, "cached": 6}  # one full step in three
    two = engine.generate(_req(tiny_sd15, steps=9, fast=FastPath(draft=True)))
    assert np.array_equal(one.images[0], two.images[0])  # the cache starts empty each run
    diff = np.abs(one.images[0].astype(int) - bare)
    assert diff.max() > 0 and diff.mean() < 40  # a draft: another picture, not noise
    # guidance switched off mid-run halves the batch: that step is computed in full, not from the cache
    cut = engine.generate(_req(tiny_sd15, steps=9, guidance_end=0.5, fast=FastPath(draft=True)))
    assert cut.images and stepcache.stats(unet)["full"] == 4
    assert np.array_equal(engine.generate(_req(tiny_sd15, steps=9)).images[0], bare)


def test_draft_speed_on_a_flow_transformer(tiny_flow):
    eng = Engine(device="cpu")
    model = tiny_flow("flux-dev").model
    req = _req(model, steps=8, guidance_scale=3.5)
    bare = eng.generate(req).images[0]
    one = eng.generate(req.replace(fast={"draft": True}))
    transformer = eng.load(str(model)).pipe.transformer
    assert {"fbc_leader_block_hook", "fbc_block_hook"} <= set(_attn_hooks(transformer))
    two = eng.generate(req.replace(fast={"draft": True}))
    assert np.array_equal(one.images[0], two.images[0])
    assert np.array_equal(eng.generate(req).images[0], bare)
    assert _attn_hooks(transformer) == []


def test_compiled_blocks_match_the_eager_pixels():
    """Regional torch.compile (inductor, on this CPU) gives the eager pixels within COMPILE_MEAN / COMPILE_P99,
    and its compiled kernels land in the studio's compile cache."""
    eng = Engine(device="cpu")  # the demo model: a random tiny UNet amplifies rounding into chaos
    req = _req("demo", steps=4, width=64, height=64)
    eager = eng.generate(req).images[0].astype(int)
    progress = []
    compiled = eng.generate(req.replace(fast={"compile": True}), on_progress=progress.append)
    assert fast.is_compiled(eng.load("demo").pipe.unet)
    assert any("compiling" in p.stage for p in progress)
    diff = np.abs(compiled.images[0].astype(int) - eager)
    assert diff.mean() <= COMPILE_MEAN and np.percentile(diff, 99) <= COMPILE_P99, (diff.mean(), diff.max())
    assert any(fast.compile_cache_dir().rglob("*")), "inductor's cache is in the studio's cache folder"
    assert np.array_equal(eng.generate(req).images[0], eager)


def test_memory_presets_undo_cpu_offload():
    pipe = tiny_pipeline("sd15")
    gpu = DeviceInfo("cuda", "float16", "a GPU")  # offload hooks are set up without touching the GPU
    apply_memory(pipe, options_for("low memory"), gpu)
    assert offloaded(pipe) == "model" and hasattr(pipe.unet, "_hf_hook")
    apply_memory(pipe, options_for("low memory"), gpu)  # again: idempotent
    assert offloaded(pipe) == "model"
    apply_memory(pipe, options_for("fast"), CPU)
    assert offloaded(pipe) == "none" and not hasattr(pipe.unet, "_hf_hook") and pipe._execution_device.type == "cpu"
    apply_memory(pipe, options_for("balanced", flow=True), gpu)  # a flow model's balanced offloads too
    assert offloaded(pipe) == "model"
    apply_memory(pipe, options_for("balanced"), CPU)
    assert offloaded(pipe) == "none"


@pytest.mark.parametrize("arch", ["sdxl"])
def test_fused_qkv_and_draft_on_sdxl(engine, tiny_models, arch):
    model = tiny_models(arch)
    bare = engine.generate(_req(model)).images[0].astype(int)
    fused = engine.generate(_req(model, fast={"fused_qkv": True, "channels_last": True})).images[0].astype(int)
    assert np.abs(fused - bare).max() <= 2
    draft = engine.generate(_req(model, fast={"draft": True}))
    assert draft.images and stepcache.stats(engine.load(str(model)).pipe.unet)["cached"] > 0


def test_cli_fast_and_draft_are_in_the_recipe(tiny_sd15, tmp_path, capsys):
    import json

    from studio.cli import main

    out = tmp_path / "x.png"
    args = ["generate", "--model", str(tiny_sd15), "--prompt", "a red circle", "--steps", "3", "--size", "64x64"]
    assert main([*args, "--out", str(out), "--fast", "--draft", "--json", "--no-gallery", "--device", "cpu"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["request"]["fast"] == {**FastPath(fused_qkv=True, draft=True).model_dump()}
    assert read_metadata(out).request.fast == FastPath(fused_qkv=True, draft=True)


def test_bench_speed_json_on_cpu(capsys):
    import json

    from studio.cli import main

    assert (
        main(["bench", "speed", "--steps", "3", "--runs", "1", "--size", "64", "--parts", "fused_qkv", "--json"]) == 0
    )
    d = json.loads(capsys.readouterr().out)
    assert (d["device"], d["dtype"], d["arch"], d["size"]) == ("cpu", "float32", "demo", 64)
    assert d["fast_path"] == FastPath(fused_qkv=True).model_dump()
    for path in ("bare", "fast"):
        assert d[path]["it_s"] > 0 and d[path]["s_per_image"] > 0 and d[path]["bad_images"] == 0
        assert d[path]["peak_share"] is None  # no known peak on a CPU
    assert d["flops_per_step"] > 0 and d["peak_tflops"] is None
    assert d["speedup_it_s"] == pytest.approx(d["fast"]["it_s"] / d["bare"]["it_s"], rel=1e-3)
    assert main(["bench", "speed", "--parts", "warp-drive", "--json"]) == 2
    assert "unknown fast-path part" in capsys.readouterr().err


def test_flops_counted_from_shapes_and_the_peak_table():
    from diffusers import UNet2DConditionModel

    from studio.dev.fullsize import FULL_UNETS
    from studio.engine.flops import count_flops, peak_tflops

    with torch.device("meta"):  # SD 1.5's UNet at 512², batch 2 (one CFG step), no memory needed
        unet = UNet2DConditionModel(**FULL_UNETS["sd15"])
        x, ctx = torch.randn(2, 4, 64, 64), torch.randn(2, 77, 768)
        flops = count_flops(unet, (x, torch.tensor([999])), {"encoder_hidden_states": ctx})
    assert 1.5e12 < flops < 1.8e12  # matmuls, convolutions and attention: 1.61 TFLOP
    assert peak_tflops("NVIDIA H100 80GB HBM3", "float16") == 989.4
    assert peak_tflops("NVIDIA H100 PCIe", "bfloat16") == 756.5
    assert peak_tflops("NVIDIA L40S", "float16") == 362.1 and peak_tflops("NVIDIA L4", "float16") == 121.0
    assert peak_tflops("NVIDIA A100-SXM4-80GB", "float16") == 312.0
    assert peak_tflops("NVIDIA A100-SXM4-80GB", "float32") is None
    assert peak_tflops("CPU (2 threads)", "float16") is None and peak_tflops("Some Future GPU", "float16") is None


def test_several_gpus_device_by_index(monkeypatch):
    from studio.core.errors import InvalidRequest
    from studio.engine import devices

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda d=0: f"GPU {d if isinstance(d, int) else d.index}")
    assert devices.choose_device("cuda:1", None) == DeviceInfo("cuda:1", "float16", "GPU 1")
    with pytest.raises(InvalidRequest, match=r"no GPU 'cuda:2' on this machine; it has cuda:0, cuda:1"):
        devices.choose_device("cuda:2", None)
    with pytest.raises(InvalidRequest, match="no GPU 'cuda:x'"):
        devices.choose_device("cuda:x", None)
    assert [d for d, _ in devices.available_devices()][:2] == ["cuda:0", "cuda:1"]
    assert devices.available_devices()[-1][0] == "cpu"


def test_an_overflowing_fp16_vae_decode_is_redone_in_fp32():
    from studio.engine.components import nan_safe_decode

    vae = tiny_pipeline("sdxl").vae
    with torch.no_grad():
        vae.decoder.conv_in.weight.fill_(30000.0)  # fits fp16, but its sums do not: inf, then NaN
    z = torch.ones(1, vae.config.latent_channels, 8, 8)
    with torch.inference_mode():
        want = vae.decode(z).sample  # fp32: finite
        vae.to(torch.float16)
        assert not torch.isfinite(vae.decode(z.half()).sample).all()  # the black image
        nan_safe_decode(vae)
        got = vae.decode(z.half()).sample
        tup = vae.decode(z.half(), return_dict=False)[0]
    assert torch.isfinite(want).all() and got.dtype == torch.float16 and vae.dtype == torch.float16
    assert torch.isfinite(got).all() and torch.allclose(got.float(), want, atol=1e-2)
    assert torch.equal(tup, got)


def test_an_fp16_fix_vae_file_decodes_without_upcasting(tmp_path):
    from safetensors.torch import save_file

    from studio.engine.components import load_vae

    own = tiny_pipeline("sdxl").vae
    assert own.config.force_upcast  # SDXL's own VAE: decoded in fp32 by diffusers
    state = {k: v.contiguous() for k, v in own.state_dict().items()}
    for name, upcast in (("sdxl_vae_fp16_fix.safetensors", False), ("sdxl_vae.safetensors", True)):
        save_file(state, str(tmp_path / name))
        assert load_vae(tmp_path / name, own, CPU).config.force_upcast is upcast
