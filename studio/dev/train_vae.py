"""The demo model's autoencoder stages (see studio.dev.train_demo, which runs them).

  vae      AutoencoderKL (8×, 4 latent channels, one GroupNorm group) on 64² crops, then full 128²;
           optional edge term, crops around objects, and latents kept near a teacher VAE's.
  decoder  the decoder alone fine-tuned with the encoder frozen, so the latents stay valid.

Both checkpoint into the work folder and resume from it, seeded from (--seed, step).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

from studio.dev import scenes
from studio.dev.demo_parts import (
    IMAGE_SIZE,
    VAE_SEED_BASE,
    VAE_WIDTHS,
    _cosine,
    _image_tensor,
    _load,
    _log,
    _past,
    _save_atomic,
    build_vae,
    count_params,
)
from studio.dev.eval_demo import round_trip_scores


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
        (y[..., 1:, :] - y[..., :-1, :]) - (x[..., 1:, :] - x[..., :-1, :])
    ).abs().mean()


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
    x, y = (min(hi, max(0, int(scenes.GRID[i] * IMAGE_SIZE - side / 2 + rng.uniform(-14, 14)))) for i in (col, row))
    return x, y


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


def _restore(state: dict | None, vae, opt) -> int:
    """Put a stage checkpoint's weights and optimiser state back; the step it had reached (0: none)."""
    if state is None:
        return 0
    vae.load_state_dict(state["vae"])
    opt.load_state_dict(state["opt"])
    return state["step"]


def train_vae(args, work: Path, stop_at) -> bool:
    import torch
    from tqdm import tqdm

    ckpt = work / "vae.pt"
    state = _load(ckpt) if ckpt.exists() else None
    # a resumed run keeps the widths it was started with
    widths = tuple(state.get("widths", VAE_WIDTHS)) if state else tuple(args.vae_widths)
    vae = build_vae(widths)
    opt = torch.optim.AdamW(vae.parameters(), lr=args.vae_lr, weight_decay=0.0)
    total = args.vae_steps_64 + args.vae_steps_128
    step = _restore(state, vae, opt)
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
        bar.set_postfix(
            l1=f"{ema_loss:.4f}", kl=f"{float(kl.detach()):.2f}", align=f"{float(align.detach()):.4f}", lr=f"{lr:.1e}"
        )
        last = step == total
        if step % args.ckpt_every == 0 or last or _past(stop_at):
            _save_atomic({"vae": vae.state_dict(), "opt": opt.state_dict(), "step": step, "widths": widths}, ckpt)
            _log(
                work,
                {"stage": "vae", "step": step, "l1": ema_loss, "align": float(align.detach()), "s": time.time() - t0},
            )
            if _past(stop_at) and not last:
                bar.close()
                print("vae: stopped at the deadline", flush=True)
                return False
    bar.close()
    vae.eval()
    l1, kept = palette_kept(vae)
    ceiling = round_trip_scores(vae)
    print(
        f"vae: done, round-trip L1 {l1:.4f}, palette kept {kept * 100:.1f} %, "
        f"detector on round trips of the eval scenes {ceiling}",
        flush=True,
    )
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
    total = args.decoder_steps
    step = _restore(_load(ckpt) if ckpt.exists() else None, vae, opt)
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
            z = post.mean + args.decoder_noise * post.mean.std() * torch.randn(post.mean.shape, generator=gen)
        if cropped:  # 8×8 latents around an object and their 64² pixels: a quarter of the cost
            rng = random.Random(args.seed * 7919 + step)
            boxes = [_latent_box(s, rng) for s in samples]
            z = torch.stack([z[i, :, ly : ly + 8, lx : lx + 8] for i, (lx, ly) in enumerate(boxes)])
            x = torch.stack([x[i, :, ly * 8 : ly * 8 + 64, lx * 8 : lx * 8 + 64] for i, (lx, ly) in enumerate(boxes)])
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
    print(
        f"decoder: step {step}, round-trip L1 {l1:.4f}, palette kept {kept * 100:.1f} %, "
        f"detector on round trips of the eval scenes {ceiling}",
        flush=True,
    )
    _log(work, {"stage": "decoder-eval", "step": step, "l1": l1, "palette_kept": kept, "round_trip": ceiling})
    return step >= total
