"""Guidance on the first part of the steps only (GenerationRequest.guidance_end, studio.engine.guidance)."""

import numpy as np
import pytest
from diffusers import UNet2DConditionModel
from PIL import Image

from studio.core.errors import InvalidRequest
from studio.core.request import BranchRef, ControlNetRef, GenerationRequest, ImageRef
from studio.engine import guidance
from studio.engine.guidance import guided_steps
from studio.testing import save_tiny_controlnet


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("guidance-end")
    rng = np.random.default_rng(3)
    Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(d / "in.png")
    m = np.zeros((64, 64), np.uint8)
    m[16:48, 8:40] = 255
    Image.fromarray(m).save(d / "mask.png")
    return {
        "in": ImageRef(path=str(d / "in.png")),
        "mask": ImageRef(path=str(d / "mask.png")),
        "cn": save_tiny_controlnet(d / "cn", seed=0),
        "cn-xl": save_tiny_controlnet(d / "cn-xl", arch="sdxl"),
    }


def _req(model, **kw):
    return GenerationRequest.create(
        **{
            **dict(
                model=str(model),
                prompt="a red circle",
                negative_prompt="blurry",
                steps=6,
                width=64,
                height=64,
                seed=5,
                guidance_scale=7.0,
                scheduler="Euler",
            ),
            **kw,
        }
    )


def _cases(inputs):
    unit = lambda model: ControlNetRef(model=str(inputs[model]), image=inputs["in"], preprocessor="canny")  # noqa: E731
    return {
        "txt2img": ("sd15", {}),
        "img2img": ("sd15", dict(init_image=inputs["in"], strength=0.7, steps=9)),
        "inpaint": ("sd15", dict(init_image=inputs["in"], mask=inputs["mask"])),
        "inpainting checkpoint": ("sd15-inpaint", dict(init_image=inputs["in"], mask=inputs["mask"])),
        "sdxl": ("sdxl", {}),
        "sdxl inpaint": ("sdxl", dict(init_image=inputs["in"], mask=inputs["mask"])),
        "controlnet": ("sd15", dict(controlnets=(unit("cn"),))),
        "multi-controlnet img2img": (
            "sd15",
            dict(controlnets=(unit("cn"), unit("cn")), init_image=inputs["in"], strength=0.8),
        ),
        "controlnet inpaint": ("sd15", dict(controlnets=(unit("cn"),), init_image=inputs["in"], mask=inputs["mask"])),
        "sdxl controlnet": ("sdxl", dict(controlnets=(unit("cn-xl"),))),
    }


CASES = [
    "txt2img",
    "img2img",
    "inpaint",
    "inpainting checkpoint",
    "sdxl",
    "sdxl inpaint",
    "controlnet",
    "multi-controlnet img2img",
    "controlnet inpaint",
    "sdxl controlnet",
]
SAFE_ONLY = {"controlnet inpaint", "sdxl controlnet"}  # pipelines not in guidance.FAST


def test_guided_steps():
    assert [guided_steps(20, e) for e in (0, 0.3, 0.5, 0.51, 1)] == [0, 6, 10, 11, 20]
    assert guided_steps(10, 0.3) == 3 and guided_steps(3, 0.5) == 2 and guided_steps(1, 0.01) == 1


@pytest.mark.parametrize("case", CASES)
def test_guidance_stops_after_its_share_of_the_steps(engine, tiny_models, inputs, case, monkeypatch):
    """Fast path (UNet once a step after the cut) == the always-safe path (both passes see the prompt),
    and both differ from guidance on every step, in every pipeline the studio builds."""
    arch, kw = _cases(inputs)[case]
    req = _req(tiny_models(arch), guidance_end=0.5, **kw)
    batches = []
    forward = UNet2DConditionModel.forward

    def counting(self, sample, *a, **k):
        batches.append(sample.shape[0])
        return forward(self, sample, *a, **k)

    monkeypatch.setattr(UNet2DConditionModel, "forward", counting)

    def last_latent(r):
        steps = []
        res = engine.generate(r, on_step=steps.append)
        assert res.status == "done" and res.images[0].shape == (64, 64, 3)
        return steps[-1].latent

    cut = last_latent(req)
    run = len(batches)
    guided = guided_steps(run, 0.5)
    if case not in SAFE_ONLY:
        assert batches == [2] * guided + [1] * (run - guided)
    else:
        assert batches == [2] * run
    monkeypatch.setattr(guidance, "FAST", frozenset())
    safe, full = last_latent(req), last_latent(req.replace(guidance_end=1.0))
    apart, off = np.abs(full - safe).max(), np.abs(cut - safe).max()
    # The fast path runs the UNet on a batch of 1 where the safe one runs 2: the same sums, rounded
    # by other kernels. Equal to float32 rounding of the latents, and tiny beside guidance's effect
    # (img2img's is the smallest, ≈ 0.18, where the rounding reached 1.1e-3 on a fresh machine).
    assert off < 1e-3 * np.abs(safe).max() and off < 2e-2 * apart and apart > 1e-3


def test_guidance_end_zero_is_no_guidance_and_one_is_every_step(engine, tiny_sd15):
    none = engine.generate(_req(tiny_sd15, guidance_end=0.0)).images[0]
    assert np.array_equal(none, engine.generate(_req(tiny_sd15, guidance_scale=1.0)).images[0])
    every = engine.generate(_req(tiny_sd15)).images[0]
    assert np.array_equal(every, engine.generate(_req(tiny_sd15, guidance_end=1.0)).images[0])
    assert not np.array_equal(every, none)


@pytest.mark.parametrize("k", [2, 4])  # before and after the cut (3 of 6 steps guided)
def test_branch_continues_a_run_with_guidance_end(engine, tiny_sd15, k):
    parent = _req(tiny_sd15, guidance_end=0.5)
    previews = []
    full = engine.generate(parent, on_step=previews.append)
    res = engine.generate(parent.replace(branch=BranchRef(parent_id="p", step=k)), branch_latent=previews[k - 1].latent)
    assert np.abs(res.images[0].astype(int) - full.images[0]).max() <= 1


def test_recipe_round_trips_and_old_recipes_guide_every_step(tiny_sd15):
    req = _req(tiny_sd15, guidance_end=0.45)
    assert GenerationRequest.from_json(req.to_json()).guidance_end == 0.45
    old = {k: v for k, v in req.to_dict().items() if k != "guidance_end"} | {"schema_version": 2}
    assert GenerationRequest.from_dict(old).guidance_end == 1.0
    with pytest.raises(InvalidRequest, match="guidance_end"):
        _req(tiny_sd15, guidance_end=1.5)


def test_eval_demo_guides_the_share_of_the_steps_the_studio_sets(tiny_sd15, monkeypatch):
    """`studio dev eval-demo` cuts guidance as the engine does, at the model's recommended share by default."""
    from studio.dev import eval_demo, scenes

    assert eval_demo.recommended_end("demo") == 0.5 and eval_demo.recommended_end(tiny_sd15) == 1.0
    batches = []
    forward, prompts = UNet2DConditionModel.forward, scenes.eval_prompts
    monkeypatch.setattr(
        UNet2DConditionModel,
        "forward",
        lambda self, sample, *a, **k: batches.append(sample.shape[0]) or forward(self, sample, *a, **k),
    )
    monkeypatch.setattr(scenes, "eval_prompts", lambda n: prompts(n)[:2])
    r = eval_demo.evaluate(tiny_sd15, guidances=(7.0,), steps=4, guidance_end=0.5)
    assert r["guidance_end"] == 0.5 and r["n_prompts"] == 2 and batches == [2, 2, 1, 1] * 2
