"""img2img, inpainting and outpainting: what must stay untouched stays byte-identical."""

import numpy as np
import pytest
from PIL import Image

from studio.cli import main
from studio.core.errors import InvalidRequest
from studio.core.request import GenerationRequest, ImageRef
from studio.engine.edits import plan_edit
from studio.engine.inpaint import composite, grow

W, H = 100, 72  # deliberately not multiples of 8


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("edit-inputs")
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((H, W, 3)) * 255).astype(np.uint8)).save(d / "in.png")
    m = np.zeros((H, W), np.uint8)
    m[20:40, 30:60] = 255
    Image.fromarray(m).save(d / "mask.png")
    return d


def _req(model, files, **kw):
    fields = dict(
        model=str(model),
        prompt="a green star",
        steps=3,
        width=64,
        height=64,
        init_image=ImageRef(path=str(files / "in.png")),
        seed=1,
    )
    return GenerationRequest.create(**{**fields, **kw})


@pytest.mark.parametrize("arch", ["sd15", "sd15-inpaint"])
@pytest.mark.parametrize("area", ["whole", "only_masked"])
def test_inpaint_keeps_everything_outside_the_feathered_mask(engine, tiny_models, files, arch, area):
    r = _req(
        tiny_models(arch),
        files,
        mask=ImageRef(path=str(files / "mask.png")),
        mask_grow=3,
        mask_blur=6,
        inpaint_area=area,
        inpaint_padding=8,
    )
    original = np.asarray(Image.open(files / "in.png"))
    out = engine.generate(r).images[0]
    plan = plan_edit(r)
    assert out.shape == original.shape
    outside = plan.blend_mask == 0
    assert np.array_equal(out[outside], original[outside])
    assert not np.array_equal(out[plan.blend_mask == 255], original[plan.blend_mask == 255])
    if area == "only_masked":  # nothing outside the padded crop is touched
        reg = plan.region
        keep = np.ones((H, W), bool)
        keep[reg.y0 : reg.y1, reg.x0 : reg.x1] = False
        assert keep.any() and np.array_equal(out[keep], original[keep])


@pytest.mark.parametrize(
    "arch, fill", [("sd15", "edge"), ("sd15", "mirror"), ("sd15", "noise"), ("sd15-inpaint", "mirror")]
)
def test_outpaint_size_and_original_in_place(engine, tiny_models, files, arch, fill):
    r = _req(tiny_models(arch), files, outpaint=(16, 0, 8, 24), outpaint_fill=fill, mask_blur=4)
    original = np.asarray(Image.open(files / "in.png"))
    out = engine.generate(r).images[0]
    assert out.shape == (H + 24, W + 24, 3)
    plan = plan_edit(r)
    inner = out[0:H, 16 : 16 + W]
    keep = plan.blend_mask[0:H, 16 : 16 + W] == 0
    assert keep.sum() > 0.5 * H * W  # most of the original stays …
    assert np.array_equal(inner[keep], original[keep])  # … byte for byte, where it was
    assert plan.blend_mask[:, :16].min() == 255 and plan.blend_mask[H:, :].min() == 255  # new area repainted


def test_outpaint_with_a_mask_repaints_the_masked_part_of_the_picture_too(engine, tiny_sd15, files):
    """The window's outpaint sends the mask painted on the picture with it: both are repainted."""
    r = _req(
        tiny_sd15,
        files,
        outpaint=(0, 8, 16, 0),
        outpaint_fill="edge",
        mask=ImageRef(path=str(files / "mask.png")),
        mask_blur=4,
        steps=2,
    )
    plan = plan_edit(r)
    assert plan.kind == "outpaint" and plan.canvas.shape == (H + 8, W + 16, 3)
    painted = np.asarray(Image.open(files / "mask.png")) > 127
    assert plan.model_mask[8:, :W][painted].min() == 255  # the painted area, where the picture now sits
    assert plan.model_mask[:8, :].min() == 255 and plan.model_mask[:, W:].min() == 255  # the new area
    assert plan.model_mask[8 + 50 :, 5:20].max() == 0  # elsewhere in the old picture: kept
    original = np.asarray(Image.open(files / "in.png"))
    out = engine.generate(r).images[0]
    keep = plan.blend_mask[8:, :W] == 0
    assert keep.sum() > 0.3 * H * W and np.array_equal(out[8:, :W][keep], original[keep])
    assert not np.array_equal(out[8:, :W][painted], original[painted])


def test_img2img_strength_runs_fewer_steps(engine, tiny_sd15, files):
    seen = []
    res = engine.generate(_req(tiny_sd15, files, steps=8, strength=0.5), on_step=seen.append)
    assert [p.step for p in seen] == [1, 2, 3, 4] and seen[0].total == 4
    assert res.images[0].shape == (H, W, 3)


def test_strength_zero_is_a_vae_round_trip(engine, tiny_sd15, files):
    import torch

    res = engine.generate(_req(tiny_sd15, files, strength=0.0))
    vae = engine.load(str(tiny_sd15)).pipe.vae
    src = np.array(Image.open(files / "in.png").resize((104, 72), Image.Resampling.LANCZOS))
    with torch.inference_mode():
        x = torch.from_numpy(src).permute(2, 0, 1)[None].float() / 127.5 - 1
        y = vae.decode(vae.encode(x).latent_dist.mode()).sample[0].permute(1, 2, 0)
    expect = np.asarray(
        Image.fromarray(((y.clamp(-1, 1) + 1) * 127.5).round().byte().numpy()).resize((W, H), Image.Resampling.LANCZOS)
    )
    assert res.steps_done == 0 and np.array_equal(res.images[0], expect)


