"""The shipped demo model: it loads offline as a standard pipeline and follows the prompt's colours."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from studio.dev import scenes

MODEL = Path(__file__).resolve().parents[2] / "resources" / "demo-model"

pytestmark = pytest.mark.skipif(not (MODEL / "model_index.json").is_file(), reason="resources/demo-model is not there")


@pytest.fixture(scope="module")
def pipe():
    torch = pytest.importorskip("torch")
    from diffusers import StableDiffusionPipeline

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small convolutions: one thread is the fastest on a busy CPU
    p = StableDiffusionPipeline.from_pretrained(
        str(MODEL), local_files_only=True, safety_checker=None, requires_safety_checker=False
    )
    p.set_progress_bar_config(disable=True)
    yield p
    torch.set_num_threads(threads)


def test_folder_is_small_fp16_safetensors():
    files = [f for f in MODEL.rglob("*") if f.is_file()]
    assert sum(f.stat().st_size for f in files) <= 40 * 1024 * 1024
    weights = [f for f in files if f.suffix == ".safetensors"]
    assert {f.parent.name for f in weights} == {"unet", "vae", "text_encoder", "preview_decoder"}
    assert not [f for f in files if f.suffix in (".bin", ".ckpt", ".pt", ".pth")]
    from safetensors import safe_open

    for f in weights:
        with safe_open(str(f), "pt") as sf:
            assert {str(sf.get_slice(k).get_dtype()) for k in sf.keys()}  # noqa: SIM118 — safe_open has keys(), no __iter__ == {"F16"}, f


def test_standard_architecture(pipe):
    assert type(pipe.unet).__name__ == "UNet2DConditionModel"
    assert type(pipe.vae).__name__ == "AutoencoderKL"
    assert type(pipe.text_encoder).__name__ == "CLIPTextModel"
    assert pipe.vae_scale_factor == 8 and pipe.vae.config.latent_channels == 4
    assert pipe.unet.config.sample_size * pipe.vae_scale_factor == 128
    assert len(pipe.tokenizer) == 49408
    index = json.loads((MODEL / "model_index.json").read_text())
    assert index["requires_safety_checker"] is False


def test_plain_load_generates_at_native_size(pipe):
    import torch

    assert pipe.text_encoder.dtype == pipe.unet.dtype == pipe.vae.dtype
    image = pipe("a red circle", num_inference_steps=2, generator=torch.Generator().manual_seed(0)).images[0]
    assert image.size == (128, 128)


# (object colour, background colour). A model that does not follow the prompt fails this: an early
# snapshot (UNet step 2,000) got the background right in only 72 % of held-out prompts.
CASES = [("red", "blue"), ("yellow", "purple"), ("white", "green"), ("blue", "orange")]


@pytest.mark.parametrize("obj,bg", CASES)
def test_background_follows_the_prompt(pipe, obj, bg):
    import torch

    prompt = f"a large {obj} circle in the center on a {bg} background"
    image = pipe(prompt, num_inference_steps=8, guidance_scale=4.0, generator=torch.Generator().manual_seed(0)).images[
        0
    ]
    assert image.size == (128, 128)
    a = np.asarray(image, np.float32)
    frame = np.concatenate(
        [a[:12].reshape(-1, 3), a[-12:].reshape(-1, 3), a[12:-12, :12].reshape(-1, 3), a[12:-12, -12:].reshape(-1, 3)]
    )
    mean = frame.mean(0)
    dist = {c: float(np.linalg.norm(mean - np.asarray(rgb))) for c, rgb in scenes.PALETTE.items()}
    assert min(dist, key=dist.get) == bg, (mean, dist)


def test_vae_round_trip_keeps_colour_and_position_and_reports_the_shape_ceiling(pipe):
    """eval-demo's ceiling row: clean held-out scenes through the shipped autoencoder alone."""
    from studio.dev.eval_demo import format_table, round_trip_scores

    row = round_trip_scores(pipe.vae, n_per_rule=1)
    assert row["position"] == row["background"] == 1.0
    # A small star's blurred pixels blend with the background's colour: most keep their colour.
    assert row["colour"] >= 0.75
    # The shipped VAE rounds stars' tips but keeps their five points (the model card): the shapes
    # come back; a broken VAE or detector would score near chance (1/6).
    assert row["shape"] >= 0.9
    assert row["overall"] <= min(row["shape"], row["colour"])
    assert "| VAE round trip (ceiling) | " in format_table({"vae_round_trip": row, "guidance": {}})
