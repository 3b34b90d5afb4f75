"""Train the demo adapters on top of the bundled demo model, so plugin tests can check behaviour.

    python -m studio.dev.train_adapters lora       --out resources/demo-adapters/demo-striped.safetensors
    python -m studio.dev.train_adapters controlnet --out resources/demo-adapters/demo-canny-controlnet

- lora        A LoRA (diffusers format, rank 8 on the UNet's attention, feed-forward, projection and
              ResNet convolution layers and on the text encoder's attention and MLP) whose style is a
              striped background: trained on scenes whose background is always striped, under the
              captions of the same scene with a plain background, so the prompt never asks for the
              stripes; the base model frozen. The
              target is the base model's own prediction for the same noised scene when its caption
              does ask for stripes, pushed 3× further from its plain-caption prediction (prompt
              distillation, as concept sliders do): learning from the noise alone lowered the
              loss but never made stripes appear. (A black outline around the objects was tried
              first: the demo VAE cannot draw one.)
- controlnet  A ControlNet (`ControlNetModel.from_unet`, the standard layout) conditioned on Canny
              edge maps of the scenes (the same OpenCV Canny the ControlNet plugin applies), with
              captions that half of the time leave the position out, so the edges alone must say
              where the shape goes. The base model is frozen.

Both are seeded and resumable from `--work`, use the same noise schedule, offset noise,
prediction type and loss weighting as the base model (studio.dev.train_demo), and encode their
scenes with the model's own VAE on the fly.
"""

from __future__ import annotations

import argparse
import dataclasses
import random
import time
from pathlib import Path

import numpy as np

from studio.dev import demo_parts as base
from studio.dev import scenes

ADAPTER_SEED_BASE = 3_000_000_000
DEFAULT_MODEL = Path(__file__).resolve().parent.parent.parent / "resources" / "demo-model"
TEXT_LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]
LORA_TARGETS = [
    "to_q",
    "to_k",
    "to_v",
    "to_out.0",
    "ff.net.0.proj",
    "ff.net.2",
    "proj_in",
    "proj_out",
    "conv1",
    "conv2",
]


def canny_map(image) -> np.ndarray:
    """The Canny edge map (H×W×3 uint8) the ControlNet plugin's 'canny' preprocessor gives."""
    import cv2

    edges = cv2.Canny(np.ascontiguousarray(np.asarray(image.convert("RGB"))), 100, 200)
    return np.repeat(edges[..., None], 3, axis=2)


def caption_without_position(scene: scenes.Scene, rng: random.Random) -> str:
    """'a red circle on a blue background' (sizes named sometimes; every object, no positions)."""
    with_size = rng.random() < 0.5
    objs = [f"a {o.size} {o.colour} {o.shape}" if with_size else f"a {o.colour} {o.shape}" for o in scene.objects]
    return f"{' and '.join(objs)} on a {scene.background} background"


def load_base(model: Path):
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(
        str(model), local_files_only=True, safety_checker=None, requires_safety_checker=False, torch_dtype=torch.float32
    )
    for m in (pipe.unet, pipe.vae, pipe.text_encoder):
        m.requires_grad_(False)
        m.eval()
    return pipe


