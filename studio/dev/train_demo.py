"""Train the bundled demo model from scratch on procedural scenes (see studio.dev.scenes).

    python -m studio.dev.train_demo --work .cache/demo-train --export resources/demo-model

Stages, each resumable from its checkpoint in --work:
  1. vae     AutoencoderKL (8×, 4 latent channels, one GroupNorm group) on 64² crops, then full 128².
             Optional: an edge term (--vae-edge), crops around objects (--vae-object-crops), and
             latents kept near a teacher VAE's (--vae-teacher/--vae-align) so a UNet trained on
             the teacher's latents carries over.
  2. latents Posterior *means* of a fixed set of training scenes; scaling_factor = 1 / their std.
  3. unet    UNet2DConditionModel + CLIPTextModel (real 49,408-token vocabulary) jointly on the latents:
             v prediction (demo_parts.PREDICTION), offset noise, SNR weighting, warm-up + cosine LR, EMA;
             from scratch or from an exported model (--init-from).
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
import datetime as _dt
import json
import os
import random
import time
from pathlib import Path

from studio.dev import scenes
from studio.dev.eval_demo import round_trip_scores
from studio.dev.demo_parts import (
    IMAGE_SIZE,
    MAX_TOKENS,
    OFFSET_NOISE,
    VAE_SEED_BASE,
    VAE_WIDTHS,
    LATENT_SEED_BASE,
    build_vae,
    build_unet,
    build_text_encoder,
    build_tokenizer,
    _make_scheduler,
    count_params,
    _torch_setup,
    _image_tensor,
    _save_atomic,
    _load,
    _past,
    _cosine,
    _log,
    loss_target,
)

# ---------------------------------------------------------------------------------------------
# Stage 1: the autoencoder


def palette_kept(vae, n: int = 32, seed: int = 7) -> tuple[float, float]:
    """(mean L1, fraction of pixels whose nearest palette colour survives a round trip)."""
    import torch

    samples = [scenes.make_sample(seed * 100_003 + i) for i in range(n)]
    x = _image_tensor([s.image for s in samples])
    with torch.no_grad():
        y = vae.decode(vae.encode(x).latent_dist.mean).sample.clamp(-1, 1)
    l1 = float((y - x).abs().mean())
    a = ((x.permute(0, 2, 3, 1).numpy() + 1) * 127.5).reshape(-1, IMAGE_SIZE, 3)
    b = ((y.permute(0, 2, 3, 1).numpy() + 1) * 127.5).reshape(-1, IMAGE_SIZE, 3)
    kept = float((scenes.classify_pixels(a) == scenes.classify_pixels(b)).mean())
    return l1, kept


def _edge_l1(y, x):
    """L1 between the horizontal and vertical pixel differences of y and x.

    Plain L1 is dominated by flat areas; this term counts only where the picture changes, so a
    star's points and a cross's arms weigh as much as the background around them.
    """
    return ((y[..., :, 1:] - y[..., :, :-1]) - (x[..., :, 1:] - x[..., :, :-1])).abs().mean() + (
        (y[..., 1:, :] - y[..., :-1, :]) - (x[..., 1:, :] - x[..., :-1, :])).abs().mean()


def load_teacher(path: str | Path):
    """A trained VAE (a diffusers `vae` folder, or a model folder holding one) and its latent std.

    A new VAE trained with --vae-align keeps its latents near this one's, so a UNet trained on the
    teacher's latents starts out right on the new ones and only has to learn what the new VAE adds.
    """
    from diffusers import AutoencoderKL

    path = Path(path)
    if (path / "vae").is_dir():
        path = path / "vae"
    vae = AutoencoderKL.from_pretrained(str(path), local_files_only=True).float().eval()
    for p in vae.parameters():
        p.requires_grad_(False)
    return vae, 1.0 / float(vae.config.scaling_factor)


def _near_object(sample: scenes.Sample, rng: random.Random, side: int) -> tuple[int, int]:
    """Top-left pixel of a side×side window around one of the sample's objects (±14 px jitter)."""
    obj = rng.choice(sample.scene.objects)
    row, col = divmod(scenes.POSITIONS.index(obj.position), 3)
    hi = IMAGE_SIZE - side
    return tuple(min(hi, max(0, int(scenes.GRID[i] * IMAGE_SIZE - side / 2 + rng.uniform(-14, 14))))
                 for i in (col, row))


