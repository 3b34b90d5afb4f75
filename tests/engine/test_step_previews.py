"""Step previews: x0 by default, drawn by a tiny decoder (the demo model's own, distilled from its VAE
decoder; TAESD and its kin in every layout they come in), the noisy latent as an option, the last
step showing the finished picture, and previews that never change the pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from studio.core.paths import demo_model_dir
from studio.core.request import GenerationRequest, PreviewMode


def _req(path, **kw):
    base = dict(model=str(path), prompt="a blue square", steps=4, width=64, height=64, seed=3, scheduler="Euler")
    base.update(kw)
    return GenerationRequest.create(**base)


def _tiny_ae(channels: int = 4, **kw):
    from diffusers import AutoencoderTiny

    torch.manual_seed(0)
    return AutoencoderTiny(
        latent_channels=channels,
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
        **kw,
    )


# -- the demo model's own preview decoder --------------------------------------------------------------
def test_demo_preview_decoder_matches_the_vae_on_held_out_latents():
    """The shipped decoder against the demo VAE's decoder on latents of held-out scenes (colour–shape
    pairs and layouts training never showed) and blends of them, as early x0 estimates look."""
    import random

    from diffusers import AutoencoderKL

    from studio.dev import scenes
    from studio.dev.train_preview import _encode, teacher_decode
    from studio.engine.tiny_decoders import OWN_FOLDER, load_tiny_decoder

    dec = load_tiny_decoder(demo_model_dir() / OWN_FOLDER)
    assert dec.label == "preview decoder" and dec.latent_channels == 4 and (dec.scale, dec.shift) == (1.0, 0.0)
    vae = AutoencoderKL.from_pretrained(demo_model_dir(), subfolder="vae", local_files_only=True).eval()
    rng = random.Random(20_240)
    held = [scenes.render(scenes.sample_scene(rng, held_out=True)) for _ in range(6)]
    z = _encode(vae, held)
    lat = torch.cat([z, 0.5 * (z[:3] + z[3:])])  # encoded held-out scenes, and in-between latents
    with torch.no_grad():
        want = teacher_decode(vae, lat)
        got = dec.decode(lat)
    assert got.shape == want.shape == (9, 3, 128, 128)
    err = (got - want).abs() * 127.5  # RGB levels
    # measured with the shipped decoder: 9.0 mean, 17.4 for the worst (a blend); an untrained one: 116
    assert float(err.mean()) < 10.0, float(err.mean())
    assert float(err.mean(dim=(1, 2, 3)).max()) < 20.0  # no image far off


def test_demo_model_previews_x0_through_its_own_decoder_by_default():
    from studio.engine.engine import Engine

    eng = Engine(device="cpu")
    req = GenerationRequest.create(model="demo", prompt="a red circle at the top left on a blue background", steps=4,
                                   width=128, height=128, seed=1)  # fmt: skip
    assert req.preview is PreviewMode.X0
    seen = []
    res = eng.generate(req, on_step=seen.append)
    assert [p.step for p in seen] == [1, 2, 3, 4]
    assert all(p.decoder == "x0 · preview decoder" for p in seen[:-1])
    assert seen[0].image.shape == (128, 128, 3)  # true colours at full size, not latent-sized blocks
    last = seen[-1]  # the last step shows what the pipeline decoded
    assert last.decoder == "the finished picture" and np.array_equal(last.image, res.images[0])
    noisy = []
    eng.generate(req.replace(preview="latent2rgb"), on_step=noisy.append)
    assert noisy[0].decoder == "noisy latent · latent→RGB factors" and noisy[0].image.shape == (16, 16, 3)


def test_held_out_previews_are_near_the_finished_picture_at_default_settings():
    """The issue's check: the demo model's held-out prompts at its recommended settings and the
    default preview; the preview a quarter of the way through is at most 40 RGB levels (mean absolute,
    at preview size) from the finished picture, the last at most 12 — both as shown (the last step
    shows the decoded picture) and as the preview decoder draws the last step's latent."""
    from studio.cli.bench_previews import preview_errors

    got = preview_errors(6, ["x0"])
    x0 = got["x0"]
    assert x0["drawn_by"] == "x0 · preview decoder" and got["prompts"] == 6
    assert x0["quarter_levels"] <= 40, x0
    assert x0["last_levels"] <= 12 and x0["last_drawn_levels"] <= 12, x0
    noisy = preview_errors(2, ["latent2rgb"])["latent2rgb"]  # the noisy view, for contrast: far off early
    assert noisy["quarter_levels"] > x0["quarter_levels"] + 20, (noisy, x0)


