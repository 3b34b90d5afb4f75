"""Hires fix: two passes as one run (previews counted across both), latent / Lanczos / upscaler-model
upscales, A1111's keys written and read back, branching from the first pass, cancel, the CLI flags."""

import threading

import numpy as np
import pytest
from PIL import Image

from studio.cli import main
from studio.core import hires
from studio.core.errors import InvalidRequest
from studio.core.metadata import read_metadata, write_png
from studio.core.metadata.readers import interpret
from studio.core.request import BranchRef, GenerationRequest
from studio.testing import save_tiny_upscaler


def _req(model, upscaler="latent", **kw):
    h = {"scale": 2, "strength": 0.5, "upscaler": upscaler, **kw.pop("hires", {})}
    fields = dict(model=str(model), prompt="a red circle", steps=4, width=64, height=64, seed=3, scheduler="Euler")
    return GenerationRequest.create(**{**fields, **kw}, hires=h)


def test_the_passes_as_plain_functions():
    req = GenerationRequest.create(steps=20, width=128, height=96, hires={"scale": 1.5, "steps": 10, "strength": 0.7})
    assert hires.target_size(req) == (192, 144)
    assert (hires.first_pass(req).hires, hires.first_pass(req).width) == (None, 128)
    second = hires.second_pass(req)
    assert (second.width, second.height, second.steps, second.strength, second.hires) == (192, 144, 10, 0.7, None)
    assert hires.second_pass_steps(req) == 7 and hires.total_steps(req) == 27
    odd = GenerationRequest.create(width=72, height=64, hires={"scale": 1.3})
    assert hires.target_size(odd) == (88, 80)  # floored to multiples of 8, as A1111 does
    with pytest.raises(InvalidRequest, match="hires fix is for text-to-image"):
        GenerationRequest.create(init_image={"path": "/x.png"}, hires={"scale": 2})
    with pytest.raises(InvalidRequest, match="greater than 1"):
        GenerationRequest.create(hires={"scale": 1})


def test_two_passes_previewed_as_one_run(engine, tiny_sd15):
    req = _req(tiny_sd15)
    seen = []
    result = engine.generate(req, on_step=lambda p: seen.append((p.step, p.total, p.latent.shape, p.image is not None)))
    assert result.status == "done" and result.images[0].shape == (128, 128, 3)
    assert [s[0] for s in seen] == [1, 2, 3, 4, 5, 6] and {s[1] for s in seen} == {6}  # 4 + int(4 × 0.5)
    assert [s[2][-1] for s in seen] == [8, 8, 8, 8, 16, 16] and all(s[3] for s in seen)
    assert (result.steps_done, result.total_steps, result.request) == (6, 6, req)
    again = engine.generate(req)
    assert np.array_equal(again.images[0], result.images[0])  # reproducible
    plain = engine.generate(hires.first_pass(req))
    big = np.asarray(Image.fromarray(plain.images[0]).resize((128, 128)))
    assert np.abs(big.astype(int) - result.images[0]).mean() < 60  # the second pass starts from the first


def test_upscalers_and_second_pass_steps(engine, tiny_sd15, tmp_path):
    up = save_tiny_upscaler(tmp_path / "x2.safetensors", "compact", 2)
    results = {u: engine.generate(_req(tiny_sd15, u)).images[0] for u in ("latent", "lanczos", str(up))}
    assert all(im.shape == (128, 128, 3) for im in results.values())
    assert not np.array_equal(results["latent"], results["lanczos"])
    assert not np.array_equal(results["lanczos"], results[str(up)])
    seen = []
    engine.generate(_req(tiny_sd15, hires={"steps": 6, "strength": 0.5}), on_step=lambda p: seen.append(p.step))
    assert seen == list(range(1, 8))  # 4 + int(6 × 0.5)
    with pytest.raises(InvalidRequest, match="not found"):
        engine.generate(_req(tiny_sd15, "no-such-upscaler"))