def test_preview_shows_the_composited_canvas(engine, tiny_sd15, files):
    previews = []
    r = _req(tiny_sd15, files, mask=ImageRef(path=str(files / "mask.png")), inpaint_area="only_masked")
    engine.generate(r, on_step=previews.append)
    img = previews[-1].image
    assert abs(img.shape[1] / img.shape[0] - W / H) < 0.1  # the whole canvas, not the square crop


def test_grow_and_composite_rules():
    m = np.zeros((9, 9), np.uint8)
    m[4, 4] = 255
    g = grow(m, 2)
    assert g[2:7, 2:7].min() == 255 and g.sum() == 25 * 255
    a, b = np.zeros((2, 2, 3), np.uint8), np.full((2, 2, 3), 200, np.uint8)
    out = composite(a, b, np.array([[0, 255], [128, 1]], np.uint8))
    assert out[0, 0, 0] == 0 and out[0, 1, 0] == 200 and 95 <= out[1, 0, 0] <= 105


def _save(path, im):
    im.save(path)
    return path


@pytest.mark.parametrize(
    "make, ok",
    [
        (lambda d: _save(d / "rgba.png", Image.new("RGBA", (W, H), (10, 20, 30, 0))), True),
        (lambda d: _save(d / "16bit.png", Image.fromarray(np.full((H, W), 40000, np.uint16))), True),
        (lambda d: _save(d / "cmyk.jpg", Image.new("CMYK", (W, H), (0, 50, 100, 0))), True),
        (lambda d: (d / "text.png").write_text("not an image") and d / "text.png", False),
    ],
)
def test_odd_inputs(engine, tiny_sd15, tmp_path, make, ok):
    path = make(tmp_path)
    r = GenerationRequest.create(
        model=str(tiny_sd15),
        prompt="x",
        steps=2,
        width=64,
        height=64,
        init_image=ImageRef(path=str(path)),
        strength=0.5,
    )
    if ok:
        assert engine.generate(r).images[0].shape == (H, W, 3)
    else:
        with pytest.raises(InvalidRequest, match="not an image"):
            engine.generate(r)


def test_mask_problems(engine, tiny_sd15, files, tmp_path):
    Image.new("L", (W, H), 0).save(tmp_path / "empty.png")
    with pytest.raises(InvalidRequest, match="mask is empty"):
        engine.generate(_req(tiny_sd15, files, mask=ImageRef(path=str(tmp_path / "empty.png"))))
    Image.new("L", (W // 2, H // 2), 255).save(tmp_path / "small-full.png")  # other size, all white
    out = engine.generate(_req(tiny_sd15, files, mask=ImageRef(path=str(tmp_path / "small-full.png")))).images[0]
    assert out.shape == (H, W, 3)


def test_cli_inpaint_and_outpaint(tiny_sd15, files, tmp_path):
    out = tmp_path / "o.png"
    assert (
        main(
            [
                "generate",
                "--model",
                str(tiny_sd15),
                "--prompt",
                "x",
                "--steps",
                "2",
                "--no-gallery",
                "--init",
                str(files / "in.png"),
                "--mask",
                str(files / "mask.png"),
                "--mask-grow",
                "2",
                "--mask-blur",
                "3",
                "--only-masked",
                "--padding",
                "4",
                "--size",
                "64x64",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert Image.open(out).size == (W, H)
    assert (
        main(
            [
                "generate",
                "--model",
                str(tiny_sd15),
                "--prompt",
                "x",
                "--steps",
                "2",
                "--no-gallery",
                "--init",
                str(files / "in.png"),
                "--outpaint",
                "8,8,0,0",
                "--outpaint-fill",
                "mirror",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert Image.open(out).size == (W + 8, H + 8)
    assert (
        main(
            [
                "generate",
                "--model",
                str(tiny_sd15),
                "--prompt",
                "x",
                "--no-gallery",
                "--init",
                str(files / "in.png"),
                "--outpaint",
                "8,8",
                "--out",
                str(out),
            ]
        )
        == 2
    )


def test_a_mask_that_is_not_an_image_and_a_mask_over_everything(engine, tiny_sd15, files, tmp_path, capsys):
    (tmp_path / "mask.png").write_text("not a mask")
    with pytest.raises(InvalidRequest, match="not an image"):
        engine.generate(_req(tiny_sd15, files, mask=ImageRef(path=str(tmp_path / "mask.png"))))
    code = main(
        [
            "generate",
            "--model",
            str(tiny_sd15),
            "--prompt",
            "x",
            "--steps",
            "2",
            "--no-gallery",
            "--init",
            str(files / "in.png"),
            "--mask",
            str(tmp_path / "mask.png"),
            "--out",
            str(tmp_path / "o.png"),
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) >= 1 and "mask.png" in err[0] and "Traceback" not in "\n".join(err)
    assert not (tmp_path / "o.png").exists()
    # A mask over everything: no unmasked surround to match colours against, so nothing is corrected
    # (and nothing breaks); the whole picture is generated.
    Image.new("L", (W, H), 255).save(tmp_path / "full.png")
    res = engine.generate(_req(tiny_sd15, files, mask=ImageRef(path=str(tmp_path / "full.png"))))
    assert res.images[0].shape == (H, W, 3)
    assert res.extra["color_correction"] == [{"applied": False, "pixels": 0, "cells": 0, "shift_lab": [0.0, 0.0, 0.0]}]
