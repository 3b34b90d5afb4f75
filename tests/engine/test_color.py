"""Colour correction for inpaint/outpaint: a known colour cast is removed, intended colours are kept,
and the composite guarantee (input bytes outside the feathered mask) still holds."""

import json

import numpy as np
import pytest
from PIL import Image

from studio.cli import main
from studio.core.metadata import read_metadata
from studio.core.request import SCHEMA_VERSION, GenerationRequest, ImageRef
from studio.engine.color import MIN_PIXELS, lab_to_rgb, match_colour, rgb_to_lab, surround
from studio.engine.edits import plan_edit
from studio.engine.inpaint import grow

W, H = 160, 120
CAST = np.array([-9, 6, 17])  # what a VAE does to a flat blue, roughly (the demo model: about +17 blue)
BLOB = (200, 40, 40)  # new content the prompt asked for: a red blob in the middle of the mask


def _background():
    """A blue background with a gentle gradient and fine texture (plain enough to show a seam)."""
    rng = np.random.default_rng(3)
    y, x = np.mgrid[0:H, 0:W]
    img = np.stack([40 + x * 0.1, 70 + y * 0.1, 190 + 0 * x], -1) + rng.normal(0, 2, (H, W, 3))
    return img.round().clip(0, 255).astype(np.uint8)


@pytest.fixture()
def scene(tmp_path):
    img = _background()
    mask = np.zeros((H, W), np.uint8)
    mask[35:85, 50:110] = 255
    Image.fromarray(img).save(tmp_path / "in.png")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    return tmp_path, img


def _request(d, **kw):
    fields = dict(
        model="demo",
        prompt="a red blob",
        width=64,
        height=64,
        mask_blur=8,
        init_image=ImageRef(path=str(d / "in.png")),
        mask=ImageRef(path=str(d / "mask.png")),
    )
    return GenerationRequest.create(**{**fields, **kw})


def _model_output(plan, img):
    """What a model with a colour cast returns for the plan's region: the input with a red blob
    painted in the middle of the mask, all of it with the cast."""
    r = plan.region
    gen = img.astype(np.int64).copy()
    gen[50:70, 70:90] = BLOB
    gen = (gen + CAST).clip(0, 255).astype(np.uint8)[r.y0 : r.y1, r.x0 : r.x1]
    return np.asarray(Image.fromarray(gen).resize(plan.gen_size, Image.Resampling.LANCZOS))


def _seam(out, img, blend):
    """Mean |output − input| over the feather band, per channel, in levels (the bench's band measure)."""
    band = (blend > 0) & (blend < 255) & ~_blob_zone()
    return np.abs(out[band].astype(float) - img[band]).mean(0)


def _blob_zone():
    z = np.zeros((H, W), bool)
    z[45:75, 65:95] = True
    return z


@pytest.mark.parametrize("area", ["whole", "only_masked"])
def test_a_known_cast_is_removed_and_the_outside_stays_byte_identical(scene, area):
    d, img = scene
    on = plan_edit(_request(d, inpaint_area=area, inpaint_padding=40))
    off = plan_edit(_request(d, inpaint_area=area, inpaint_padding=40, color_correction=False))
    out_on, out_off = on.finish(_model_output(on, img)), off.finish(_model_output(off, img))
    outside = on.blend_mask == 0
    assert outside.sum() > 0.5 * H * W
    assert np.array_equal(out_on[outside], img[outside]) and np.array_equal(out_off[outside], img[outside])
    # Without correction the band shows the cast (about half of it on average); with it, ~nothing.
    assert _seam(out_off, img, on.blend_mask).max() > 5
    assert _seam(out_on, img, on.blend_mask).max() < 1.5
    # Inside the mask, the plain part is back to the input's colour …
    inside = (on.blend_mask == 255) & ~_blob_zone()
    assert np.abs(out_on[inside].mean(0) - img[inside].mean(0)).max() < 1.0
    assert np.abs(out_off[inside].mean(0) - img[inside].mean(0)).max() > 8
    # … and what the prompt asked for keeps its colour: the blob stays red, not pulled towards the blue
    # surround (the shift is measured on blue, so on red it is close to, not exactly, the cast).
    blob = out_on[52:68, 72:88].reshape(-1, 3).mean(0)
    assert np.abs(blob - BLOB).max() < 20 and blob[0] > 175 and blob[1:].max() < 60
    (done,) = on.corrections
    assert done.applied and done.pixels > 1000 and off.corrections == []


def test_outpaint_cast_is_removed_and_the_original_stays(scene):
    d, img = scene
    req = GenerationRequest.create(
        model="demo",
        prompt="x",
        width=64,
        height=64,
        mask_blur=8,
        outpaint_fill="edge",
        init_image=ImageRef(path=str(d / "in.png")),
        outpaint=(32, 0, 0, 16),
    )
    plan = plan_edit(req)
    gen = (plan.canvas.astype(np.int64) + CAST).clip(0, 255).astype(np.uint8)
    out = plan.finish(np.asarray(Image.fromarray(gen).resize(plan.gen_size, Image.Resampling.LANCZOS)))
    keep = plan.blend_mask == 0
    assert np.array_equal(out[keep], plan.canvas[keep])
    assert np.array_equal(out[0:H, 32 : 32 + W][keep[0:H, 32 : 32 + W]], img[keep[0:H, 32 : 32 + W]])
    band = (plan.blend_mask > 0) & (plan.blend_mask < 255)
    assert np.abs(out[band].astype(float) - plan.canvas[band]).mean(0).max() < 1.5


