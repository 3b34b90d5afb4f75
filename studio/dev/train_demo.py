"""Train the bundled demo model from scratch on procedural scenes (see studio.dev.scenes).

    python -m studio.dev.train_demo --work .cache/demo-train --export resources/demo-model

Stages, each resumable from its checkpoint in --work (the VAE and decoder stages are in
studio.dev.train_vae):
  1. vae     AutoencoderKL (8×, 4 latent channels, one GroupNorm group) on 64² crops, then full 128².
             Optional: an edge term (--vae-edge), crops around objects (--vae-object-crops), and
             latents kept near a teacher VAE's (--vae-teacher/--vae-align) so a UNet trained on
             the teacher's latents carries over.
  2. latents Posterior *means* of a fixed set of training scenes; scaling_factor = 1 / their std.
  3. unet    UNet2DConditionModel + CLIPTextModel (real 49,408-token vocabulary) jointly on the latents:
             v prediction (demo_parts.PREDICTION), offset noise, SNR weighting, warm-up + cosine LR, EMA;
             from scratch or from an exported model (--init-from); --focus trains more on the
             combinations an `eval-demo --prompts training` run got wrong.
  +  decoder (optional, may run beside the unet stage) the decoder alone fine-tuned at 128²
             with the encoder frozen, so the latents stay valid (--decoder-crop-steps: first on
             latent crops around objects).
The shipped model's exact commands are in resources/demo-model/README.md (Recipe).
  4. export  A standard diffusers StableDiffusionPipeline folder with fp16 safetensors.

Every random draw is seeded from (--seed, step), so a run resumed from a checkpoint continues with
the same batches it would have seen. `--stop-at HH:MM` checkpoints and stops at a wall-clock time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time
from pathlib import Path

from studio.dev import scenes
from studio.dev.demo_parts import (
    LATENT_SEED_BASE,
    MAX_TOKENS,
    OFFSET_NOISE,
    VAE_WIDTHS,
    _cosine,
    _image_tensor,
    _load,
    _log,
    _make_scheduler,
    _past,
    _save_atomic,
    _stop_time,
    _torch_setup,
    build_text_encoder,
    build_tokenizer,
    build_unet,
    count_params,
    loss_target,
)
from studio.dev.train_vae import load_vae, train_decoder, train_vae

# ---------------------------------------------------------------------------------------------
# Stage 2: latents of the training scenes


def encode_latents(args, work: Path) -> None:
    import torch
    from tqdm import tqdm

    out = work / "latents.pt"
    if out.exists() and _load(out)["n"] == args.n_scenes:
        return
    vae = load_vae(work)
    partial = work / "latents.partial.pt"
    chunks, done = [], 0
    if partial.exists():
        state = _load(partial)
        chunks, done = state["chunks"], state["done"]
    bs = 64
    bar = tqdm(total=args.n_scenes, initial=done, desc="latents", dynamic_ncols=True, mininterval=5)
    with torch.no_grad():
        while done < args.n_scenes:
            n = min(bs, args.n_scenes - done)
            ims = [scenes.make_sample(LATENT_SEED_BASE + done + i).image for i in range(n)]
            mean = vae.encode(_image_tensor(ims)).latent_dist.mean
            chunks.append(mean.half())
            done += n
            bar.update(n)
            if len(chunks) % 40 == 0:
                _save_atomic({"chunks": chunks, "done": done}, partial)
    bar.close()
    lat = torch.cat(chunks)
    std = float(lat.float().std())
    record = {"n": args.n_scenes, "latents": lat, "std": std, "mean": float(lat.float().mean())}
    _save_atomic(record, out)
    partial.unlink(missing_ok=True)
    print(
        f"latents: {tuple(lat.shape)}, mean {record['mean']:.3f}, std {std:.3f}, scaling_factor {1 / std:.3f}",
        flush=True,
    )


def scene_of(index: int) -> scenes.Scene:
    """The training scene behind latent number `index` (same stream as make_sample)."""
    return scenes.sample_scene(random.Random(LATENT_SEED_BASE + index))


# ---------------------------------------------------------------------------------------------
# Stage 3: UNet + text encoder


def _ema_update(ema: list, params: list, decay: float) -> None:
    import torch

    with torch.no_grad():
        torch._foreach_mul_(ema, decay)
        torch._foreach_add_(ema, [p.detach() for p in params], alpha=1 - decay)


def focus_scenes(results_path: str | Path, singles):
    """(scene indices, sampling weights): the single-object training scenes whose colour–shape–
    background combination an `eval-demo --prompts training --json` run did not always get right,
    weighted by how often it got them wrong (1 − the share right, at the run's first guidance)."""
    import torch

    results = json.loads(Path(results_path).read_text())
    row = next(iter(results["guidance"].values()))
    wrong = {k: 1.0 - v for k, v in row["per_combo"].items() if v < 1.0}
    idx, w = [], []
    for i in singles.tolist():
        scene = scene_of(i)
        miss = wrong.get(scenes.combo_key(scene.objects[0], scene.background))
        if miss:
            idx.append(i)
            w.append(miss)
    if not idx:
        raise ValueError(f"{results_path}: no training scene has a combination that was missed")
    print(f"focus: {len(wrong)} combinations missed at times, {len(idx)} training scenes of them", flush=True)
    return torch.tensor(idx), torch.tensor(w, dtype=torch.float)


def init_from_export(folder: Path, unet, te) -> int:
    """Load an exported model's UNet and text encoder weights (its EMA weights) into unet and te.

    Returns the UNet step the export was made at (training_step.txt), where training goes on.
    """
    from safetensors.torch import load_file

    unet.load_state_dict(
        {k: v.float() for k, v in load_file(str(folder / "unet" / "diffusion_pytorch_model.safetensors")).items()}
    )
    te_state = {k: v.float() for k, v in load_file(str(folder / "text_encoder" / "model.safetensors")).items()}
    missing, unexpected = te.load_state_dict(te_state, strict=False)
    # transformers keeps position_ids as a buffer some versions do not save
    if [k for k in missing if not k.endswith("position_ids")] or unexpected:
        raise ValueError(f"{folder}: text encoder weights do not fit: {missing} {unexpected}")
    step_file = folder / "training_step.txt"
    return int(step_file.read_text().strip()) if step_file.is_file() else 0


def train_unet(args, work: Path, stop_at) -> bool:
    import torch
    from diffusers import DDPMScheduler
    from tqdm import tqdm

    data = _load(work / "latents.pt")
    latents = data["latents"]
    scale = 1.0 / data["std"]
    n = latents.shape[0]
    tok = build_tokenizer()
    torch.manual_seed(args.seed)
    unet, te = build_unet(), build_text_encoder()
    params = [p for m in (unet, te) for p in m.parameters()]
    ema = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01, betas=(0.9, 0.99))
    sched = _make_scheduler(DDPMScheduler)
    ckpt = work / "unet.pt"
    step = 0
    if ckpt.exists():
        state = _load(ckpt)
        unet.load_state_dict(state["unet"])
        te.load_state_dict(state["te"])
        opt.load_state_dict(state["opt"])
        for e, s in zip(ema, state["ema"]):
            e.copy_(s)
        step = state["step"]
        if args.reset_ema:  # e.g. after changing the prediction type: old averages would mislead
            for e, p in zip(ema, params):
                e.copy_(p.detach())
    elif args.init_from:  # continue an exported model (e.g. on the latents of a new VAE)
        step = init_from_export(Path(args.init_from), unet, te)
        for e, p in zip(ema, params):
            e.copy_(p.detach())
    total = args.unet_steps
    if step >= total:
        return True
    print(
        f"unet: {count_params(unet) / 1e6:.2f} M + text encoder {count_params(te) / 1e6:.2f} M "
        f"params, {n} scenes, scaling_factor {scale:.3f}, step {step}/{total}",
        flush=True,
    )
    unet.train()
    te.train()
    bar = tqdm(total=total, initial=step, desc="unet", dynamic_ncols=True, mininterval=5)
    ema_loss = None
    t0 = time.time()
    bs = args.batch
    # Single-object scenes teach shape and position fastest (one caption, one object); the
    # evaluation asks for single objects too. --single-rate of each batch comes from them.
    singles = torch.tensor([i for i in range(n) if len(scene_of(i).objects) == 1])
    n_single = int(round(bs * args.single_rate))
    # --focus: --focus-rate of each batch from the single-object scenes of the combinations an
    # `eval-demo --prompts training` run got wrong, each as often as it was wrong.
    focus, focus_w = focus_scenes(args.focus, singles) if args.focus else (None, None)
    n_focus = int(round(bs * args.focus_rate)) if focus is not None else 0
    base = args.schedule_from if args.schedule_from is not None else 0
    while step < total:
        g = torch.Generator().manual_seed(args.seed * 1_000_003 + step)
        idx = torch.randint(0, n, (bs,), generator=g)
        if n_single:
            pick = torch.randint(0, len(singles), (n_single,), generator=g)
            idx[:n_single] = singles[pick]
        if n_focus and focus is not None and focus_w is not None:
            idx[:n_focus] = focus[torch.multinomial(focus_w, n_focus, replacement=True, generator=g)]
        crng = random.Random(args.seed * 7_777_777 + step)
        caps = [
            scenes.caption(scene_of(int(i)), crng, empty_rate=args.empty_rate, canonical_rate=args.canonical_rate)
            for i in idx
        ]
        ids = tok(caps, padding="max_length", max_length=MAX_TOKENS, truncation=True, return_tensors="pt").input_ids
        x0 = latents[idx].float() * scale
        noise = torch.randn(x0.shape, generator=g)
        noise = noise + OFFSET_NOISE * torch.randn((bs, 4, 1, 1), generator=g)
        t = torch.randint(0, 1000, (bs,), generator=g)
        # Layout (shape, position) is decided at high noise: --high-noise-rate of the batch
        # draws its timestep from the upper 60 % of the schedule.
        high = torch.rand(bs, generator=g) < args.high_noise_rate
        t = torch.where(high, torch.randint(400, 1000, (bs,), generator=g), t)
        xt = sched.add_noise(x0, noise, t)
        lr = args.lr * _cosine(step - base, total - base, args.warmup)
        for grp in opt.param_groups:
            grp["lr"] = lr
        cond = te(ids)[0]
        pred = unet(xt, t, cond).sample
        target, w = loss_target(sched, x0, noise, t)
        loss = (w * (pred - target).pow(2).mean(dim=(1, 2, 3))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        _ema_update(ema, params, min(args.ema, (1 + step) / (10 + step)))
        lv = float(loss.detach())
        ema_loss = lv if ema_loss is None else 0.98 * ema_loss + 0.02 * lv
        bar.update(1)
        bar.set_postfix(loss=f"{ema_loss:.4f}", lr=f"{lr:.1e}")
        last = step == total
        if step % args.ckpt_every == 0 or last or _past(stop_at):
            state = {
                "unet": unet.state_dict(),
                "te": te.state_dict(),
                "opt": opt.state_dict(),
                "ema": ema,
                "step": step,
            }
            _save_atomic(state, ckpt)
            _log(work, {"stage": "unet", "step": step, "loss": ema_loss, "s": round(time.time() - t0, 1)})
            if step % args.export_every == 0 or last or _past(stop_at):
                export(args, work, work / "export")
                bar.write(f"unet: step {step}, loss {ema_loss:.4f}, exported to {work / 'export'}")
            if _past(stop_at) and not last:
                bar.close()
                print("unet: stopped at the deadline", flush=True)
                return False
    bar.close()
    return True


# ---------------------------------------------------------------------------------------------
# Stage 4: export


def export(args, work: Path, out: Path, scheduler: str = "ddim") -> Path:
    """Write the EMA weights as a standard diffusers folder with fp16 safetensors."""
    import shutil

    import torch
    from diffusers import (
        DDIMScheduler,
        DPMSolverMultistepScheduler,
        EulerDiscreteScheduler,
        StableDiffusionPipeline,
    )

    state = _load(work / "unet.pt")
    data = _load(work / "latents.pt")
    vae = load_vae(work, decoder=True)
    vae.register_to_config(scaling_factor=round(1.0 / data["std"], 4))
    unet, te = build_unet(), build_text_encoder()
    unet.load_state_dict(state["unet"])
    te.load_state_dict(state["te"])
    params = [p for m in (unet, te) for p in m.parameters()]
    with torch.no_grad():
        for p, e in zip(params, state["ema"]):
            p.copy_(e)
    cls = {"ddim": DDIMScheduler, "dpm": DPMSolverMultistepScheduler, "euler": EulerDiscreteScheduler}[scheduler]
    pipe = StableDiffusionPipeline(
        vae=vae.half(),
        text_encoder=te.half(),
        tokenizer=build_tokenizer(),
        unet=unet.half(),
        scheduler=_make_scheduler(cls),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp, safe_serialization=True)
    # The weights are stored in fp16, but a plain from_pretrained() must give a pipeline whose parts
    # agree: diffusers loads the UNet and VAE as float32, while transformers would follow the
    # config's dtype for the text encoder and hand fp16 prompt embeddings to an fp32 UNet.
    cfg_path = tmp / "text_encoder" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["dtype"] = "float32"
    cfg_path.write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    (tmp / "training_step.txt").write_text(f"{state['step']}\n")
    keep = out / "README.md"
    if keep.exists():
        shutil.copy2(keep, tmp / "README.md")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


# ---------------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--work", default=".cache/demo-train", help="checkpoints and logs")
    p.add_argument("--export", default=None, help="also write the final pipeline folder here")
    p.add_argument("--stage", default="all", choices=["all", "vae", "latents", "unet", "decoder", "export"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--stop-at", default=None, help="HH:MM local time: checkpoint and stop then")
    p.add_argument(
        "--vae-widths",
        type=int,
        nargs=4,
        default=list(VAE_WIDTHS),
        help="the VAE's block widths (a new run only; a resumed one keeps its own)",
    )
    p.add_argument("--vae-steps-64", type=int, default=700)
    p.add_argument("--vae-steps-128", type=int, default=120)
    p.add_argument("--vae-batch-64", type=int, default=16)
    p.add_argument("--vae-batch-128", type=int, default=8)
    p.add_argument("--vae-lr", type=float, default=2e-3)
    p.add_argument("--vae-kl", type=float, default=1e-4)
    p.add_argument(
        "--vae-object-crops",
        type=float,
        default=0.0,
        help="fraction of the 64² crops centred (with jitter) on an object",
    )
    p.add_argument(
        "--vae-edge",
        type=float,
        default=0.0,
        help="weight of the L1 on pixel differences (sharp edges, a star's points)",
    )
    p.add_argument(
        "--vae-teacher", default=None, help="a trained VAE (or model folder) whose latents the new VAE stays near"
    )
    p.add_argument(
        "--vae-align",
        type=float,
        default=0.0,
        help="weight of the squared distance to the teacher's latents, in its latent std",
    )
    p.add_argument("--decoder-steps", type=int, default=2000)
    p.add_argument("--decoder-lr", type=float, default=5e-4)
    p.add_argument(
        "--decoder-crop-steps",
        type=int,
        default=0,
        help="the first N decoder steps decode 8×8 latent crops around objects (64² pixels)",
    )
    p.add_argument(
        "--decoder-noise",
        type=float,
        default=0.1,
        help="noise added to the latents the decoder learns from, in their std",
    )
    p.add_argument("--n-scenes", type=int, default=24_000)
    p.add_argument("--unet-steps", type=int, default=7000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument(
        "--schedule-from",
        type=int,
        default=None,
        help="restart warm-up + cosine at this UNet step (continuing a finished run)",
    )
    p.add_argument("--reset-ema", action="store_true", help="restart the EMA from the resumed weights")
    p.add_argument(
        "--init-from",
        default=None,
        help="with no UNet checkpoint in --work yet: start from this exported model's "
        "UNet and text encoder (and its training step)",
    )
    p.add_argument(
        "--single-rate", type=float, default=0.0, help="fraction of each UNet batch drawn from single-object scenes"
    )
    p.add_argument(
        "--empty-rate",
        type=float,
        default=scenes.EMPTY_CAPTION_RATE,
        help="fraction of empty captions (the unconditional branch classifier-free guidance uses)",
    )
    p.add_argument(
        "--canonical-rate", type=float, default=0.0, help="fraction of captions in the evaluation's canonical phrasing"
    )
    p.add_argument(
        "--high-noise-rate",
        type=float,
        default=0.0,
        help="fraction of timesteps drawn from the upper 60 %% of the schedule",
    )
    p.add_argument(
        "--focus",
        default=None,
        help="an `eval-demo --prompts training --json` result: train more on the "
        "combinations it got wrong (see --focus-rate)",
    )
    p.add_argument(
        "--focus-rate",
        type=float,
        default=0.25,
        help="with --focus: fraction of each batch from the missed combinations' scenes",
    )
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--ckpt-every", type=int, default=100)
    p.add_argument("--export-every", type=int, default=500)
    p.add_argument("--scheduler", default="ddim", choices=["ddim", "dpm", "euler"])


def run(args: argparse.Namespace) -> int:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    _torch_setup(args.threads)
    stop_at = _stop_time(args.stop_at)
    t0 = time.time()
    stages = ["vae", "latents", "unet"] if args.stage == "all" else [args.stage]
    for stage in stages:
        if stage == "vae" and not train_vae(args, work, stop_at):
            return 3
        if stage == "latents":
            encode_latents(args, work)
        if stage == "unet" and not train_unet(args, work, stop_at):
            break
        if stage == "decoder" and not train_decoder(args, work, stop_at):
            break
    if args.export:
        print(f"exported {export(args, work, Path(args.export), args.scheduler)}", flush=True)
    print(f"done in {time.time() - t0:.0f} s", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m studio.dev.train_demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
