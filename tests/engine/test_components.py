"""A VAE chosen instead of the model's own (request.vae: file in LDM layout or diffusers folder),
the tiny autoencoder from a single file, and what the engine says about itself."""

import numpy as np
import pytest
import torch

from studio.core.errors import ModelNotFound, UnsupportedModel
from studio.core.request import GenerationRequest


def _req(path, **kw):
    base = dict(model=str(path), prompt="a blue square", steps=3, width=64, height=64, seed=3, scheduler="Euler")
    base.update(kw)
    return GenerationRequest.create(**base)


@pytest.fixture(scope="module")
def other_vae(tiny_sd15, tmp_path_factory):
    """The tiny model's VAE with a changed decoder: as an A1111-style single file and a diffusers folder."""
    from diffusers import AutoencoderKL
    from safetensors.torch import save_file

    from studio.engine.ldm import vae_key_to_ldm

    root = tmp_path_factory.mktemp("vaes")
    vae = AutoencoderKL.from_pretrained(tiny_sd15 / "vae")
    with torch.no_grad():
        vae.decoder.conv_out.weight.mul_(-1.0)
        vae.decoder.conv_out.bias.add_(0.3)
    folder = root / "other-vae"
    vae.save_pretrained(folder)
    n = len(vae.config.block_out_channels)
    ldm = {}
    for k, v in vae.state_dict().items():
        name = vae_key_to_ldm(k, n)
        if ".mid.attn_1." in name and name.endswith(".weight") and v.ndim == 2:
            v = v[:, :, None, None]
        ldm["first_stage_model." + name] = v.contiguous().clone()
    file = root / "other.vae.safetensors"
    save_file(ldm, str(file))
    return file, folder


def test_request_vae_replaces_the_models_own_and_switches_back(engine, tiny_sd15, other_vae):
    file, folder = other_vae
    own = engine.generate(_req(tiny_sd15)).images[0]
    with_file = engine.generate(_req(tiny_sd15, vae=str(file)))
    assert with_file.status == "done"
    assert np.abs(with_file.images[0].astype(int) - own).mean() > 20  # the decoder is different
    with_folder = engine.generate(_req(tiny_sd15, vae=str(folder))).images[0]
    assert np.abs(with_folder.astype(int) - with_file.images[0]).max() <= 1  # same weights, either layout
    again = engine.generate(_req(tiny_sd15)).images[0]
    assert np.array_equal(again, own)  # the model's own VAE is back, bit for bit


def test_a_vae_that_does_not_fit_is_refused(engine, tiny_sd15, tmp_path):
    from safetensors.torch import save_file

    bad = tmp_path / "not-a-vae.safetensors"
    save_file({"something.weight": torch.zeros(3, 3)}, str(bad))
    with pytest.raises(UnsupportedModel, match="does not fit"):
        engine.generate(_req(tiny_sd15, vae=str(bad)))
    with pytest.raises(ModelNotFound):
        engine.generate(_req(tiny_sd15, vae=str(tmp_path / "gone.safetensors")))
    assert engine.generate(_req(tiny_sd15)).status == "done"  # and the next run is fine


def test_tiny_autoencoder_from_one_file_and_set_taesd(tiny_sd15, tmp_path):
    from diffusers import AutoencoderTiny
    from safetensors.torch import save_file

    from studio.engine.engine import Engine

    file = tmp_path / "taesd.safetensors"
    save_file({k: v.contiguous() for k, v in AutoencoderTiny().state_dict().items()}, str(file))
    eng = Engine(device="cpu")
    eng.set_taesd({"sd1": file})
    seen = []
    res = eng.generate(_req(tiny_sd15, preview="taesd", steps=2), on_step=seen.append)
    assert res.status == "done" and seen[-1].image.shape == (64, 64, 3)


def test_describe_says_device_preset_and_attention(engine):
    d = engine.describe()
    assert d["device"] == "cpu" and d["dtype"] == "float32" and d["preset"] in ("fast", "balanced", "low memory")
    assert "SDPA" in d["attention"]
    engine.set_preset("low memory")
    try:
        assert engine.describe()["attention"].endswith("sliced") and engine.describe()["cpu_offload"] == "model"
    finally:
        engine.set_preset(d["preset"])
    mem = engine.memory_info()
    assert (
        mem["allocated_mb"] > 10
        and mem["peak_mb"] >= mem["allocated_mb"] * 0.5
        and mem["total_mb"] > mem["allocated_mb"]
    )


def test_cli_generate_vae_and_the_saved_preset(tiny_sd15, other_vae, tmp_path, capsys, monkeypatch):
    import json

    from studio.cli import main
    from studio.core import settings as core_settings

    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    core_settings.update(memory_preset="balanced")
    file, _folder = other_vae
    out = tmp_path / "v.png"
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
                "--size",
                "64x64",
                "--vae",
                str(file),
                "--no-gallery",
                "--out",
                str(out),
                "--json",
            ]
        )
        == 0
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["request"]["vae"] == str(file) and summary["memory_preset"] == "balanced"
    from PIL import Image

    assert "VAE: other.vae.safetensors" in Image.open(out).text["parameters"]