def test_branch_from_the_first_pass(engine, tiny_sd15):
    req = _req(tiny_sd15)
    kept = {}
    parent = engine.generate(req, on_step=lambda p: kept.setdefault(p.step, p.latent))
    branch = req.replace(branch=BranchRef(parent_id="r1", step=2))
    seen = []
    child = engine.generate(branch, on_step=lambda p: seen.append(p.step), branch_latent=kept[2])
    assert seen == [3, 4, 5, 6] and child.images[0].shape == (128, 128, 3)
    assert np.abs(child.images[0].astype(int) - parent.images[0]).max() <= 2  # same recipe: same picture
    with pytest.raises(InvalidRequest, match="Cannot branch from step 5"):
        engine.generate(req.replace(branch=BranchRef(parent_id="r1", step=5)), branch_latent=kept[5])


def test_cancel_in_either_pass(engine, tiny_sd15):
    for stop_at, expect in ((2, 2), (5, 5)):
        cancel = threading.Event()

        def on_step(p, stop_at=stop_at, cancel=cancel):
            if p.step == stop_at:
                cancel.set()

        result = engine.generate(_req(tiny_sd15), on_step=on_step, cancel=cancel)
        assert result.cancelled and result.images == [] and (result.steps_done, result.total_steps) == (expect, 6)


def test_inpainting_checkpoints_are_refused(engine, tiny_models):
    with pytest.raises(InvalidRequest, match="inpainting"):
        engine.generate(_req(tiny_models("sd15-inpaint", "diffusers")))


def test_a1111_keys_written_and_read_back(tmp_path):
    req = GenerationRequest.create(
        prompt="a lighthouse", steps=20, width=512, height=512, hires={"scale": 1.5, "steps": 12, "strength": 0.45}
    )
    path = write_png(tmp_path / "h.png", np.zeros((768, 768, 3), np.uint8), req, {"sign": False})
    meta = read_metadata(path)
    assert meta.request == req
    text = meta.raw["parameters"]
    assert "Size: 512x512" in text and "Denoising strength: 0.45, Hires upscale: 1.5, Hires steps: 12" in text
    assert "Hires upscaler: Latent" in text
    a1111 = interpret({"parameters": text})  # the A1111 text alone, as another tool writes it
    assert a1111.request.hires == req.hires and a1111.normalised.get("denoising_strength") is None
    head = "x\nSteps: 20, Sampler: Euler, CFG scale: 7, Seed: 1, Size: 512x512, "
    other = interpret(
        {"parameters": head + "Denoising strength: 0.3, Hires upscale: 2, Hires upscaler: Latent (nearest-exact)"}
    )
    assert other.request.hires.upscaler == "latent" and other.request.hires.strength == 0.3
    assert any("read as Latent" in n for n in other.unmapped)
    named = interpret({"parameters": head + "Hires upscale: 2, Hires upscaler: 4x-UltraSharp"})
    assert named.request.hires.upscaler == "4x-UltraSharp" and named.request.hires.strength == 0.7


def test_cli_hires_flags(tiny_sd15, tmp_path, capsys):
    out, lib = tmp_path / "h.png", tmp_path / "lib"
    base = ["generate", "--model", str(tiny_sd15), "--prompt", "a red circle", "--steps", "2", "--size", "64x64",
            "--seed", "4", "--library", str(lib)]  # fmt: skip
    assert main([*base, "--hires-scale", "2", "--hires-strength", "0.5", "--out", str(out)]) == 0
    assert Image.open(out).size == (128, 128)
    assert read_metadata(out).request.hires.scale == 2
    from studio.core.gallery import Gallery

    with Gallery(lib) as g:
        item = g.query()[0]
        assert (item.width, item.height) == (128, 128) and "Hires fix: upscaled ×2 to 128×128" in item.describe()
    for extra, words in (
        (["--hires-steps", "5"], "need --hires-scale"),
        (["--hires-scale", "1"], "--hires-scale: Input should be greater than 1"),
        (["--hires-scale", "2", "--hires-upscaler", str(tmp_path / "none.safetensors")], "not found"),
    ):
        assert main([*base, *extra, "--out", str(tmp_path / "x.png")]) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and "\n" not in err
    up = save_tiny_upscaler(tmp_path / "up.safetensors", "rrdb", 2)
    assert main([*base, "--hires-scale", "1.5", "--hires-upscaler", str(up), "--out", str(out), "--no-gallery"]) == 0
    assert Image.open(out).size == (96, 96) and read_metadata(out).request.hires.upscaler_sha256
