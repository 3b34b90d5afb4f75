"""FLUX.1 and SD 3/3.5: tiny models in every format users have load to the same pixels as their
diffusers twins, `models scan` names each from headers alone, and generation reruns bit-identically."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from studio.core.catalogue import identify_file, identify_folder
from studio.core.errors import UnsupportedModel
from studio.core.request import GenerationRequest

FLOW_ARCHS = ("flux-dev", "flux-schnell", "flux-fill", "sd3-medium", "sd35-medium", "sd35-large")


def _req(model, **kw) -> GenerationRequest:
    fields = dict(
        model=str(model),
        prompt="a red circle at the top left",
        negative_prompt="blurry",
        steps=3,
        guidance_scale=3.5,
        width=64,
        height=64,
        scheduler="Euler",
        seed=7,
    )
    fields.update(kw)
    return GenerationRequest.create(**fields)


def _parts(files) -> dict:
    return {"text_encoders": tuple(str(p) for p in files.encoders), "vae": str(files.vae) if files.vae else ""}


@pytest.mark.parametrize("arch", FLOW_ARCHS)
def test_original_layout_matches_diffusers_converters(arch, monkeypatch):
    """The kit writes BFL's / Stability's key layout exactly as diffusers' own single-file converters
    read it: every key consumed, every value where diffusers puts it (FLUX's converter hard-codes the
    full model's 3072 width for its single blocks, so its split is told the tiny width here)."""
    import types

    from diffusers.loaders import single_file_utils as sfu

    from studio.engine.flow_keys import leftover, strip_leftover, to_diffusers
    from studio.testing_flow import original_transformer, tiny_flow_pipeline

    pipe = tiny_flow_pipeline(arch)
    own = pipe.transformer.state_dict()
    orig = original_transformer(pipe)
    family = "flux" if arch.startswith("flux") else "sd3"
    back = to_diffusers(orig, family)
    assert not leftover(back)
    back = strip_leftover(back)
    assert set(back) == set(own) and all(torch.equal(back[k], own[k]) for k in own)
    ck = {"model.diffusion_model." + k: v.clone() for k, v in orig.items()}
    if family == "sd3":
        theirs = sfu.convert_sd3_transformer_checkpoint_to_diffusers(ck)
    else:
        hidden = orig["img_in.weight"].shape[0]
        fake = types.SimpleNamespace(**{n: getattr(torch, n) for n in dir(torch) if not n.startswith("__")})

        def split(t, sizes, dim=0):
            if isinstance(sizes, (tuple, list)) and sum(sizes) != t.shape[dim]:
                sizes = (hidden, hidden, hidden, t.shape[dim] - 3 * hidden)
            return torch.split(t, sizes, dim=dim)

        fake.split = split
        monkeypatch.setattr(sfu, "torch", fake)
        theirs = sfu.convert_flux_transformer_checkpoint_to_diffusers(ck)
    assert not ck  # every key of the file was consumed
    assert set(theirs) == set(own) and all(torch.equal(theirs[k], own[k]) for k in own)
    if family == "flux":  # diffusers' model-type detection reads the kit's files as the right variant
        expect = {"flux-dev": "flux-dev", "flux-schnell": "flux-schnell", "flux-fill": "flux-fill"}[arch]
        assert sfu.infer_diffusers_model_type({k: v for k, v in orig.items()}) == expect


@pytest.mark.parametrize(
    "arch, label",
    [
        ("flux-dev", "dev"),
        ("flux-schnell", "schnell"),
        ("flux-fill", "Fill"),
        ("sd3-medium", "3 medium"),
        ("sd35-medium", "3.5 medium"),
        ("sd35-large", "3.5 large"),
    ],
)
def test_scan_names_family_and_variant(tiny_flow, arch, label):
    folder = identify_folder(tiny_flow(arch).model)
    assert folder.arch == ("flux" if arch.startswith("flux") else "sd3") and folder.variant == label
    assert folder.kind == ("inpaint checkpoint" if arch == "flux-fill" else "checkpoint") and folder.usable
    assert folder.precision == "fp32"
    fmt = "single-file" if arch.startswith("sd3") or arch == "sd35-large" else "comfy"
    files = tiny_flow(arch, fmt)
    entry = identify_file(files.model)
    assert (entry.arch, entry.variant, entry.kind) == (folder.arch, label, folder.kind)


def test_scan_identifies_every_separate_file(tiny_flow):
    gguf = tiny_flow("flux-dev", "gguf")
    entry = identify_file(gguf.model)
    assert (entry.arch, entry.variant, entry.precision) == ("flux", "dev", "Q8_0")
    assert "transformer only" in entry.reason and "CLIP-L" in entry.reason and "T5-XXL" in entry.reason
    fp8 = identify_file(tiny_flow("flux-fill", "fp8").model)
    assert (fp8.kind, fp8.precision) == ("inpaint checkpoint", "fp8")
    kinds = {p.name: identify_file(p) for p in gguf.encoders}
    assert {e.kind for e in kinds.values()} == {"text encoder"}
    assert kinds["t5xxl.safetensors"].variant.startswith("T5") and kinds["clip_l.safetensors"].variant.startswith(
        "CLIP"
    )
    vae = identify_file(gguf.vae)
    assert vae.kind == "VAE" and "16-channel" in vae.variant
    aio = identify_file(tiny_flow("sd35-large", "single-file").model)
    assert aio.reason == "" and aio.usable  # all-in-one: nothing else needed


@pytest.mark.parametrize(
    "arch, fmt",
    [("flux-dev", "single-file"), ("flux-schnell", "comfy"), ("sd35-large", "single-file"), ("sd35-medium", "comfy")],
)
def test_single_files_give_the_diffusers_twins_pixels(engine, tiny_flow, arch, fmt):
    twin = engine.generate(_req(tiny_flow(arch).model)).images[0]
    files = tiny_flow(arch, fmt)
    got = engine.generate(_req(files.model, **_parts(files))).images[0]
    assert np.array_equal(got, twin)


def test_gguf_within_q8_error_of_its_twin(engine, tiny_flow):
    """GGUF Q8_0 keeps one 8-bit value per weight and a scale per 32: the tiny model's pixels stay
    within 3 levels of the float twin's (measured: at most 1) and are not all identical."""
    twin = engine.generate(_req(tiny_flow("flux-dev").model)).images[0]
    files = tiny_flow("flux-dev", "gguf")
    lm = engine.load(str(files.model), parts=(tuple(map(str, files.encoders)), str(files.vae)))
    from diffusers.quantizers.gguf.utils import GGUFParameter

    assert any(isinstance(p, GGUFParameter) for p in lm.pipe.transformer.parameters())  # stays quantized
    got = engine.generate(_req(files.model, **_parts(files))).images[0]
    assert np.abs(got.astype(int) - twin).max() <= 3


def test_gguf_q4_within_its_coarser_error(engine, tiny_flow, tmp_path):
    """Q4_0 (4 bits and a scale per 32 weights) is further off, as it should be: measured 19 levels at
    most, 2.3 on average, on this tiny model (Q5_0: 8 and 1.1; Q8_0: 1 and 0.13)."""
    from studio.testing_flow import save_tiny_flow

    twin = engine.generate(_req(tiny_flow("flux-dev").model)).images[0]
    files = save_tiny_flow(tmp_path / "q4", "flux-dev", "gguf", quant="Q4_0")
    assert identify_file(files.model).precision == "Q4_0"
    diff = np.abs(engine.generate(_req(files.model, **_parts(files))).images[0].astype(int) - twin)
    assert 0 < diff.mean() <= 5 and diff.max() <= 48


def test_fp8_file_equals_its_fp8_rounded_twin(engine, tiny_flow, tmp_path):
    """fp8-stored weights computed in the device's dtype: the same pixels as the diffusers twin whose
    transformer weights went through fp8 and back."""
    from studio.testing_flow import tiny_flow_pipeline

    pipe = tiny_flow_pipeline("flux-fill")
    with torch.no_grad():
        for p in pipe.transformer.parameters():
            if p.ndim == 2:
                p.copy_(p.to(torch.float8_e4m3fn).float())
    pipe.save_pretrained(tmp_path / "rounded")
    twin = engine.generate(_req(tmp_path / "rounded")).images[0]
    files = tiny_flow("flux-fill", "fp8")
    assert np.array_equal(engine.generate(_req(files.model, **_parts(files))).images[0], twin)


@pytest.mark.parametrize("arch", ["flux-dev", "sd35-medium"])
def test_reruns_bit_identical_and_seeds_differ(engine, tiny_flow, arch):
    model = tiny_flow(arch).model
    a = engine.generate(_req(model, batch_size=2))
    b = engine.generate(_req(model, batch_size=2))
    assert a.seeds == [7, 8] and len(a.images) == 2 and a.images[0].shape == (64, 64, 3)
    assert all(np.array_equal(x, y) for x, y in zip(a.images, b.images))
    assert not np.array_equal(a.images[0], a.images[1])
    single = engine.generate(_req(model, seed=8)).images[0]  # batch image i uses seed + i: same noise;
    assert np.abs(single.astype(int) - a.images[1]).max() <= 2  # batched kernels may round differently


def test_transformer_only_without_encoders_says_what_is_missing(engine, tiny_flow):
    files = tiny_flow("flux-dev", "comfy")
    with pytest.raises(UnsupportedModel) as exc:
        engine.generate(_req(files.model))
    text = str(exc.value)
    assert "CLIP-L" in text and "T5-XXL" in text and "VAE" in text
    assert "models/clip" in text and "models/text_encoders" in text and "--text-encoder" in text
    with pytest.raises(UnsupportedModel) as exc:  # one encoder given: only the other is named
        engine.generate(_req(files.model, text_encoders=(str(files.encoders[0]),), vae=str(files.vae)))
    assert "T5-XXL" in str(exc.value) and "CLIP-L (" not in str(exc.value)


def test_nf4_file_off_cuda_says_so_in_one_line(engine, tmp_path):
    from safetensors.torch import save_file

    from studio.testing_flow import original_transformer, tiny_flow_pipeline

    state = original_transformer(tiny_flow_pipeline("flux-schnell"))
    state["double_blocks.0.img_attn.qkv.weight.quant_state.bitsandbytes__nf4"] = torch.zeros(4, dtype=torch.uint8)
    path = tmp_path / "flux-nf4.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    assert identify_file(path).precision == "nf4"
    with pytest.raises(UnsupportedModel) as exc:
        engine.generate(_req(path))
    assert "NF4" in str(exc.value) and "CUDA" in str(exc.value) and "\n" not in str(exc.value)
