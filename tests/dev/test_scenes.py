"""The procedural scenes: determinism, caption and held-out rules, and the detector."""

from __future__ import annotations

import dataclasses
import random

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

from studio.dev import scenes


def test_same_seed_same_sample():
    a, b = scenes.make_sample(123), scenes.make_sample(123)
    assert a.scene == b.scene
    assert a.caption == b.caption
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert a.image.size == (scenes.SIZE, scenes.SIZE) and a.image.mode == "RGB"
    c = scenes.make_sample(124)
    assert (c.scene, c.caption) != (a.scene, a.caption)


def test_training_scenes_follow_the_rules():
    rng = random.Random(0)
    empty = 0
    n = 2000
    for _ in range(n):
        scene = scenes.sample_scene(rng)
        assert 1 <= len(scene.objects) <= 3
        positions = [o.position for o in scene.objects]
        assert len(set(positions)) == len(positions)
        for obj in scene.objects:
            assert not scenes.is_held_out(obj), obj
            assert obj.colour != scene.background
        cap = scenes.caption(scene, rng)
        if not cap:
            empty += 1
            continue
        assert scene.background in cap
        for obj in scene.objects:
            assert obj.colour in cap and obj.shape in cap and obj.position in cap
    assert 0.06 < empty / n < 0.14


def test_captions_come_in_several_phrasings():
    rng = random.Random(1)
    scene = scenes.Scene("blue", "plain", (scenes.Obj("circle", "red", "small", "top left"),))
    caps = {scenes.caption(scene, rng, empty_rate=0.0) for _ in range(200)}
    starts = {c.split()[0] for c in caps}
    assert len(caps) >= 6 and len(starts) >= 3


def test_eval_prompts_are_all_held_out():
    prompts = scenes.eval_prompts()
    assert len(prompts) == 3 * (len(scenes.HELD_OUT_PAIRS) + len(scenes.HELD_OUT_LAYOUTS))
    for obj, bg, prompt in prompts:
        assert scenes.is_held_out(obj)
        assert bg != obj.colour
        assert obj.colour in prompt and obj.shape in prompt and bg in prompt


def test_combo_prompts_ask_for_every_trained_combination_once_per_draw():
    """`eval-demo --prompts training` asks for what training shows, nothing held out."""
    prompts = scenes.combo_prompts(2)
    n = (len(scenes.COLOURS) * len(scenes.SHAPES) - len(scenes.HELD_OUT_PAIRS)) * (len(scenes.COLOURS) - 1)
    assert n == 294 and len(prompts) == 2 * n
    keys = [scenes.combo_key(obj, bg) for obj, bg, _ in prompts]
    assert len(set(keys)) == n and all(keys.count(k) == 2 for k in set(keys[:10]))
    for obj, bg, prompt in prompts:
        assert not scenes.is_held_out(obj) and bg != obj.colour
        assert prompt == scenes.prompt_for(obj, bg)


def test_detector_reads_rendered_scenes():
    n_obj = hits_colour = hits_shape = hits_pos = hits_bg = 0
    n = 120
    for seed in range(n):
        s = scenes.make_sample(50_000 + seed, held_out=True)
        det = scenes.detect(s.image)
        hits_bg += det.background == s.scene.background
        for obj in s.scene.objects:
            n_obj += 1
            found = [d for d in det.objects if d.colour == obj.colour]
            if found:
                hits_colour += 1
                d = max(found, key=lambda d: d.area)
                hits_shape += d.shape == obj.shape
                hits_pos += d.position == obj.position
    assert hits_bg / n >= 0.98
    assert hits_colour / n_obj >= 0.97
    assert hits_shape / n_obj >= 0.95
    assert hits_pos / n_obj >= 0.97