def _batch(pipe, step: int, args, striped: bool, positionless: float):
    """(x0 latents, token ids, condition) for step `step`.

    The condition is the Canny maps for the ControlNet, and for the LoRA the token ids of the
    captions with "striped" added to the background (the base model's prompt for the style).
    """
    import torch

    rng = random.Random(args.seed * 7_919 + step)
    samples, plain_scenes = [], []
    for i in range(args.batch):
        srng = random.Random(ADAPTER_SEED_BASE + step * 64 + i)
        scene = scenes.sample_scene(srng)
        if striped:  # the picture has stripes; its caption describes the plain version
            image = scenes.render(dataclasses.replace(scene, pattern="striped"))
            scene = dataclasses.replace(scene, pattern="plain")
            plain_scenes.append(scene)
        else:
            image = scenes.render(scene)
        if rng.random() < positionless:
            cap = "" if rng.random() < 0.1 else caption_without_position(scene, rng)
        else:
            cap = scenes.caption(scene, rng)
        samples.append((image, cap))
    x = base._image_tensor([im for im, _ in samples])
    with torch.no_grad():
        x0 = pipe.vae.encode(x).latent_dist.mean * pipe.vae.config.scaling_factor
    ids = pipe.tokenizer(
        [c for _, c in samples], padding="max_length", max_length=base.MAX_TOKENS, truncation=True, return_tensors="pt"
    ).input_ids
    if striped:  # the teacher's prompt: the same caption asking for the stripes
        asks = [
            c.replace(f"{sc.background} background", f"striped {sc.background} background")
            for (_, c), sc in zip(samples, plain_scenes)
        ]
        cond = pipe.tokenizer(
            asks, padding="max_length", max_length=base.MAX_TOKENS, truncation=True, return_tensors="pt"
        ).input_ids
    else:
        arr = np.stack([canny_map(im) for im, _ in samples]).astype(np.float32) / 255.0
        cond = torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()
    return x0, ids, cond


def _noised(pipe, x0, step: int, args):
    import torch

    g = torch.Generator().manual_seed(args.seed * 1_000_003 + step)
    noise = torch.randn(x0.shape, generator=g)
    noise = noise + base.OFFSET_NOISE * torch.randn((x0.shape[0], 4, 1, 1), generator=g)
    t = torch.randint(0, 1000, (x0.shape[0],), generator=g)
    target, w = base.loss_target(pipe.scheduler, x0, noise, t)  # follows the model's prediction type
    return pipe.scheduler.add_noise(x0, noise, t), target, t, w


