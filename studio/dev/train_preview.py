"""Distil a tiny preview decoder from a model's VAE decoder (`studio dev train-preview-decoder`).

The student is the decoder half of diffusers' `AutoencoderTiny` (the TAESD architecture: plain 3×3
convolutions, ReLU, nearest upsampling; one width throughout), reading the latents as the pipeline
holds them (scaled). The teacher is the model's own VAE decoder; the student learns to give the
same pixels for:

- latents of training scenes through the VAE's encoder (what a finished picture decodes from);
- the model's predicted clean latents (x0) at every step of runs on training captions with its
  recommended settings (what a step preview decodes: early ones are blurred averages);
- blends and blurs of the encoded latents (more of the same in-between latents, cheaply).

The data are made once and kept in `--work` (latents and the teacher's pictures); the student is
trained with L1 on pixels plus an edge term (the pixel differences), as the demo VAE's decoder was.
Held-out check: runs on the held-out evaluation prompts (`scenes.eval_prompts`) and encoded held-out
scenes, mean absolute difference from the teacher in RGB levels (0–255).

The decoder is written in fp16 (as the model's other weights), decoder-only (`decoder.layers.…` keys
and an `AutoencoderTiny` config), as `studio.engine.tiny_decoders` reads it. Seeded; about half an
hour on two shared CPU cores (1,500 iterations).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from studio.dev import scenes

if TYPE_CHECKING:
    import torch

DEFAULT_MODEL = Path(__file__).resolve().parent.parent.parent / "resources" / "demo-model"
PREVIEW_SEED_BASE = 4_000_000_000  # scene stream of its own (see demo_parts' seed bases)
HELD_OUT_SEED = 4_100_000_000


def build_decoder(latent_channels: int = 4, width: int = 32, blocks: tuple[int, ...] = (2, 2, 1, 0)):
    from diffusers.models.autoencoders.vae import DecoderTiny

    return DecoderTiny(latent_channels, 3, blocks, (width,) * len(blocks), 2, "relu", "nearest")


def _config(latent_channels: int, width: int, blocks: tuple[int, ...], meta: dict) -> dict:
    """An `AutoencoderTiny` config for the decoder (its encoder keys: diffusers' defaults, not shipped)."""
    return {
        "_class_name": "AutoencoderTiny",
        "_studio_label": "preview decoder",
        "_studio_note": "decoder only: distilled from this model's VAE decoder by `studio dev train-preview-decoder`",
        "_studio_training": meta,
        "latent_channels": latent_channels,
        "decoder_block_out_channels": [width] * len(blocks),
        "num_decoder_blocks": list(blocks),
        "upsampling_scaling_factor": 2,
        "act_fn": "relu",
        "upsample_fn": "nearest",
        "scaling_factor": 1.0,
        "shift_factor": 0.0,
    }


def load_pipeline(model: Path):
    import torch
    from diffusers import StableDiffusionPipeline

    from studio.engine.schedulers import make_scheduler

    pipe = StableDiffusionPipeline.from_pretrained(
        str(model), local_files_only=True, safety_checker=None, requires_safety_checker=False, dtype=torch.float32
    )
    pipe.set_progress_bar_config(disable=True)
    for m in (pipe.unet, pipe.vae, pipe.text_encoder):
        m.requires_grad_(False)
        m.eval()
    from studio.core import recommend

    rec = recommend.for_model(str(model))
    settings: dict[str, Any] = {"steps": 20, "cfg": 7.0, "cfg_end": 1.0, "scheduler": "DPM++ 2M"}
    if rec is not None:
        settings = {"steps": rec.steps, "cfg": rec.cfg, "cfg_end": rec.cfg_end, "scheduler": rec.scheduler}
    pipe.scheduler = make_scheduler(settings["scheduler"], dict(pipe.scheduler.config), False, "")
    return pipe, settings


def _encode(vae, images) -> torch.Tensor:
    import torch

    from studio.dev.demo_parts import _image_tensor

    out = []
    for at in range(0, len(images), 16):
        with torch.no_grad():
            x = _image_tensor(images[at : at + 16])
            out.append(vae.encode(x).latent_dist.mean * vae.config.scaling_factor)
    return torch.cat(out)


def teacher_decode(vae, latents) -> torch.Tensor:
    """The VAE's pictures (B, 3, H, W) in [-1, 1] for scaled latents."""
    import torch

    out = []
    for at in range(0, len(latents), 16):
        with torch.no_grad():
            out.append(vae.decode(latents[at : at + 16] / vae.config.scaling_factor).sample.clamp(-1, 1))
    return torch.cat(out)


def x0_trajectories(pipe, settings: dict, prompts: list[str], seed: int, every: int = 1) -> torch.Tensor:
    """The predicted clean latents of every `every`-th step (and the final latents) of runs on `prompts`."""
    import torch

    from studio.engine.guidance import guided_steps, stop_guidance, tensor_inputs

    steps = int(settings["steps"])
    guided = guided_steps(steps, float(settings["cfg_end"]))
    kept: list[torch.Tensor] = []

    def callback(p, i, t, kw):
        x0 = p.scheduler.model_outputs[-1] if getattr(p.scheduler, "model_outputs", None) else None
        if x0 is not None and (i + 1) % every == 0:
            kept.append(x0.detach().float().clone())
        return stop_guidance(p, kw) if i + 1 == guided < steps else kw

    for at in range(0, len(prompts), 8):
        chunk = prompts[at : at + 8]
        gens = [torch.Generator().manual_seed(seed + at + j) for j in range(len(chunk))]
        out = pipe(
            chunk,
            num_inference_steps=steps,
            guidance_scale=float(settings["cfg"]),
            generator=gens,
            height=scenes.SIZE,
            width=scenes.SIZE,
            output_type="latent",
            callback_on_step_end=callback,
            callback_on_step_end_tensor_inputs=tensor_inputs(pipe),
        )
        kept.append(out.images.float())
    return torch.cat(kept)


def _variants(z, rng: random.Random, n: int):
    """Blends of two latents and blurred latents: in-between latents like early x0 estimates."""
    import torch
    import torch.nn.functional as F

    out = []
    for _ in range(n):
        a, b = rng.randrange(len(z)), rng.randrange(len(z))
        if rng.random() < 0.5:
            w = rng.uniform(0.2, 0.8)
            out.append(z[a] * (1 - w) + z[b] * w)
        else:
            k = rng.choice((3, 5))
            out.append(F.avg_pool2d(z[a : a + 1], k, 1, k // 2, count_include_pad=False)[0] * rng.uniform(0.7, 1.0))
    return torch.stack(out)


def make_data(model: Path, work: Path, n_scenes: int, n_runs: int, seed: int) -> dict:
    import torch

    path = work / "preview-data.pt"
    if path.is_file():
        return torch.load(path)
    work.mkdir(parents=True, exist_ok=True)
    pipe, settings = load_pipeline(model)
    rng = random.Random(seed)
    t0 = time.time()
    samples = [scenes.make_sample(PREVIEW_SEED_BASE + seed * 10_007 + i) for i in range(n_scenes + n_runs)]
    z = _encode(pipe.vae, [s.image for s in samples[:n_scenes]])
    x0 = x0_trajectories(pipe, settings, [s.caption for s in samples[n_scenes:]], PREVIEW_SEED_BASE + seed)
    lat = torch.cat([z, x0, _variants(z, rng, n_scenes // 2)])
    print(f"latents: {len(z)} encoded, {len(x0)} from runs, {n_scenes // 2} blends/blurs ({time.time() - t0:.0f}s)")
    images = teacher_decode(pipe.vae, lat)
    held = held_out_latents(pipe, settings)
    data = {
        "latents": lat,
        "images": images,
        "held_latents": held,
        "held_images": teacher_decode(pipe.vae, held),
        "settings": settings,
    }
    torch.save(data, path)
    print(f"teacher pictures made ({time.time() - t0:.0f}s)")
    return data


def held_out_latents(pipe, settings: dict, n_runs: int = 6, n_scenes: int = 16) -> torch.Tensor:
    """x0 of every fourth step of runs on held-out prompts, and encoded held-out scenes."""
    import torch

    prompts = [p for _, _, p in scenes.eval_prompts(1)][:n_runs]
    x0 = x0_trajectories(pipe, settings, prompts, HELD_OUT_SEED, every=4)
    rng = random.Random(HELD_OUT_SEED)
    held = [scenes.sample_scene(rng, held_out=True) for _ in range(n_scenes)]
    z = _encode(pipe.vae, [scenes.render(s) for s in held])
    return torch.cat([x0, z])


def levels(decoder, latents, images) -> float:
    """Mean absolute difference from the teacher's pictures, in RGB levels (0–255)."""
    import torch

    with torch.no_grad():
        y = torch.cat([decoder(latents[at : at + 16]).clamp(-1, 1) for at in range(0, len(latents), 16)])
    return float((y - images).abs().mean() * 127.5)


def _edge_l1(y, x):
    return ((y[..., :, 1:] - y[..., :, :-1]) - (x[..., :, 1:] - x[..., :, :-1])).abs().mean() + (
        (y[..., 1:, :] - y[..., :-1, :]) - (x[..., 1:, :] - x[..., :-1, :])
    ).abs().mean()


def train(data: dict, width: int, blocks: tuple[int, ...], iters: int, batch: int, seed: int, crop: int = 8):
    import torch

    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    lat, img = data["latents"], data["images"]
    dec = build_decoder(int(lat.shape[1]), width, blocks)
    opt = torch.optim.AdamW(dec.parameters(), lr=2e-3, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=iters, pct_start=0.05)
    h = int(lat.shape[-1])
    t0 = time.time()
    for it in range(iters):
        idx = torch.from_numpy(rng.integers(0, len(lat), batch))
        if crop and crop < h:
            y0, x0 = (int(v) for v in rng.integers(0, h - crop + 1, 2))
            xb = lat[idx, :, y0 : y0 + crop, x0 : x0 + crop]
            yb = img[idx, :, y0 * 8 : (y0 + crop) * 8, x0 * 8 : (x0 + crop) * 8]
        else:
            xb, yb = lat[idx], img[idx]
        flip = rng.random() < 0.5  # the scenes have no handedness the decoder should learn
        if flip:
            xb, yb = xb.flip(-1), yb.flip(-1)
        out = dec(xb)
        loss = (out - yb).abs().mean() + 0.5 * _edge_l1(out, yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        if (it + 1) % max(1, iters // 5) == 0:
            dec.eval()
            held = levels(dec, data["held_latents"], data["held_images"])
            dec.train()
            print(
                f"iter {it + 1}/{iters}: loss {float(loss):.4f}, held-out {held:.2f} levels ({time.time() - t0:.0f}s)"
            )
    return dec.eval()


def save(dec, out: Path, width: int, blocks: tuple[int, ...], meta: dict) -> Path:
    from safetensors.torch import save_file

    from studio.core.files import atomic_write

    out.mkdir(parents=True, exist_ok=True)
    state = {f"decoder.{k}": v.detach().half().contiguous() for k, v in dec.state_dict().items()}  # fp16, as the model
    tmp = out / ".weights.tmp"
    save_file(state, str(tmp), metadata={"format": "pt", "studio": "preview decoder (decoder only)"})
    atomic_write(out / "diffusion_pytorch_model.safetensors", tmp.read_bytes())
    tmp.unlink()
    cfg = _config(int(dec.layers[0].in_channels), width, blocks, meta)
    atomic_write(out / "config.json", (json.dumps(cfg, indent=1) + "\n").encode())
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="diffusers folder of the model (its VAE is the teacher)")
    p.add_argument("--out", default=None, help="where to write the decoder (default: MODEL/preview_decoder)")
    p.add_argument("--work", default=".cache/preview-decoder", help="keeps the made data between runs")
    p.add_argument("--scenes", type=int, default=160, help="training scenes encoded by the VAE")
    p.add_argument("--runs", type=int, default=12, help="runs on training captions whose step x0s are kept")
    p.add_argument("--iters", type=int, default=1500)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--width", type=int, default=32)
    p.add_argument("--blocks", default="2,2,1,0", help="AutoencoderTiny blocks per stage")
    p.add_argument("--crop", type=int, default=8, help="latent crop side while training (0: whole)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    import torch

    torch.set_num_threads(args.threads)
    model = Path(args.model)
    blocks = tuple(int(b) for b in str(args.blocks).split(","))
    t0 = time.time()
    data = make_data(model, Path(args.work), args.scenes, args.runs, args.seed)
    t_data = time.time() - t0
    dec = train(data, args.width, blocks, args.iters, args.batch, args.seed, args.crop)
    held = levels(dec, data["held_latents"], data["held_images"])
    meta = {
        "teacher": "the model's VAE decoder",
        "latents": int(len(data["latents"])),
        "iters": args.iters,
        "batch": args.batch,
        "crop": args.crop,
        "seed": args.seed,
        "held_out_levels": round(held, 2),
        "seconds": round(time.time() - t0),
        "data_seconds": round(t_data),
    }
    out = save(dec, Path(args.out) if args.out else model / "preview_decoder", args.width, blocks, meta)
    print(json.dumps({"out": str(out), **meta}))
    return 0