# -- modes on a tiny model -----------------------------------------------------------------------------
def test_x0_is_the_default_everywhere():
    from studio.cli import build_parser

    assert GenerationRequest().preview is PreviewMode.X0
    args = build_parser().parse_args(["generate", "--prompt", "p", "--out", "o.png"])
    assert args.preview == "x0"


def test_old_recipes_keep_their_preview_mode():
    old = GenerationRequest().to_dict()
    del old["preview"]
    old["schema_version"] = 7  # written before x0 became the default: previewed as the sampler held it
    assert GenerationRequest.from_dict(old).preview is PreviewMode.LATENT2RGB
    said = {**old, "preview": "vae"}
    assert GenerationRequest.from_dict(said).preview is PreviewMode.VAE
    new = GenerationRequest.create(prompt="p").to_dict()
    assert GenerationRequest.from_dict(new).preview is PreviewMode.X0


@pytest.mark.parametrize("mode", ["latent2rgb", "x0", "taesd", "vae", "none"])
def test_the_preview_mode_never_changes_the_pixels(engine, tiny_sd15, tmp_path, mode):
    from studio.engine.engine import Engine

    _tiny_ae().save_pretrained(tmp_path / "taesd")
    eng = Engine(device="cpu", taesd={"sd1": tmp_path / "taesd"})
    base = engine.generate(_req(tiny_sd15, preview="none"))
    res = eng.generate(_req(tiny_sd15, preview=mode), on_step=lambda p: None)
    assert np.array_equal(res.images[0], base.images[0])


def test_noisy_latent_option_shows_what_the_sampler_holds(engine, tiny_sd15):
    """latent2rgb draws the latent the sampler holds (noisy until the end) through the linear
    factors; x0 draws the model's estimate of the clean image, another picture."""
    import torch

    from studio.engine.previews import latent_rgb_factors, latent_to_rgb

    noisy, x0 = [], []
    engine.generate(_req(tiny_sd15, preview="latent2rgb", steps=8), on_step=noisy.append)
    engine.generate(_req(tiny_sd15, preview="x0", steps=8), on_step=x0.append)
    assert noisy[0].mode == "latent2rgb" and noisy[0].decoder == "noisy latent · latent→RGB factors"
    assert x0[0].mode == "x0" and x0[0].decoder == "x0 · latent→RGB factors"  # no tiny decoder for it
    factors, bias = latent_rgb_factors("sd1")
    for p in noisy[:-1]:  # exactly the held latent through the factors
        assert np.array_equal(p.image, latent_to_rgb(torch.from_numpy(p.latent), factors, bias))
    assert all(np.array_equal(a.latent, b.latent) for a, b in zip(noisy, x0, strict=True))  # same run
    assert not np.array_equal(noisy[0].image, x0[0].image)
    assert np.array_equal(noisy[-1].image, x0[-1].image)  # the last step: the finished picture in both


def test_a_set_tiny_autoencoder_draws_x0_and_says_so(tiny_sd15, tmp_path):
    from studio.engine.engine import Engine

    _tiny_ae().save_pretrained(tmp_path / "madebyollin--taesd")
    eng = Engine(device="cpu", taesd={"sd1": tmp_path / "madebyollin--taesd"})
    seen = []
    eng.generate(_req(tiny_sd15), on_step=seen.append)
    assert seen[0].decoder == "x0 · TAESD" and seen[0].image.shape == (64, 64, 3)
    # one that does not fit the model's latents is passed over, not fatal
    _tiny_ae(channels=16).save_pretrained(tmp_path / "taef1")
    eng.set_taesd({"sd1": tmp_path / "taef1"})
    seen.clear()
    eng.generate(_req(tiny_sd15), on_step=seen.append)
    assert seen[0].decoder == "x0 · latent→RGB factors"


