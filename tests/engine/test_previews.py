"""Latent→RGB preview factors: fitted per model, used from the model folder."""

import json

import torch

from studio.cli import main
from studio.engine.previews import fit_latent_rgb, latent_rgb_error, latent_rgb_factors


def test_fitted_factors_beat_the_generic_ones_on_held_out_images(tiny_sd15):
    from diffusers import AutoencoderKL

    vae = AutoencoderKL.from_pretrained(tiny_sd15, subfolder="vae").eval()
    fitted = fit_latent_rgb(vae, n=16, size=64)
    generic = latent_rgb_error(vae, *latent_rgb_factors("sd1"), n=8, size=64)
    own = latent_rgb_error(vae, torch.tensor(fitted["factors"]), torch.tensor(fitted["bias"]), n=8, size=64)
    assert own < generic


def test_cli_writes_the_factors_the_engine_then_uses(tiny_sd15, tmp_path, capsys):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_sd15, folder)
    assert main(["dev", "fit-latent-rgb", str(folder)]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["error_fitted"] < report["error_sd1_factors"]
    factors, bias = latent_rgb_factors("sd1", folder)
    assert factors.tolist() == json.loads((folder / "latent_rgb.json").read_text())["factors"]
    assert main(["dev", "fit-latent-rgb", str(tmp_path / "nothing")]) == 2
