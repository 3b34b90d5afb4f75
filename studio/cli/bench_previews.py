"""`studio bench previews`: what step previews cost and how near they are to the finished picture.

Cost: the engine's own per-step preview work (`studio.engine.steps.Previews`: the latent in
variance-preserving form, the picture drawn, the latent copied out for scrubbing) for each preview
mode, as a fraction of one step of a full-size randomly initialised SD 1.5 UNet at 512² (a CFG batch
of two), timed interleaved (step, previews, step, …) and taken as medians, so a busy machine slows
both alike. The tiny decoder is the TAESD architecture (diffusers' `AutoencoderTiny`), random
weights: its cost does not depend on them.

Error: the demo model's held-out prompts (`studio.dev.scenes.eval_prompts`) at its recommended
settings through `studio.engine.Engine`, as the window runs them; for each preview mode, the mean
absolute difference in RGB levels (0–255) between the preview at a quarter of the steps, and at the
last step, and the finished picture scaled to the preview's size.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

COST_MODES = ("latent2rgb", "x0", "x0-tiny", "taesd", "vae")
ERROR_MODES = ("x0", "latent2rgb")


def register_bench(bsub: argparse._SubParsersAction) -> None:
    p = bsub.add_parser("previews", help="preview cost per mode (SD 1.5 UNet at 512²) and error (demo model)")
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--repeats", type=int, default=3, help="UNet steps timed (the previews between them)")
    p.add_argument("--prompts", type=int, default=12, help="held-out demo prompts for the error figures (0: none)")
    p.add_argument("--modes", nargs="+", default=list(ERROR_MODES), help="preview modes whose error is measured")
    p.add_argument("--no-vae", action="store_true", help="skip timing the full VAE decode (slow on a CPU)")
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def preview_costs(size: int, repeats: int, with_vae: bool = True) -> dict:
    import torch
    from diffusers import AutoencoderKL, AutoencoderTiny, DPMSolverMultistepScheduler, UNet2DConditionModel

    from studio.core.request import PreviewMode
    from studio.dev.fullsize import FULL_UNETS
    from studio.engine.previews import latent_rgb_factors, make_drawer
    from studio.engine.steps import Previews, SchedulerTap, StepCount
    from studio.engine.tiny_decoders import TinyDecoder

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**FULL_UNETS["sd15"]).eval()
    h = size // 8
    x = torch.randn(2, 4, h, h)
    ctx = torch.randn(2, 77, 768)
    sched = DPMSolverMultistepScheduler(algorithm_type="dpmsolver++")
    sched.set_timesteps(25)
    sched._step_index = 5
    taesd = AutoencoderTiny().eval()
    tiny = TinyDecoder(taesd.decoder, 1.0, 0.0, "TAESD", 4)
    vae = AutoencoderKL(
        block_out_channels=(128, 256, 512, 512),
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        layers_per_block=2,
        latent_channels=4,
        sample_size=size,
    ).eval()
    factors, bias = latent_rgb_factors("sd1")
    modes = {
        "latent2rgb": make_drawer(PreviewMode.LATENT2RGB, None, factors, bias, None, 1, "cpu"),
        "x0": make_drawer(PreviewMode.X0, None, factors, bias, None, 1, "cpu"),
        "x0-tiny": make_drawer(PreviewMode.X0, tiny, factors, bias, None, 1, "cpu"),
        "taesd": make_drawer(PreviewMode.TAESD, tiny, factors, bias, None, 1, "cpu"),
        "vae": make_drawer(PreviewMode.VAE, None, factors, bias, vae, 1, "cpu"),
    }
    if not with_vae:
        modes.pop("vae")
    sink: list = []
    callbacks = {}
    for name, drawer in modes.items():
        tap = SchedulerTap(sched)
        tap.x0 = torch.randn(1, 4, h, h)
        clock = StepCount(0, sched)
        clock.done = 5
        mode = PreviewMode.X0 if name == "x0-tiny" else PreviewMode(name)
        callbacks[name] = Previews(sink.append, tap, clock, drawer=drawer, steps=25, mode=mode)
    latents = torch.randn(1, 4, h, h)
    step_times: list[float] = []
    times: dict[str, list[float]] = {k: [] for k in callbacks}
    sizes: dict[str, list[int]] = {}
    with torch.inference_mode():
        unet(x, 500, encoder_hidden_states=ctx)  # warm-up
        for cb in callbacks.values():
            cb.callback_fn(None, 4, 500, {"latents": latents})
        for r in range(repeats):
            t = time.perf_counter()
            unet(x, 500 - r, encoder_hidden_states=ctx)
            step_times.append(time.perf_counter() - t)
            for name, cb in callbacks.items():
                if name == "vae" and r > 0:
                    continue  # once is enough for the slowest
                t = time.perf_counter()
                cb.callback_fn(None, 4, 500, {"latents": latents})
                times[name].append(time.perf_counter() - t)
                sizes[name] = list(sink[-1].image.shape[:2])
    step_s = statistics.median(step_times)
    return {
        "unet": "SD 1.5, random weights, CFG batch 2",
        "size": size,
        "step_s": round(step_s, 3),
        "preview_s": {k: round(statistics.median(v), 4) for k, v in times.items()},
        "cost_fraction": {k: round(statistics.median(v) / step_s, 4) for k, v in times.items()},
        "preview_size": sizes,
        "default_mode": "x0 (a tiny decoder when there is one: x0-tiny; else linear factors: x0)",
    }


def preview_errors(n_prompts: int, modes: list[str]) -> dict:
    """Mean absolute RGB levels between step previews and the finished picture (demo model)."""
    import numpy as np
    import torch
    from PIL import Image

    from studio.core import recommend
    from studio.core.request import GenerationRequest
    from studio.core.results import StepPreview
    from studio.dev import scenes
    from studio.engine.engine import Engine

    rec = recommend.for_model("demo")
    assert rec is not None
    engine = Engine(device="cpu")
    prompts = [p for _, _, p in scenes.eval_prompts(1)][:n_prompts]
    out: dict = {
        "model": "demo",
        "settings": {"steps": rec.steps, "cfg": rec.cfg, "cfg_end": rec.cfg_end, "scheduler": rec.scheduler},
        "prompts": len(prompts),
    }
    quarter = max(1, round(rec.steps / 4))
    for mode in modes:
        drawer = _drawer_like_the_engine(mode)
        q: list[float] = []
        last: list[float] = []
        drawn: list[float] = []
        label = ""
        for i, prompt in enumerate(prompts):
            req = GenerationRequest.create(
                model="demo", prompt=prompt, steps=rec.steps, guidance_scale=rec.cfg, guidance_end=rec.cfg_end,
                scheduler=rec.scheduler, width=rec.width, height=rec.height, seed=10_000 + i, preview=mode,
            )  # fmt: skip
            seen: dict[int, StepPreview] = {}

            def keep(p: StepPreview, seen: dict[int, StepPreview] = seen) -> None:
                seen.setdefault(p.step, p)

            res = engine.generate(req, on_step=keep)
            final = res.images[0]
            for at, bucket in ((quarter, q), (rec.steps, last)):
                p = seen[at]
                im = np.asarray(p.image, dtype=np.float32)
                ref = Image.fromarray(final).resize((im.shape[1], im.shape[0]), Image.Resampling.BOX)
                bucket.append(float(np.abs(im - np.asarray(ref, dtype=np.float32)).mean()))
            # the last step as the preview decoder draws it (the window shows the decoded picture there)
            if drawer is not None:
                lat = torch.from_numpy(seen[rec.steps].latent)
                im = np.asarray(drawer.draw(rec.steps, rec.steps, lat, lat), dtype=np.float32)
                ref = Image.fromarray(final).resize((im.shape[1], im.shape[0]), Image.Resampling.BOX)
                drawn.append(float(np.abs(im - np.asarray(ref, dtype=np.float32)).mean()))
            label = label or seen[quarter].decoder
        out[mode] = {
            "drawn_by": label,
            "quarter_step": quarter,
            "quarter_levels": round(statistics.mean(q), 2),
            "last_levels": round(statistics.mean(last), 2),
            "last_drawn_levels": round(statistics.mean(drawn), 2) if drawn else None,
            "quarter_worst": round(max(q), 2),
            "last_worst": round(max(last), 2),
        }
    return out


def _drawer_like_the_engine(mode: str):
    """The demo model's preview drawer for `mode`, as `Engine._drawer` makes it (None: the full VAE or none)."""
    from studio.core.paths import demo_model_dir
    from studio.core.request import PreviewMode
    from studio.engine.previews import latent_rgb_factors, make_drawer
    from studio.engine.tiny_decoders import OWN_FOLDER, load_tiny_decoder

    folder = demo_model_dir()
    pm = PreviewMode(mode)
    if pm in (PreviewMode.VAE, PreviewMode.NONE):
        return None
    tiny = load_tiny_decoder(folder / OWN_FOLDER) if pm in (PreviewMode.X0, PreviewMode.TAESD) else None
    factors, bias = latent_rgb_factors("sd1", folder, channels=4)
    return make_drawer(pm, tiny, factors, bias, None, 1, "cpu")


def run(args: argparse.Namespace) -> int:
    import torch

    from studio.engine.loader import quiet_libraries

    quiet_libraries()
    if args.threads:
        torch.set_num_threads(args.threads)
    result = {"cost": preview_costs(args.size, args.repeats, not args.no_vae)}
    if args.prompts:
        result["error"] = preview_errors(args.prompts, args.modes)
    result["targets"] = {"cost_fraction_default": 0.05, "quarter_levels": 40, "last_levels": 12}
    if args.json:
        print(json.dumps(result))
    else:
        print(json.dumps(result, indent=1))
    return 0