# -- the loader: every layout tiny autoencoders come in ------------------------------------------------
def test_tiny_decoder_layouts_give_the_same_pictures(tmp_path):
    from safetensors.torch import save_file

    from studio.engine.tiny_decoders import load_tiny_decoder

    ae = _tiny_ae().eval()
    ae.save_pretrained(tmp_path / "diffusers")
    state = {k: v.contiguous() for k, v in ae.state_dict().items()}
    save_file(state, str(tmp_path / "whole.safetensors"))
    save_file({k: v for k, v in state.items() if k.startswith("decoder.")}, str(tmp_path / "dec.safetensors"))
    original = {  # madebyollin's taesd_decoder.safetensors: a Sequential that starts with a weightless clamp
        f"{int(k.split('.')[2]) + 1}.{k.split('.', 3)[3]}": v for k, v in state.items() if k.startswith("decoder.")
    }
    (tmp_path / "vae_approx").mkdir()
    save_file(original, str(tmp_path / "vae_approx" / "taesd_decoder.safetensors"))
    lat = torch.randn(1, 4, 8, 8)
    with torch.no_grad():
        want = ae.decode(lat).sample.clamp(-1, 1)
    for path in ("diffusers", "whole.safetensors", "dec.safetensors", "vae_approx/taesd_decoder.safetensors"):
        dec = load_tiny_decoder(tmp_path / path)
        assert torch.allclose(dec.decode(lat), want, atol=1e-5), path
    assert load_tiny_decoder(tmp_path / "vae_approx" / "taesd_decoder.safetensors").label == "TAESD"


def test_16_channel_decoder_without_config_reads_the_models_latent_scaling(tmp_path):
    from types import SimpleNamespace

    from safetensors.torch import save_file

    from studio.engine.tiny_decoders import load_tiny_decoder

    ae = _tiny_ae(channels=16)
    dec_only = {k: v.contiguous() for k, v in ae.state_dict().items() if k.startswith("decoder.")}
    save_file(dec_only, str(tmp_path / "taef1_decoder.safetensors"))
    flux_vae = SimpleNamespace(config=SimpleNamespace(scaling_factor=0.3611, shift_factor=0.1159))
    dec = load_tiny_decoder(tmp_path / "taef1_decoder.safetensors", model_vae=flux_vae)
    assert (dec.scale, dec.shift, dec.label, dec.latent_channels) == (0.3611, 0.1159, "TAEF1", 16)


def test_bad_tiny_autoencoder_files_are_explained(tmp_path):
    from safetensors.torch import save_file

    from studio.core.errors import CorruptModel, UnsupportedModel
    from studio.engine.tiny_decoders import load_tiny_decoder

    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CorruptModel, match="cannot be read"):
        load_tiny_decoder(tmp_path / "junk.safetensors")
    save_file({"something.weight": torch.zeros(2, 2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(UnsupportedModel, match="not a tiny autoencoder"):
        load_tiny_decoder(tmp_path / "other.safetensors")


def test_published_tiny_autoencoders_are_found_where_users_keep_them(tmp_path, monkeypatch):
    from studio.core import library, settings

    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    models = library.models_dir()
    (models / "madebyollin--taesdxl").mkdir(parents=True)
    (models / "madebyollin--taesdxl" / "diffusion_pytorch_model.safetensors").write_bytes(b"x")
    comfy = tmp_path / "ComfyUI" / "models"
    (comfy / "vae_approx").mkdir(parents=True)
    for name in ("taesd_encoder.safetensors", "taesd_decoder.safetensors", "taef1_decoder.safetensors"):
        (comfy / "vae_approx" / name).write_bytes(b"x")
    s = settings.Settings(model_folders=[str(comfy)])
    found = library.tiny_autoencoders(s)
    assert found["sdxl"].endswith("madebyollin--taesdxl") and found["sdxl-refiner"] == found["sdxl"]
    assert found["sd1"].endswith("taesd_decoder.safetensors") and found["sd2"] == found["sd1"]
    assert found["flux"].endswith("taef1_decoder.safetensors") and "sd3" not in found
    s.set_default("taesd", "sd1", "/chosen/taesd")  # the one set in the Models dialog wins
    assert library.tiny_autoencoders(s)["sd1"] == "/chosen/taesd"


def test_tiny_decoder_cost_is_capped_on_the_cpu():
    from studio.engine.previews import CPU_TINY_LATENT_PIXELS, _shrink

    big = torch.randn(1, 4, 128, 96)  # SDXL-sized latents
    small = _shrink(big, CPU_TINY_LATENT_PIXELS)
    assert small.shape[0] == 1 and small.shape[2] * small.shape[3] <= CPU_TINY_LATENT_PIXELS
    assert small.shape[2] / small.shape[3] == pytest.approx(128 / 96, rel=0.1)
    assert _shrink(torch.randn(1, 4, 16, 16), CPU_TINY_LATENT_PIXELS).shape == (1, 4, 16, 16)  # the demo: whole