def test_identity_when_nothing_drifted_and_no_reference_no_change():
    rng = np.random.default_rng(0)
    img = (rng.random((40, 50, 3)) * 255).astype(np.uint8)
    ref = np.zeros((40, 50), bool)
    ref[:10] = True
    same, done = match_colour(img, img, ref)
    assert np.array_equal(same, img) and done.applied and np.allclose(done.shift, 0, atol=1e-9)
    few = np.zeros((40, 50), bool)
    few.flat[: MIN_PIXELS - 1] = True
    shifted = (img.astype(int) + 20).clip(0, 255).astype(np.uint8)
    kept, done = match_colour(shifted, img, few)
    assert kept is shifted and not done.applied


def test_lost_contrast_is_restored_on_a_textured_surround():
    rng = np.random.default_rng(1)
    img = (rng.random((64, 64, 3)) * 200 + 20).astype(np.uint8)
    washed = ((img.astype(float) - 120) * 0.7 + 130).round().astype(np.uint8)  # flatter and brighter
    ref = np.zeros((64, 64), bool)
    ref[:, :40] = True  # measured on part of the picture, applied to all of it
    out, done = match_colour(washed, img, ref)
    err = lambda a: np.abs(a[:, 40:].astype(float) - img[:, 40:]).mean()  # noqa: E731
    assert done.applied and err(out) < 0.4 * err(washed)


def test_a_cast_that_depends_on_the_colour_is_taken_off_each_colour():
    """A decoder's cast differs per colour (the demo VAE adds blue to blue, green to red). With a
    blue-and-red surround, one mean shift would tint the blue fill purple; per colour it does not."""
    img = np.zeros((80, 120, 3), np.uint8)
    img[:] = (40, 70, 200)
    img[:, 80:] = (215, 40, 40)  # a red wall beside the blue sky, inside the measured surround
    cast = np.where((img == (40, 70, 200)).all(-1, keepdims=True), [0, 0, 17], [5, 25, 6])
    gen = (img + cast).clip(0, 255).astype(np.uint8)
    ref = np.ones((80, 120), bool)
    ref[20:60, 20:60] = False  # the mask: plain blue, repainted with the blue cast
    out, done = match_colour(gen, img, ref)
    inside = out[20:60, 20:60].reshape(-1, 3).astype(float)
    assert np.abs(inside.mean(0) - (40, 70, 200)).max() < 1.5
    assert np.array_equal(out[:, 80:], img[:, 80:]) or np.abs(out[:, 80:].astype(float) - img[:, 80:]).max() <= 1
    g, o = rgb_to_lab(gen[ref]), rgb_to_lab(img[ref])  # what one mean shift would have done
    one_shift = lab_to_rgb(rgb_to_lab(gen[20:60, 20:60]) + (o - g).mean(0)).reshape(-1, 3)
    assert np.abs(one_shift.mean(0) - (40, 70, 200)).max() > 5
    assert done.cells >= 2


def test_lab_round_trip_and_surround_ring():
    rgb = np.stack(np.meshgrid(np.arange(0, 256, 5), np.arange(0, 256, 5), [0, 99, 255], indexing="ij"), -1)
    assert np.array_equal(lab_to_rgb(rgb_to_lab(rgb)).round().astype(int), rgb)
    blend = np.zeros((50, 60), np.uint8)
    blend[20:25, 30:33] = 40
    ring = surround(blend, 4)
    assert np.array_equal(ring, (grow((blend > 0) * 255, 4) > 0) & (blend == 0))


def test_old_recipes_load_without_correction_new_ones_round_trip(scene):
    d, _ = scene
    req = _request(d)
    assert req.color_correction is True and req.schema_version == SCHEMA_VERSION
    assert GenerationRequest.from_json(req.to_json()) == req
    off = req.replace(color_correction=False)
    assert GenerationRequest.from_json(off.to_json()) == off
    old = req.to_dict()
    old.pop("color_correction")
    old["schema_version"] = 1
    loaded = GenerationRequest.from_dict(old)
    assert loaded.color_correction is False and loaded.schema_version == SCHEMA_VERSION  # made without, migrated


def test_engine_records_it_and_only_the_mask_changes(engine, tiny_sd15, scene):
    d, img = scene
    on = engine.generate(_request(d, model=str(tiny_sd15), steps=2, seed=4))
    off = engine.generate(_request(d, model=str(tiny_sd15), steps=2, seed=4, color_correction=False))
    blend = plan_edit(_request(d)).blend_mask
    for res in (on, off):
        assert np.array_equal(res.images[0][blend == 0], img[blend == 0])
    assert on.extra["color_correction"][0]["applied"] is True and "color_correction" not in off.extra
    assert not np.array_equal(on.images[0], off.images[0])


def test_cli_flag_lands_in_recipe_and_infotext(tiny_sd15, scene, capsys):
    d, _ = scene
    args = [
        "generate",
        "--model",
        str(tiny_sd15),
        "--prompt",
        "x",
        "--steps",
        "2",
        "--no-gallery",
        "--size",
        "64x64",
        "--init",
        str(d / "in.png"),
        "--mask",
        str(d / "mask.png"),
        "--only-masked",
        "--json",
    ]
    for flag, want in (([], True), (["--no-color-correction"], False)):
        assert main([*args, *flag, "--out", str(d / "o.png")]) == 0
        summary = json.loads(capsys.readouterr().out)
        assert summary["request"]["color_correction"] is want
        assert ("color_correction" in summary) is want
        meta = read_metadata(d / "o.png")
        assert meta.request.color_correction is want
        assert f"Color correction: {want}" in meta.raw["parameters"]


def test_seam_bench_reports_with_and_without_correction(tiny_sd15, capsys):
    assert main(["bench", "seam", "--model", str(tiny_sd15), "--seeds", "1", "--steps", "2", "--json"]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert {"seam_step_levels", "seam_step_levels_uncorrected", "correction_ratio"} <= out.keys()
    assert out["runs_with_changes_outside_mask"] == 0
