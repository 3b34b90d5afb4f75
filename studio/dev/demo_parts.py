"""The demo model's parts (sizes, builders, noise schedule, loss) and the small helpers its
trainers share (studio.dev.train_demo for the model, studio.dev.train_adapters for its adapters)."""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from pathlib import Path

import numpy as np

from studio.dev import scenes

IMAGE_SIZE = scenes.SIZE
LATENT_SIZE = IMAGE_SIZE // 8
TEXT_WIDTH = 128
MAX_TOKENS = 77
OFFSET_NOISE = 0.1
MIN_SNR_GAMMA = 5.0

# Seeds of the scene streams, kept apart so that stages never share samples by accident.
VAE_SEED_BASE = 1_000_000_000
LATENT_SEED_BASE = 2_000_000_000


# ---------------------------------------------------------------------------------------------
# Models


VAE_WIDTHS = (16, 32, 64, 64)  # phase 1's VAE; the shipped v2 VAE is (32, 64, 128, 128), via `--vae-widths`


def build_vae(widths: tuple[int, ...] = VAE_WIDTHS):
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=widths,
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=1,  # one group: per-channel groups erase the colour of flat images
        sample_size=IMAGE_SIZE,
    )


def build_unet():
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=LATENT_SIZE,
        in_channels=4,
        out_channels=4,
        block_out_channels=(32, 64, 128, 128),
        down_block_types=(
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "DownBlock2D",
        ),
        up_block_types=(
            "UpBlock2D",
            "CrossAttnUpBlock2D",
            "CrossAttnUpBlock2D",
            "CrossAttnUpBlock2D",
        ),
        layers_per_block=1,
        cross_attention_dim=TEXT_WIDTH,
        attention_head_dim=4,
        norm_num_groups=8,
    )


def build_text_encoder():
    from transformers import CLIPTextConfig, CLIPTextModel

    cfg = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=TEXT_WIDTH,
        intermediate_size=TEXT_WIDTH * 4,
        num_hidden_layers=3,
        num_attention_heads=4,
        max_position_embeddings=MAX_TOKENS,
        hidden_act="quick_gelu",
        bos_token_id=49406,
        eos_token_id=49407,
        pad_token_id=49407,
    )
    return CLIPTextModel(cfg)


def build_tokenizer():
    from studio.engine.clip_vocab import build_clip_tokenizer

    tok = build_clip_tokenizer()
    tok.model_max_length = MAX_TOKENS
    return tok


PREDICTION = "v_prediction"  # since UNet step 5,700; "epsilon" before (see the model card)


def noise_scheduler_config(prediction: str = PREDICTION) -> dict:
    """The SD-1.x noise schedule (scaled-linear betas 0.00085 → 0.012 over 1000 steps)."""
    return dict(
        num_train_timesteps=1000,
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        prediction_type=prediction,
        steps_offset=1,
        clip_sample=False,
        set_alpha_to_one=False,
        timestep_spacing="leading",
    )


def _make_scheduler(cls):
    """An instance of the scheduler class with the keys of noise_scheduler_config() it takes."""
    import inspect

    keys = inspect.signature(cls.__init__).parameters
    return cls(**{k: v for k, v in noise_scheduler_config().items() if k in keys})


def count_params(*models) -> int:
    return sum(p.numel() for m in models for p in m.parameters())


# ---------------------------------------------------------------------------------------------
# Helpers


def _torch_setup(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)


def _image_tensor(images):
    import torch

    arr = np.stack([np.asarray(im, np.float32) for im in images]) / 127.5 - 1.0
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


def _save_atomic(obj, path: Path) -> None:
    import torch

    tmp = path.with_suffix(path.suffix + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _load(path: Path):
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)


def _stop_time(text: str | None) -> _dt.datetime | None:
    """--stop-at "HH:MM" as today's local time (None: no deadline)."""
    if not text:
        return None
    hh, mm = map(int, text.split(":"))
    return _dt.datetime.now().replace(hour=hh, minute=mm, second=0, microsecond=0)


def _past(stop_at: _dt.datetime | None) -> bool:
    return stop_at is not None and _dt.datetime.now() >= stop_at


def _cosine(step: int, total: int, warmup: int, floor: float = 0.05) -> float:
    if step < warmup:
        return (step + 1) / warmup
    p = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * p))


def _log(work: Path, record: dict) -> None:
    with open(work / "metrics.jsonl", "a") as f:
        f.write(json.dumps(record) + "\n")


def loss_target(sched, x0, noise, t):
    """(target, per-sample weight) for the scheduler's prediction type.

    epsilon: min-SNR-5 weights. An epsilon loss weighs an error in the clean image by the SNR, so
    at high noise (SNR ≈ 0.006 at t = 950), where the layout is decided, the model is barely
    asked where the object goes; the epsilon-trained model placed every object where the seed's
    noise put it, whatever the prompt said. v_prediction: the v loss weighs clean-image errors by
    1 + SNR, so high noise counts fully; its weight min(1, (1 + γ) / (1 + SNR)) caps only the
    low-noise end, as min-SNR does.
    """
    import torch

    acp = sched.alphas_cumprod
    snr = acp[t] / (1 - acp[t])
    if sched.config.prediction_type == "v_prediction":
        return sched.get_velocity(x0, noise, t), torch.clamp((1 + MIN_SNR_GAMMA) / (1 + snr), max=1.0)
    return noise, torch.clamp(snr, max=MIN_SNR_GAMMA) / snr
