"""FLUX.1 and SD 3/3.5 generation: guidance as each family means it, flow-matching schedulers,
edits with the outside-the-mask guarantee, previews of 16-channel (FLUX: packed) latents, branching."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from studio.core.errors import PromptTooLong
from studio.core.request import BranchRef, GenerationRequest, ImageRef


def _req(model, **kw) -> GenerationRequest:
    fields = dict(
        model=str(model),
        prompt="a red circle at the top left",
        steps=3,
        guidance_scale=3.5,
        width=64,
        height=64,
        scheduler="Euler",
        seed=11,
    )
    fields.update(kw)
    return GenerationRequest.create(**fields)


@pytest.fixture
def transformer_calls(engine):
    """Records (batch size, guidance value) of every transformer call while a test runs."""
    calls: list[tuple[int, float | None]] = []
    hooks = []

    def watch(lm):
        def hook(module, args, kwargs):
            x = kwargs.get("hidden_states", args[0] if args else None)
            g = kwargs.get("guidance")
            calls.append((int(x.shape[0]), None if g is None else float(g.flatten()[0])))

        hooks.append(lm.pipe.transformer.register_forward_pre_hook(hook, with_kwargs=True))
        return calls

    yield watch
    for h in hooks:
        h.remove()


def test_flux_dev_distilled_guidance_no_negative(engine, tiny_flow, transformer_calls):
    model = tiny_flow("flux-dev").model
    calls = transformer_calls(engine.load(str(model)))
    base = engine.generate(_req(model))
    assert calls == [(1, 3.5)] * 3  # one pass a step, the guidance value fed to the model
    with_negative = engine.generate(_req(model, negative_prompt="blurry, ugly"))
    assert np.array_equal(base.images[0], with_negative.images[0])  # FLUX reads no negative prompt
    other = engine.generate(_req(model, guidance_scale=1.5))
    assert not np.array_equal(base.images[0], other.images[0])
    # guidance end does not apply to a distilled guidance: every step keeps it
    calls.clear()
    engine.generate(_req(model, guidance_end=0.3))
    assert calls == [(1, 3.5)] * 3


def test_flux_schnell_runs_without_guidance(engine, tiny_flow, transformer_calls):
    model = tiny_flow("flux-schnell").model
    calls = transformer_calls(engine.load(str(model)))
    a = engine.generate(_req(model, steps=4, guidance_scale=0))
    b = engine.generate(_req(model, steps=4, guidance_scale=7, negative_prompt="x"))
    assert np.array_equal(a.images[0], b.images[0])
    assert calls == [(1, None)] * 8


def test_sd3_classifier_free_guidance_with_negative_prompt(engine, tiny_flow, transformer_calls):
    model = tiny_flow("sd35-medium").model
    calls = transformer_calls(engine.load(str(model)))
    a = engine.generate(_req(model, guidance_scale=5))
    assert [c[0] for c in calls] == [2, 2, 2]  # negative and positive halves each step
    b = engine.generate(_req(model, guidance_scale=5, negative_prompt="blurry"))
    assert not np.array_equal(a.images[0], b.images[0])
    calls.clear()  # guidance on the first step only: the later steps run the transformer once
    c = engine.generate(_req(model, guidance_scale=5, guidance_end=0.3))
    assert [c[0] for c in calls] == [2, 1, 1]
    assert not np.array_equal(a.images[0], c.images[0])


@pytest.mark.parametrize("scheduler", ["Euler", "Euler a", "Heun", "DPM++ 2M"])
def test_flow_schedulers_run_and_count_steps(engine, tiny_flow, scheduler):
    previews = []
    res = engine.generate(
        _req(tiny_flow("flux-dev").model, scheduler=scheduler, steps=4, preview="x0"), on_step=previews.append
    )
    assert res.status == "done" and res.steps_done == 4
    assert [p.step for p in previews] == [1, 2, 3, 4]
    assert previews[-1].latent.shape == (1, 16, 8, 8)  # FLUX's packed tokens unpacked
    assert previews[-1].image.shape == (8, 8, 3) and previews[-1].image.std() > 0


def test_sd_scheduler_names_run_as_the_nearest_flow_scheduler(engine, tiny_flow):
    model = tiny_flow("sd3-medium").model
    ddim = engine.generate(_req(model, scheduler="DDIM"))
    assert "DDIM ran as Euler" in ddim.extra["notice"]
    assert np.array_equal(ddim.images[0], engine.generate(_req(model, scheduler="Euler")).images[0])
    ancestral = engine.generate(_req(model, scheduler="Euler a"))  # the request's default: stochastic Euler
    assert "notice" not in ancestral.extra and not np.array_equal(ancestral.images[0], ddim.images[0])
    assert np.array_equal(ancestral.images[0], engine.generate(_req(model, scheduler="Euler a")).images[0])


def test_timestep_shift_follows_the_family(engine, tiny_flow):
    """FLUX dev: resolution-dependent shift (μ from the token count); schnell: none (shift 1); SD3: 3."""
    from studio.engine import flow
    from studio.engine.schedulers import make_scheduler

    for arch, expect_mid in (("flux-schnell", 2 / 3), ("sd3-medium", 3 * 0.5 / (1 + 2 * 0.5))):
        lm = engine.load(str(tiny_flow(arch).model))
        s = make_scheduler("Euler", lm.base_scheduler_config, flow=True)
        sig = flow.flow_sigmas(lm.pipe, s, 3, 64, 64)
        assert float(sig[1]) == pytest.approx(expect_mid, abs=0.02)
    lm = engine.load(str(tiny_flow("flux-dev").model))
    small = float(flow.flow_sigmas(lm.pipe, make_scheduler("Euler", lm.base_scheduler_config, True), 3, 64, 64)[1])
    big = float(flow.flow_sigmas(lm.pipe, make_scheduler("Euler", lm.base_scheduler_config, True), 3, 1024, 1024)[1])
    assert big > small > 2 / 3  # more tokens, more shift toward noise


def test_t5_prompt_limit_is_the_familys(engine, tiny_flow):
    long = " ".join(["red"] * 300)  # 300 T5 tokens: past schnell's 256, within dev's 512
    engine.generate(_req(tiny_flow("flux-dev").model, prompt=long, steps=1))
    with pytest.raises(PromptTooLong, match="T5 tokens"):
        engine.generate(_req(tiny_flow("flux-schnell").model, prompt=long, steps=1))


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    d = tmp_path_factory.mktemp("flow-edit")
    img = np.zeros((64, 64, 3), np.uint8)
    img[:, :32] = (200, 30, 30)
    img[:, 32:] = (30, 30, 200)
    mask = np.zeros((64, 64), np.uint8)
    mask[16:48, 16:48] = 255
    Image.fromarray(img).save(d / "in.png")
    Image.fromarray(mask).save(d / "mask.png")
    return img, mask, ImageRef(path=str(d / "in.png")), ImageRef(path=str(d / "mask.png"))


@pytest.mark.parametrize("arch", ["flux-dev", "flux-fill", "sd35-medium"])
def test_edits_keep_outside_pixels(engine, tiny_flow, picture, arch):
    img, mask, init, mask_ref = picture
    model = tiny_flow(arch).model
    i2i = engine.generate(_req(model, init_image=init, strength=0.6, steps=4))
    assert i2i.steps_done == 3 and i2i.images[0].shape == (64, 64, 3)  # 4 − int(4 − 2.4), as diffusers' flow pipelines
    inp = engine.generate(_req(model, init_image=init, mask=mask_ref, mask_blur=0, steps=3))
    out = inp.images[0]
    assert np.array_equal(out[mask == 0], img[mask == 0])  # byte-identical outside the mask
    assert not np.array_equal(out[mask > 0], img[mask > 0])
    again = engine.generate(_req(model, init_image=init, mask=mask_ref, mask_blur=0, steps=3))
    assert np.array_equal(out, again.images[0])
    outp = engine.generate(_req(model, init_image=init, outpaint=(16, 0, 16, 0), steps=3))
    assert outp.images[0].shape == (64, 96, 3)
    assert np.array_equal(outp.images[0][:, 16 + 16 : 80 - 16], img[:, 16:-16])  # the old picture, less band + feather


@pytest.mark.parametrize("arch", ["flux-dev", "sd35-large"])
def test_branch_from_any_step_resumes_exactly(engine, tiny_flow, arch):
    """Flow latents are (1 − σ)·x0 + σ·ε: a kept step (stored variance-preserving) resumed with the
    same scheduler continues the parent run (to float rounding of the rescale: ≤ 1 level, as SD's
    Euler); another scheduler continues from it too. Without the flow conversion (σ read as a
    k-diffusion σ, or FLUX's pipeline restarting the scheduler at step 0) the child lands far off."""
    model = tiny_flow(arch).model
    steps = []
    parent = engine.generate(_req(model, steps=4), on_step=steps.append)
    for k in (1, 2, 3):
        seen = []
        child = engine.generate(
            _req(model, steps=4, branch=BranchRef(parent_id="p", step=k)),
            branch_latent=steps[k - 1].latent,
            on_step=seen.append,
        )
        assert child.steps_done == 4 and [p.step for p in seen] == list(range(k + 1, 5))
        assert np.abs(child.images[0].astype(int) - parent.images[0]).max() <= 1
    changed = engine.generate(
        _req(model, steps=4, prompt="a green star", branch=BranchRef(parent_id="p", step=1)),
        branch_latent=steps[0].latent,
    )
    assert not np.array_equal(changed.images[0], parent.images[0])
    other = engine.generate(
        _req(model, steps=4, scheduler="Heun", branch=BranchRef(parent_id="p", step=2)), branch_latent=steps[1].latent
    )
    assert other.status == "done" and np.abs(other.images[0].astype(int) - parent.images[0]).mean() < 40


def test_memory_presets_for_flow_models(engine, tiny_flow):
    """The same preset names mean more for the flow transformers: balanced adds model CPU offload,
    low memory group offloading and fp8 weight storage (CUDA only). Layerwise fp8 casting itself is
    device-independent: on the tiny FLUX it stores the transformer's weights in fp8 and still runs,
    near the full-precision pixels; GGUF weights are left alone."""
    import torch

    from studio.engine.memory import layerwise_fp8, options_for

    assert options_for("balanced").cpu_offload == "none" and options_for("balanced", flow=True).cpu_offload == "model"
    low = options_for("low memory", flow=True)
    assert low.cpu_offload == "group" and low.layerwise_fp8 and not options_for("low memory").layerwise_fp8
    from studio.testing_flow import tiny_flow_pipeline

    pipe = tiny_flow_pipeline("flux-dev")
    pipe.set_progress_bar_config(disable=True)
    kw = dict(prompt="a cat", height=64, width=64, num_inference_steps=2, guidance_scale=3.5, output_type="np")
    full = pipe(generator=torch.Generator().manual_seed(1), **kw).images[0]
    assert layerwise_fp8(pipe, engine.device_info)
    stored = {p.dtype for n, p in pipe.transformer.named_parameters() if n.endswith("to_q.weight")}
    assert stored == {torch.float8_e4m3fn}
    cast = pipe(generator=torch.Generator().manual_seed(1), **kw).images[0]
    assert np.abs(cast - full).max() < 0.1 and not layerwise_fp8(pipe, engine.device_info)  # once only
    gguf = engine.load(
        str(tiny_flow("flux-dev", "gguf").model),
        parts=(tuple(map(str, tiny_flow("flux-dev", "gguf").encoders)), str(tiny_flow("flux-dev", "gguf").vae)),
    )
    assert not layerwise_fp8(gguf.pipe, engine.device_info)


@pytest.mark.parametrize("mode", ["taesd", "vae"])
def test_full_resolution_previews_of_16_channel_latents(tiny_flow, tmp_path, mode):
    """A 16-channel tiny autoencoder (TAEF1-style, set for FLUX in the Models dialog) and the model's
    own VAE both decode FLUX's unpacked step latents at full resolution."""
    from diffusers import AutoencoderTiny

    from studio.engine.engine import Engine

    taef1 = tmp_path / "taef1"
    AutoencoderTiny(
        latent_channels=16,
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
    ).save_pretrained(taef1)
    eng = Engine(device="cpu", taesd={"flux": taef1})
    previews = []
    res = eng.generate(_req(tiny_flow("flux-dev").model, steps=3, preview=mode), on_step=previews.append)
    assert res.status == "done" and [p.step for p in previews] == [1, 2, 3]
    assert all(p.image.shape == (64, 64, 3) and p.latent.shape == (1, 16, 8, 8) for p in previews)