def _crop64(sample: scenes.Sample, rng: random.Random, object_rate: float):
    """A 64² crop of the sample's image: anywhere, or (at object_rate) around one of its objects.

    Random crops of scenes with one object are mostly flat background; crops around an object
    spend the training on the edges and corners the detector reads.
    """
    if sample.scene.objects and rng.random() < object_rate:
        ox, oy = _near_object(sample, rng, 64)
    else:
        ox, oy = rng.randrange(0, IMAGE_SIZE - 63), rng.randrange(0, IMAGE_SIZE - 63)
    return sample.image.crop((ox, oy, ox + 64, oy + 64))


def train_vae(args, work: Path, stop_at) -> bool:
    import torch
    from tqdm import tqdm

    ckpt = work / "vae.pt"
    widths = tuple(args.vae_widths)
    if ckpt.exists():  # a resumed run keeps the widths it was started with
        widths = tuple(_load(ckpt).get("widths", VAE_WIDTHS))
    vae = build_vae(widths)
    opt = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
    total = args.vae_steps_64 + args.vae_steps_128
    step = 0
    if ckpt.exists():
        state = _load(ckpt)
        vae.load_state_dict(state["vae"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
    if step >= total:
        return True
    teacher = None
    if args.vae_teacher and args.vae_align:
        teacher, teacher_std = load_teacher(args.vae_teacher)
    print(f"vae: {count_params(vae) / 1e6:.2f} M params, step {step}/{total}", flush=True)
    vae.train()
    bar = tqdm(total=total, initial=step, desc="vae", dynamic_ncols=True, mininterval=5)
    ema_loss = None
    t0 = time.time()
    while step < total:
        full = step >= args.vae_steps_64
        bs = args.vae_batch_128 if full else args.vae_batch_64
        rng = random.Random(args.seed * 7919 + step)
        samples = [scenes.make_sample(VAE_SEED_BASE + step * 64 + i) for i in range(bs)]
        ims = [s.image for s in samples]
        if not full:  # 64² crops keep the scale of the shapes and cost a quarter
            ims = [_crop64(s, rng, args.vae_object_crops) for s in samples]
        x = _image_tensor(ims)
        lr = args.vae_lr * _cosine(step, total, 50, floor=0.1)
        for g in opt.param_groups:
            g["lr"] = lr
        gen = torch.Generator().manual_seed(args.seed * 31 + step)
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
        y = vae.decode(z).sample
        rec = (y - x).abs().mean()
        kl = 0.5 * (post.mean.pow(2) + post.var - 1.0 - post.logvar).mean()
        loss = rec + args.vae_kl * kl
        if args.vae_edge:
            loss = loss + args.vae_edge * _edge_l1(y, x)
        align = torch.zeros(())
        if teacher is not None:
            with torch.no_grad():
                target = teacher.encode(x).latent_dist.mean
            align = ((post.mean - target) / teacher_std).pow(2).mean()
            loss = loss + args.vae_align * align
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        step += 1
        r = float(rec.detach())
        ema_loss = r if ema_loss is None else 0.95 * ema_loss + 0.05 * r
        bar.update(1)
        bar.set_postfix(l1=f"{ema_loss:.4f}", kl=f"{float(kl.detach()):.2f}", align=f"{float(align.detach()):.4f}",
                        lr=f"{lr:.1e}")
        last = step == total
        if step % args.ckpt_every == 0 or last or _past(stop_at):
            _save_atomic({"vae": vae.state_dict(), "opt": opt.state_dict(), "step": step,
                          "widths": widths}, ckpt)
            _log(work, {"stage": "vae", "step": step, "l1": ema_loss, "align": float(align.detach()),
                        "s": time.time() - t0})
            if _past(stop_at) and not last:
                bar.close()
                print("vae: stopped at the deadline", flush=True)
                return False
    bar.close()
    vae.eval()
    l1, kept = palette_kept(vae)
    ceiling = round_trip_scores(vae)
    print(f"vae: done, round-trip L1 {l1:.4f}, palette kept {kept * 100:.1f} %, "
          f"detector on round trips of the eval scenes {ceiling}", flush=True)
    _log(work, {"stage": "vae-eval", "l1": l1, "palette_kept": kept, "round_trip": ceiling})
    return True


def load_vae(work: Path, decoder: bool = False):
    """The trained autoencoder; with decoder=True, with the fine-tuned decoder if there is one."""
    state = _load(work / "vae.pt")
    vae = build_vae(tuple(state.get("widths", VAE_WIDTHS)))
    vae.load_state_dict(state["vae"])
    if decoder and (work / "decoder.pt").exists():
        vae.load_state_dict(_load(work / "decoder.pt")["vae"])
    vae.eval()
    return vae


def _latent_box(sample: scenes.Sample, rng: random.Random) -> tuple[int, int]:
    """(x, y) latent offset of an 8×8 window (64² pixels) around one of the sample's objects."""
    if not sample.scene.objects:
        hi = IMAGE_SIZE // 8 - 8
        return rng.randrange(0, hi + 1), rng.randrange(0, hi + 1)
    ox, oy = _near_object(sample, rng, 64)
    return ox // 8, oy // 8


def train_decoder(args, work: Path, stop_at) -> bool:
    """Fine-tune the decoder alone at 128² with the encoder frozen.

    The latents the UNet learns from stay valid, so this can run beside the UNet stage.
    """
    import torch
    from tqdm import tqdm

    ckpt = work / "decoder.pt"
    vae = load_vae(work)
    for p in vae.encoder.parameters():
        p.requires_grad_(False)
    for p in vae.quant_conv.parameters():
        p.requires_grad_(False)
    params = [p for p in vae.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.decoder_lr, weight_decay=0.0)
    step, total = 0, args.decoder_steps
    if ckpt.exists():
        state = _load(ckpt)
        vae.load_state_dict(state["vae"])
        opt.load_state_dict(state["opt"])
        step = state["step"]
    if step >= total:
        return True
    vae.decoder.train()
    bar = tqdm(total=total, initial=step, desc="decoder", dynamic_ncols=True, mininterval=5)
    ema_loss = None
    t0 = time.time()
    while step < total:
        cropped = step < args.decoder_crop_steps
        bs = args.vae_batch_64 if cropped else args.vae_batch_128
        samples = [scenes.make_sample(VAE_SEED_BASE // 2 + step * 64 + i) for i in range(bs)]
        x = _image_tensor([s.image for s in samples])
        gen = torch.Generator().manual_seed(args.seed * 17 + step)
        with torch.no_grad():
            post = vae.encode(x).latent_dist
            # a little noise so the decoder forgives a UNet that lands near, not on, a mean
            z = post.mean + args.decoder_noise * post.mean.std() * torch.randn(post.mean.shape,
                                                                                generator=gen)
        if cropped:  # 8×8 latents around an object and their 64² pixels: a quarter of the cost
            rng = random.Random(args.seed * 7919 + step)
            boxes = [_latent_box(s, rng) for s in samples]
            z = torch.stack([z[i, :, ly:ly + 8, lx:lx + 8] for i, (lx, ly) in enumerate(boxes)])
            x = torch.stack([x[i, :, ly * 8:ly * 8 + 64, lx * 8:lx * 8 + 64]
                             for i, (lx, ly) in enumerate(boxes)])
        lr = args.decoder_lr * _cosine(step, total, 20, floor=0.1)
        for g in opt.param_groups:
            g["lr"] = lr
        y = vae.decode(z).sample
        rec = (y - x).abs().mean()
        loss = rec + args.vae_edge * _edge_l1(y, x) if args.vae_edge else rec
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        r = float(rec.detach())
        ema_loss = r if ema_loss is None else 0.95 * ema_loss + 0.05 * r
        bar.update(1)
        bar.set_postfix(l1=f"{ema_loss:.4f}", lr=f"{lr:.1e}")
        last = step == total
        if step % args.ckpt_every == 0 or last or _past(stop_at):
            _save_atomic({"vae": vae.state_dict(), "opt": opt.state_dict(), "step": step}, ckpt)
            _log(work, {"stage": "decoder", "step": step, "l1": ema_loss, "s": time.time() - t0})
            if _past(stop_at) and not last:
                break
    bar.close()
    vae.eval()
    l1, kept = palette_kept(vae)
    ceiling = round_trip_scores(vae)
    print(f"decoder: step {step}, round-trip L1 {l1:.4f}, palette kept {kept * 100:.1f} %, "
          f"detector on round trips of the eval scenes {ceiling}", flush=True)
    _log(work, {"stage": "decoder-eval", "step": step, "l1": l1, "palette_kept": kept,
                "round_trip": ceiling})
    return step >= total


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
    print(f"latents: {tuple(lat.shape)}, mean {record['mean']:.3f}, std {std:.3f}, "
          f"scaling_factor {1 / std:.3f}", flush=True)


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


def init_from_export(folder: Path, unet, te) -> int:
    """Load an exported model's UNet and text encoder weights (its EMA weights) into unet and te.

    Returns the UNet step the export was made at (training_step.txt), where training goes on.
    """
    from safetensors.torch import load_file

    unet.load_state_dict({k: v.float() for k, v in
                          load_file(str(folder / "unet" / "diffusion_pytorch_model.safetensors")).items()})
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
    print(f"unet: {count_params(unet) / 1e6:.2f} M + text encoder {count_params(te) / 1e6:.2f} M "
          f"params, {n} scenes, scaling_factor {scale:.3f}, step {step}/{total}", flush=True)
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
    base = args.schedule_from if args.schedule_from is not None else 0
    while step < total:
        g = torch.Generator().manual_seed(args.seed * 1_000_003 + step)
        idx = torch.randint(0, n, (bs,), generator=g)
        if n_single:
            pick = torch.randint(0, len(singles), (n_single,), generator=g)
            idx[:n_single] = singles[pick]
        crng = random.Random(args.seed * 7_777_777 + step)
        caps = [scenes.caption(scene_of(int(i)), crng, canonical_rate=args.canonical_rate)
                for i in idx]
        ids = tok(caps, padding="max_length", max_length=MAX_TOKENS, truncation=True,
                  return_tensors="pt").input_ids
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
            state = {"unet": unet.state_dict(), "te": te.state_dict(), "opt": opt.state_dict(),
                     "ema": ema, "step": step}
            _save_atomic(state, ckpt)
            _log(work, {"stage": "unet", "step": step, "loss": ema_loss,
                        "s": round(time.time() - t0, 1)})
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
    cls = {"ddim": DDIMScheduler, "dpm": DPMSolverMultistepScheduler,
           "euler": EulerDiscreteScheduler}[scheduler]
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
    p.add_argument("--vae-widths", type=int, nargs=4, default=list(VAE_WIDTHS),
                   help="the VAE's block widths (a new run only; a resumed one keeps its own)")
    p.add_argument("--vae-steps-64", type=int, default=700)
    p.add_argument("--vae-steps-128", type=int, default=120)
    p.add_argument("--vae-batch-64", type=int, default=16)
    p.add_argument("--vae-batch-128", type=int, default=8)
    p.add_argument("--vae-lr", type=float, default=2e-3)
    p.add_argument("--vae-kl", type=float, default=1e-4)
    p.add_argument("--vae-object-crops", type=float, default=0.0,
                   help="fraction of the 64² crops centred (with jitter) on an object")
    p.add_argument("--vae-edge", type=float, default=0.0,
                   help="weight of the L1 on pixel differences (sharp edges, a star's points)")
    p.add_argument("--vae-teacher", default=None,
                   help="a trained VAE (or model folder) whose latents the new VAE stays near")
    p.add_argument("--vae-align", type=float, default=0.0,
                   help="weight of the squared distance to the teacher's latents, in its latent std")
    p.add_argument("--decoder-steps", type=int, default=2000)
    p.add_argument("--decoder-lr", type=float, default=5e-4)
    p.add_argument("--decoder-crop-steps", type=int, default=0,
                   help="the first N decoder steps decode 8×8 latent crops around objects (64² pixels)")
    p.add_argument("--decoder-noise", type=float, default=0.1,
                   help="noise added to the latents the decoder learns from, in their std")
    p.add_argument("--n-scenes", type=int, default=24_000)
    p.add_argument("--unet-steps", type=int, default=7000)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-4)
    p.add_argument("--warmup", type=int, default=200)
    p.add_argument("--schedule-from", type=int, default=None,
                   help="restart warm-up + cosine at this UNet step (continuing a finished run)")
    p.add_argument("--reset-ema", action="store_true", help="restart the EMA from the resumed weights")
    p.add_argument("--init-from", default=None,
                   help="with no UNet checkpoint in --work yet: start from this exported model's "
                        "UNet and text encoder (and its training step)")
    p.add_argument("--single-rate", type=float, default=0.0,
                   help="fraction of each UNet batch drawn from single-object scenes")
    p.add_argument("--canonical-rate", type=float, default=0.0,
                   help="fraction of captions in the evaluation's canonical phrasing")
    p.add_argument("--high-noise-rate", type=float, default=0.0,
                   help="fraction of timesteps drawn from the upper 60 %% of the schedule")
    p.add_argument("--ema", type=float, default=0.999)
    p.add_argument("--ckpt-every", type=int, default=100)
    p.add_argument("--export-every", type=int, default=500)
    p.add_argument("--scheduler", default="ddim", choices=["ddim", "dpm", "euler"])


def run(args: argparse.Namespace) -> int:
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    _torch_setup(args.threads)
    stop_at = None
    if args.stop_at:
        hh, mm = map(int, args.stop_at.split(":"))
        stop_at = _dt.datetime.now().replace(hour=hh, minute=mm, second=0, microsecond=0)
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
    p = argparse.ArgumentParser(prog="python -m studio.dev.train_demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
