"""Every format and architecture loads offline; LDM-layout single files match their diffusers twins."""

import numpy as np
import pytest

from studio.core.checkpoint import identify, read_header
from studio.core.request import GenerationRequest
from studio.engine.engine import Engine

CASES = [
    ("sd15", "diffusers", "sd1"),
    ("sd15", "single-file", "sd1"),
    ("sd15-inpaint", "diffusers", "sd1"),
    ("sd15-inpaint", "single-file", "sd1"),
    ("sd2", "single-file", "sd2"),
    ("sdxl", "diffusers", "sdxl"),
    ("sdxl", "single-file", "sdxl"),
]


def _req(path, **kw):
    base = dict(model=str(path), prompt="a red circle", steps=3, width=64, height=64, seed=7, scheduler="Euler")
    base.update(kw)
    return GenerationRequest.create(**base)


@pytest.mark.parametrize("arch, fmt, family", CASES)
def test_loads_and_generates(tiny_models, engine, arch, fmt, family):
    path = tiny_models(arch, fmt)
    lm = engine.load(str(path))
    assert lm.arch == family
    assert lm.inpaint == (arch == "sd15-inpaint")
    res = engine.generate(_req(path))
    assert res.status == "done" and res.images[0].shape == (64, 64, 3) and res.images[0].dtype == np.uint8
    assert res.images[0].std() > 0  # a real decode, not a blank


@pytest.mark.parametrize("arch", ["sd15", "sd15-inpaint", "sdxl"])
def test_single_file_reproduces_diffusers_folder(tiny_models, arch):
    eng = Engine(device="cpu")
    a = eng.generate(_req(tiny_models(arch, "diffusers"))).images[0]
    b = eng.generate(_req(tiny_models(arch, "single-file"))).images[0]
    assert np.array_equal(a, b)


@pytest.mark.parametrize("fmt", ["diffusers", "single-file"])
def test_cpu_weights_sit_in_aligned_memory_whatever_the_file(tiny_models, fmt):
    """Weights read straight from a file sit at its offsets; misaligned, the CPU kernels round
    differently and a seed's image depends on the format. The loader gives every weight its own
    64-byte-aligned memory (what the single-file twin test above relies on)."""
    pipe = Engine(device="cpu").load(str(tiny_models("sd15", fmt))).pipe
    for part in (pipe.unet, pipe.vae, pipe.text_encoder):
        assert all(t.data_ptr() % 64 == 0 for t in [*part.parameters(), *part.buffers()] if t.numel())


def test_config_comes_from_shapes(tiny_models):
    info = identify(tiny_models("sdxl", "single-file"))
    unet = info.configs["unet"]
    assert unet["block_out_channels"] == [32, 64, 64]
    assert unet["layers_per_block"] == 2
    assert unet["transformer_layers_per_block"] == [1, 1, 2]
    assert unet["cross_attention_dim"] == 192
    assert unet["addition_time_embed_dim"] == 8
    assert unet["down_block_types"] == ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"]
    assert info.configs["text_encoder"]["hidden_size"] == 64
    assert info.configs["text_encoder_2"]["hidden_size"] == 128
    assert info.configs["text_encoder_2"]["vocab_size"] == 49408
    sd1 = identify(tiny_models("sd15-inpaint", "single-file"))
    assert sd1.inpaint and sd1.configs["unet"]["in_channels"] == 9
    assert sd1.pipeline_class == "StableDiffusionInpaintPipeline"


def test_ldm_key_layout_is_the_original_one(tiny_models):
    keys = set(read_header(tiny_models("sd15", "single-file"))[0])
    assert "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight" in keys
    assert "model.diffusion_model.output_blocks.2.1.conv.weight" in keys  # upsampler of a resnet-only level
    assert "first_stage_model.decoder.up.3.block.0.conv1.weight" in keys
    assert "first_stage_model.encoder.mid.attn_1.q.weight" in keys
    assert "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight" in keys
    assert not any(k.startswith(("unet.", "down_blocks.")) for k in keys)


def test_switching_back_does_not_reload(tiny_models):
    eng = Engine(device="cpu", cache_size=2)
    a, b = tiny_models("sd15", "diffusers"), tiny_models("sd15", "single-file")
    first = eng.load(str(a))
    eng.load(str(b))
    assert eng.load(str(a)) is first
    assert eng.cache.loads == 2


def test_demo_name_resolves_to_bundled_model(monkeypatch, tiny_models):
    import studio.engine.loader as loader

    monkeypatch.setattr(loader, "demo_model_dir", lambda: tiny_models("sd15", "diffusers"))
    lm = Engine(device="cpu").load("demo")
    assert lm.name == "demo"