@pytest.mark.parametrize("shape", scenes.SHAPES)
def test_detector_each_shape(shape):
    obj = scenes.Obj(shape, "yellow", "large", "center")
    det = scenes.detect(scenes.render(scenes.Scene("purple", "plain", (obj,))))
    assert det.background == "purple"
    assert det.main() is not None
    assert (det.main().shape, det.main().colour, det.main().position) == (shape, "yellow", "center")


@pytest.mark.parametrize("size", ["medium", "large"])
@pytest.mark.parametrize("shape", ["star", "cross"])
def test_detector_counts_points_when_the_tips_are_rounded(shape, size):
    """A decoder rounds a star's tips (solidity and extent then look like a cross's); its five lobes
    remain, and a blurred cross keeps its four."""
    image = scenes.render(scenes.Scene("blue", "plain", (scenes.Obj(shape, "yellow", size, "center"),)))
    det = scenes.detect(image.filter(ImageFilter.GaussianBlur(2.5))).main()
    assert det.shape == shape, det.features


def test_a_pentagon_is_not_a_star():
    image = Image.new("RGB", (scenes.SIZE, scenes.SIZE), scenes.PALETTE["blue"])
    ImageDraw.Draw(image).regular_polygon((64, 64, 24), 5, fill=scenes.PALETTE["yellow"])
    assert scenes.detect(image).main().shape == "circle"


def test_detector_sees_nothing_on_an_empty_background():
    det = scenes.detect(scenes.render(scenes.Scene("green", "striped", ())))
    assert det.background == "green"
    assert det.objects == ()


def test_canonical_captions_only_when_asked():
    scene = scenes.Scene("blue", "plain", (scenes.Obj("circle", "red", "large", "top left"),))
    canonical = scenes.prompt_for(scene.objects[0], "blue")
    rng = random.Random(3)
    assert all(scenes.caption(scene, rng, canonical_rate=1.0, empty_rate=0) == canonical for _ in range(20))
    rng = random.Random(3)
    assert sum(scenes.caption(scene, rng, empty_rate=0) == canonical for _ in range(200)) < 60
    busy = scenes.Scene("blue", "striped", scene.objects)  # a patterned background is never canonical
    assert scenes.caption(busy, random.Random(0), canonical_rate=1.0, empty_rate=0) != canonical


def test_stripe_score_tells_striped_backgrounds_apart():
    rng = random.Random(0)
    for _ in range(12):
        scene = scenes.sample_scene(rng)
        plain = scenes.render(dataclasses.replace(scene, pattern="plain"))
        gradient = scenes.render(dataclasses.replace(scene, pattern="gradient"))
        striped = scenes.render(dataclasses.replace(scene, pattern="striped"))
        assert scenes.stripe_score(plain) < 0.3 and scenes.stripe_score(gradient) < 0.5
        assert scenes.stripe_score(striped) > 1.2


def test_inpaint_check_is_passable_and_not_passed_by_doing_nothing():
    """eval-adapters' inpaint check: its masks lie over empty background two or more cells from the
    scene's object (as in every training scene), so the right answer composited through the same mask
    reads as a green star in the cell every time, and the untouched picture never does."""
    from studio.dev import eval_adapters as ea
    from studio.engine import inpaint as geo

    cases = ea.inpaint_cases(12)
    for case in cases:
        (obj,) = case.scene.objects
        assert case.cell in ea.free_cells(obj.position) and obj.position not in ea.free_cells(obj.position)
        before = np.asarray(scenes.render(case.scene))
        ideal = geo.composite(before, case.ideal(), geo.feather(case.mask, 4))
        found_ideal, found_before = ea.inpaint_found(ideal, case), ea.inpaint_found(before, case)
        assert ea.inpaint_hits(found_ideal) == (True, True), case
        assert ea.inpaint_hits(found_before) == (False, False), case
        assert (
            ea.star_size(found_ideal, case) == pytest.approx(1.0, abs=0.05) and ea.star_size(found_before, case) is None
        )
    assert len({c.cell for c in cases}) >= 4
