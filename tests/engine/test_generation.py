"""Sampling loop behaviour: reproducibility, previews, cancel, branching, schedulers."""

import threading

import numpy as np
import pytest

from studio.core.request import SCHEDULER_NAMES, BranchRef, GenerationRequest


def _req(path, **kw):
    base = dict(model=str(path), prompt="a blue square", steps=6, width=64, height=64, seed=3)
    base.update(kw)
    return GenerationRequest.create(**base)


@pytest.mark.parametrize("scheduler", SCHEDULER_NAMES)
def test_bit_identical_reruns(engine, tiny_sd15, scheduler):
    r = _req(tiny_sd15, scheduler=scheduler, steps=4)
    a, b = engine.generate(r), engine.generate(r)
    assert np.array_equal(a.images[0], b.images[0])
    other = engine.generate(r.replace(seed=4))
    assert not np.array_equal(a.images[0], other.images[0])


SCHEDULE_CASES = [
    *((name, t) for t in ("Karras", "Exponential") for name in ("Euler", "Heun", "DPM++ 2M", "DPM++ 2M SDE", "UniPC")),
    *((name, "SGM Uniform") for name in ("Euler a", "DDIM", "DPM++ 2M")),
]


@pytest.mark.parametrize(("scheduler", "schedule"), SCHEDULE_CASES)
def test_schedule_types_rerun_bit_identically_and_change_the_steps(engine, tiny_sd15, scheduler, schedule):
    r = _req(tiny_sd15, scheduler=scheduler, schedule_type=schedule, steps=3, preview="none")
    a, b = engine.generate(r), engine.generate(r)
    assert np.array_equal(a.images[0], b.images[0])
    auto = engine.generate(r.replace(schedule_type="Automatic"))
    assert not np.array_equal(a.images[0], auto.images[0])


def test_batch_seeds_follow_a1111(engine, tiny_sd15):
    res = engine.generate(_req(tiny_sd15, batch_size=2, steps=3))
    assert res.seeds == [3, 4] and len(res.images) == 2
    single = engine.generate(_req(tiny_sd15, seed=4, steps=3))
    # Same noise as a single run with that seed; batched kernels may round differently.
    assert np.abs(res.images[1].astype(int) - single.images[0]).max() <= 2
    assert not np.array_equal(res.images[0], res.images[1])


@pytest.mark.parametrize(
    "mode, size",
    [("latent2rgb", (8, 8, 3)), ("x0", (64, 64, 3)), ("vae", (64, 64, 3)), ("taesd", (64, 64, 3)), ("none", None)],
)
def test_one_preview_per_step_of_right_size(tiny_sd15, tmp_path, mode, size):
    from diffusers import AutoencoderTiny

    from studio.engine.engine import Engine

    taesd = tmp_path / "taesd"
    AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
    ).save_pretrained(taesd)
    eng = Engine(device="cpu", taesd={"sd1": taesd})
    previews = []
    eng.generate(_req(tiny_sd15, preview=mode, preview_every=2), on_step=previews.append)
    assert [p.step for p in previews] == [1, 2, 3, 4, 5, 6]
    assert all(p.total == 6 for p in previews)
    for p in previews:
        assert p.latent.shape == (1, 4, 8, 8) and p.latent.dtype == np.float32
        if size is None:
            assert p.image is None
        else:
            assert p.image.shape == size and p.image.dtype == np.uint8
    if mode != "none":
        assert not np.array_equal(previews[0].image, previews[-1].image)


def test_batch_preview_is_a_grid(engine, tiny_sd15):
    previews = []
    engine.generate(_req(tiny_sd15, batch_size=4, steps=2), on_step=previews.append)
    assert previews[0].image.shape == (16, 16, 3)


@pytest.mark.parametrize("k", [1, 3, 5])
def test_cancel_at_step_k_stops_at_k(engine, tiny_sd15, k):
    cancel = threading.Event()
    seen = []

    def on_step(p):
        seen.append(p.step)
        if p.step == k:
            cancel.set()

    res = engine.generate(_req(tiny_sd15, steps=10), on_step=on_step, cancel=cancel)
    assert res.status == "cancelled" and res.cancelled
    assert res.steps_done == k and seen[-1] == k
    assert res.images == []
    after = engine.generate(_req(tiny_sd15, steps=2))  # the engine is ready for the next request
    assert after.status == "done"


def test_cancel_before_start_stops_at_first_step(engine, tiny_sd15):
    cancel = threading.Event()
    cancel.set()
    res = engine.generate(_req(tiny_sd15), cancel=cancel)
    assert res.status == "cancelled" and res.steps_done == 0


# Single-step solvers continue exactly; multistep ones restart their history at first order.
@pytest.mark.parametrize(
    "scheduler, tol", [("Euler", 1), ("DDIM", 1), ("DPM++ 2M", 4), ("UniPC", 4), ("Euler a", None)]
)
def test_branch_with_same_settings_continues_the_parent(engine, tiny_sd15, scheduler, tol):
    parent = _req(tiny_sd15, steps=8, scheduler=scheduler)
    previews = []
    full = engine.generate(parent, on_step=previews.append)
    k = 3
    child = parent.replace(branch=BranchRef(parent_id="p", step=k))
    steps = []
    res = engine.generate(child, on_step=steps.append, branch_latent=previews[k - 1].latent)
    assert [p.step for p in steps] == list(range(k + 1, 9))
    if tol is not None:  # ancestral noise is drawn afresh in the branch
        assert np.abs(res.images[0].astype(int) - full.images[0]).max() <= tol
    changed = engine.generate(child.replace(prompt="a green star"), branch_latent=previews[k - 1].latent)
    assert not np.array_equal(changed.images[0], full.images[0])


def test_branch_across_schedulers_runs_remaining_steps(engine, tiny_sd15):
    previews = []
    engine.generate(_req(tiny_sd15, steps=6, scheduler="Euler"), on_step=previews.append)
    child = _req(tiny_sd15, steps=6, scheduler="DPM++ 2M Karras", branch=BranchRef(parent_id="p", step=2))
    steps = []
    res = engine.generate(child, on_step=steps.append, branch_latent=previews[1].latent)
    assert [p.step for p in steps] == [3, 4, 5, 6] and res.status == "done"