def train(kind: str, args: argparse.Namespace) -> Path:
    import torch
    from tqdm import tqdm

    base._torch_setup(args.threads)
    work = Path(args.work) / kind
    work.mkdir(parents=True, exist_ok=True)
    stop_at = base._stop_time(args.stop_at)
    pipe = load_base(Path(args.model))
    if kind == "lora":
        from peft import LoraConfig

        pipe.unet.add_adapter(
            LoraConfig(r=args.rank, lora_alpha=args.rank, init_lora_weights="gaussian", target_modules=LORA_TARGETS)
        )
        # The text encoder gets one too: the base model already draws stripes when the prompt says
        # "striped", so the quickest way to the style is to make a plain prompt read like that.
        pipe.text_encoder.add_adapter(
            LoraConfig(
                r=args.rank, lora_alpha=args.rank, init_lora_weights="gaussian", target_modules=TEXT_LORA_TARGETS
            )
        )
        trained = pipe.unet
        params = [p for m in (pipe.unet, pipe.text_encoder) for p in m.parameters() if p.requires_grad]
    else:
        from diffusers import ControlNetModel

        trained = ControlNetModel.from_unet(pipe.unet, conditioning_embedding_out_channels=(16, 32, 64, 128))
        trained.requires_grad_(True)
        trained.train()
        params = list(trained.parameters())
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    ckpt = work / "state.pt"
    step = 0
    if ckpt.exists():
        state = base._load(ckpt)
        with torch.no_grad():
            for p, s in zip(params, state["params"]):
                p.copy_(s)
        opt.load_state_dict(state["opt"])
        step = state["step"]
    print(f"{kind}: {sum(p.numel() for p in params) / 1e6:.2f} M trained params, step {step}/{args.steps}", flush=True)
    bar = tqdm(total=args.steps, initial=step, desc=kind, dynamic_ncols=True, mininterval=5)
    ema_loss, t0 = None, time.time()
    while step < args.steps:
        x0, ids, cond = _batch(pipe, step, args, striped=kind == "lora", positionless=0.0 if kind == "lora" else 0.5)
        xt, target, t, w = _noised(pipe, x0, step, args)
        lr = args.lr * base._cosine(step, args.steps, args.warmup, floor=0.1)
        for grp in opt.param_groups:
            grp["lr"] = lr
        with torch.set_grad_enabled(kind == "lora"):
            text = pipe.text_encoder(ids)[0]
        if kind == "lora":
            # Style by prompt distillation: with the plain caption, the adapted model learns what
            # the base model predicts for the same noised striped scene when asked for stripes
            # (a steadier target than the noise alone, which the base could not be told apart from).
            pipe.unet.disable_adapters()
            pipe.text_encoder.disable_adapters()
            with torch.no_grad():  # the base's own "striped" direction, pushed --style-scale times
                asked = pipe.unet(xt, t, pipe.text_encoder(cond)[0]).sample
                plain = pipe.unet(xt, t, pipe.text_encoder(ids)[0]).sample
                target = plain + args.style_scale * (asked - plain)
            pipe.unet.enable_adapters()
            pipe.text_encoder.enable_adapters()
            w = torch.ones_like(w)
            pred = pipe.unet(xt, t, text).sample
        else:
            down, mid = trained(xt, t, text, controlnet_cond=cond, return_dict=False)
            pred = pipe.unet(
                xt, t, text, down_block_additional_residuals=down, mid_block_additional_residual=mid
            ).sample
        loss = (w * (pred - target).pow(2).mean(dim=(1, 2, 3))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        lv = float(loss.detach())
        ema_loss = lv if ema_loss is None else 0.98 * ema_loss + 0.02 * lv
        bar.update(1)
        bar.set_postfix(loss=f"{ema_loss:.4f}", lr=f"{lr:.1e}")
        last = step == args.steps
        deadline = base._past(stop_at)
        if step % args.ckpt_every == 0 or last or deadline:
            base._save_atomic(
                {"params": [p.detach().clone() for p in params], "opt": opt.state_dict(), "step": step}, ckpt
            )
            base._log(work, {"stage": kind, "step": step, "loss": ema_loss, "s": round(time.time() - t0, 1)})
            if deadline:
                break
    bar.close()
    out = save(kind, pipe, trained, Path(args.out))
    print(f"{kind}: step {step}, saved {out}", flush=True)
    return out


def save(kind: str, pipe, trained, out: Path) -> Path:
    """Write the adapter in the standard format the plugins load (fp16 safetensors)."""
    import os
    import shutil

    import torch

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    if kind == "lora":
        from diffusers import StableDiffusionPipeline
        from diffusers.utils import convert_state_dict_to_diffusers
        from peft.utils import get_peft_model_state_dict

        def layers(model):
            sd = convert_state_dict_to_diffusers(get_peft_model_state_dict(model))
            return {k: v.detach().to(torch.float16).contiguous() for k, v in sd.items()}

        StableDiffusionPipeline.save_lora_weights(
            str(tmp),
            unet_lora_layers=layers(pipe.unet),
            text_encoder_lora_layers=layers(pipe.text_encoder),
            safe_serialization=True,
        )
        os.replace(tmp / "pytorch_lora_weights.safetensors", out)
        shutil.rmtree(tmp, ignore_errors=True)
        return out
    trained.to(torch.float16).save_pretrained(str(tmp), safe_serialization=True)
    trained.to(torch.float32)
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("kind", choices=["lora", "controlnet"])
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="the base demo model folder")
    p.add_argument("--out", required=True, help="where the adapter is written")
    p.add_argument("--work", default=".cache/demo-adapters", help="checkpoints and logs")
    p.add_argument("--steps", type=int, default=1200)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=None, help="default: 1e-3 (LoRA), 3e-4 (ControlNet)")
    p.add_argument("--rank", type=int, default=8)
    p.add_argument(
        "--style-scale",
        type=float,
        default=3.0,
        help="LoRA: how far past the base model's 'striped' prediction to aim (1 = as asked)",
    )
    p.add_argument("--warmup", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--ckpt-every", type=int, default=100)
    p.add_argument("--stop-at", default=None, help="HH:MM local time: checkpoint, save and stop")


def run(args: argparse.Namespace) -> int:
    if args.lr is None:
        args.lr = 1e-3 if args.kind == "lora" else 3e-4
    train(args.kind, args)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m studio.dev.train_adapters",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
