"""`studio bench …`: benchmarks that print JSON. Targets are checked here, not by timed tests."""

from __future__ import annotations

import argparse
import json
import statistics
import time

from studio.cli import positive_int, register_from, size8

# Modules that add more `studio bench` sub-commands through register_bench(subparsers).
BENCH_MODULES = (
    "studio.cli.bench_soak",
    "studio.cli.bench_cluster",
    "studio.cli.bench_speed",
    "studio.qt.app.window_bench",
    "studio.qt.app.window_soak",
    "studio.cli.bench_previews",
)


def register(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="benchmarks (JSON)")
    bsub = bench.add_subparsers(dest="bench_command", metavar="BENCH", required=True)

    o = bsub.add_parser("overhead", help="studio engine vs a bare pipe() call on the same tiny model")
    o.add_argument("--runs", type=positive_int, default=7)
    o.add_argument("--steps", type=positive_int, default=20)
    o.add_argument("--size", type=size8, default=128)
    o.add_argument("--preview", default="latent2rgb")
    o.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    o.add_argument("--json", action="store_true")
    o.set_defaults(func=bench_overhead)

    u = bsub.add_parser("unet", help="a full-size randomly initialised UNet: step time and peak memory")
    u.add_argument("--arch", default="sd15", choices=["sd15", "sdxl"])
    u.add_argument("--size", type=size8, default=512)
    u.add_argument("--steps", type=positive_int, default=3)
    u.add_argument("--device", default=None)
    u.add_argument("--dtype", default=None)
    u.add_argument("--json", action="store_true")
    u.set_defaults(func=bench_unet)

    ls = bsub.add_parser("lora-swap", help="time to switch LoRA sets vs a cold model load (tiny model)")
    ls.add_argument("--runs", type=positive_int, default=5)
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=bench_lora_swap)

    sm = bsub.add_parser(
        "seam",
        help="inpainting seam: colour step across the feather band, with and without colour correction (demo model)",
    )
    sm.add_argument("--model", default="demo")
    sm.add_argument("--steps", type=positive_int, default=12)
    sm.add_argument("--blur", type=positive_int, default=8)
    sm.add_argument("--seeds", type=positive_int, default=4)
    sm.add_argument("--json", action="store_true")
    sm.set_defaults(func=bench_seam)

    register_from(BENCH_MODULES, bsub, "register_bench")


def _emit(result: dict, as_json: bool) -> None:
    if as_json:
        print(json.dumps(result))
    else:
        for k, v in result.items():
            print(f"{k}: {v}")


def bench_overhead(args: argparse.Namespace) -> int:
    import tempfile

    import torch

    from studio.core.request import GenerationRequest
    from studio.engine.engine import Engine
    from studio.engine.schedulers import make_scheduler
    from studio.testing import save_tiny_model

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        path = save_tiny_model(tmp + "/tiny", "sd15")
        engine = Engine(device="cpu")
        request = GenerationRequest.create(
            model=str(path),
            prompt="a red circle at the top left on a blue background",
            steps=args.steps,
            width=args.size,
            height=args.size,
            seed=1,
            scheduler="Euler",
            preview=args.preview,
        )
        lm = engine.load(str(path))
        pipe = lm.pipe
        previews: list = []

        def bare() -> float:
            pipe.scheduler = make_scheduler("Euler", lm.base_scheduler_config)
            t = time.perf_counter()
            with torch.inference_mode():
                pipe(
                    prompt=request.prompt,
                    num_inference_steps=request.steps,
                    guidance_scale=request.guidance_scale,
                    height=request.height,
                    width=request.width,
                    output_type="np",
                    generator=[torch.Generator("cpu").manual_seed(request.seed)],
                )
            return time.perf_counter() - t

        preview_s: list[float] = []

        def studio() -> float:
            previews.clear()
            t = time.perf_counter()
            res = engine.generate(request, on_step=previews.append)
            elapsed = time.perf_counter() - t
            preview_s.append(res.timings["preview_s"])
            return elapsed

        bare(), studio()  # warm-up
        bare_s: list[float] = []
        studio_s: list[float] = []
        for i in range(args.runs):  # interleaved, alternating which goes first
            pair = (bare, studio) if i % 2 == 0 else (studio, bare)
            for fn in pair:
                (bare_s if fn is bare else studio_s).append(fn())
        b, s = statistics.median(bare_s), statistics.median(studio_s)
        _emit(
            {
                "bare_s": round(b, 4),
                "studio_s": round(s, 4),
                "ratio": round(s / b, 4),
                "preview": args.preview,
                "previews_per_run": len(previews),
                "steps": args.steps,
                # time spent making previews inside the loop: the part of the overhead noise cannot fake
                "preview_s": round(statistics.median(preview_s), 5),
                "preview_fraction": round(statistics.median(preview_s) / s, 5),
                "size": args.size,
                "runs": args.runs,
                "device": engine.device_info.device,
                "threads": torch.get_num_threads(),
            },
            args.json,
        )
    return 0


def bench_unet(args: argparse.Namespace) -> int:
    import torch
    from diffusers import UNet2DConditionModel

    from studio.dev.fullsize import FULL_UNETS
    from studio.engine.devices import choose_device, memory_info
    from studio.engine.loader import quiet_libraries

    quiet_libraries()
    info = choose_device(args.device, args.dtype)
    cfg = FULL_UNETS[args.arch]
    unet = UNet2DConditionModel(**cfg).to(info.torch_device, info.torch_dtype).eval()
    params = sum(p.numel() for p in unet.parameters()) / 1e6
    h = args.size // 8
    x = torch.randn(2, 4, h, h, device=info.torch_device, dtype=info.torch_dtype)  # CFG batch of 2
    ctx = torch.randn(2, 77, cfg["cross_attention_dim"], device=info.torch_device, dtype=info.torch_dtype)
    kw = {}
    if args.arch == "sdxl":
        kw["added_cond_kwargs"] = {
            "text_embeds": torch.randn(2, 1280, device=info.torch_device, dtype=info.torch_dtype),
            "time_ids": torch.zeros(2, 6, device=info.torch_device, dtype=info.torch_dtype),
        }
    if info.device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()

    def sync():
        if info.device.startswith("cuda"):
            torch.cuda.synchronize()
        elif info.device == "mps":
            torch.mps.synchronize()

    times = []
    with torch.inference_mode():
        for i in range(args.steps + 1):
            sync()
            t = time.perf_counter()
            unet(x, 999 - i, encoder_hidden_states=ctx, **kw)
            sync()
            times.append(time.perf_counter() - t)
    mem = memory_info(info)
    _emit(
        {
            "arch": args.arch,
            "size": args.size,
            "device": info.device,
            "dtype": info.dtype,
            "params_m": round(params, 1),
            "step_s": round(statistics.median(times[1:]), 4),
            "first_step_s": round(times[0], 4),
            "peak_mb": mem["peak_mb"],
            "allocated_mb": mem["allocated_mb"],
        },
        args.json,
    )
    return 0


def bench_lora_swap(args: argparse.Namespace) -> int:
    """Switch between two LoRA sets on a loaded pipeline vs loading the model cold (single file)."""
    import tempfile
    from pathlib import Path

    from studio.core.request import LoraRef
    from studio.engine.engine import Engine
    from studio.engine.loader import ModelCache
    from studio.plugin_api import PipelineContext
    from studio.testing import save_tiny_lora, save_tiny_model

    with tempfile.TemporaryDirectory() as tmp:
        model = save_tiny_model(Path(tmp) / "m" / "tiny.safetensors", "sd15", "single-file")
        a = save_tiny_lora(Path(tmp) / "a.safetensors", "sd15", "peft", seed=1)
        b = save_tiny_lora(Path(tmp) / "b.safetensors", "sd15", "kohya", seed=2)
        engine = Engine(device="cpu")
        lora = engine.plugins.get("lora")
        from studio.core.request import GenerationRequest

        sets = [
            (LoraRef(name="a", path=str(a), weight=0.8),),
            (LoraRef(name="b", path=str(b), weight=0.6), LoraRef(name="a", path=str(a), weight=0.3)),
        ]
        lm = engine.load(str(model))
        swap_s, cold_s = [], []
        for i in range(args.runs + 1):
            req = GenerationRequest.create(model=str(model), prompt="x", loras=sets[i % 2])
            ctx = PipelineContext(pipe=lm.pipe, request=req, arch=lm.arch, device="cpu", prompt="x", negative_prompt="")
            t = time.perf_counter()
            lora.prepare(ctx)
            swap_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            ModelCache().get(str(model), engine.device_info)
            cold_s.append(time.perf_counter() - t)
        swap = statistics.median(swap_s[2:] or swap_s)  # after each file's first (one-time) adapter load
        cold = statistics.median(cold_s)
        _emit(
            {
                "swap_s": round(swap, 4),
                "first_load_s": round(max(swap_s[:2]), 4),
                "cold_load_s": round(cold, 4),
                "ratio": round(swap / cold, 4),
                "runs": args.runs,
            },
            args.json,
        )
    return 0


def bench_seam(args: argparse.Namespace) -> int:
    """Inpaint the middle of a flat background asking for the same background, and measure the
    colour step across the feather band: |mean(just inside) − mean(just outside)|, in 0–255 levels.
    Also the mean |output − input| inside the band, and that nothing outside the mask changed.
    Every seed runs twice, with and without colour correction (same samples: the correction only
    changes the compositing), so the two steps and their ratio come from the same run."""
    import tempfile
    from pathlib import Path

    import numpy as np
    from PIL import Image

    from studio.core.request import GenerationRequest, ImageRef
    from studio.engine.edits import plan_edit
    from studio.engine.engine import Engine
    from studio.engine.inpaint import grow

    engine = Engine()
    lm = engine.load(args.model)
    size = int(lm.pipe.unet.config.sample_size) * 8
    found: dict[bool, dict[str, list[float]]] = {cc: {"step": [], "band": [], "changed": []} for cc in (True, False)}
    with tempfile.TemporaryDirectory() as tmp:
        img = np.zeros((size, size, 3), np.uint8)
        img[:] = (40, 70, 200)  # a plain blue background, as the demo model draws them
        mask = np.zeros((size, size), np.uint8)
        q = size // 4
        mask[q:-q, q:-q] = 255
        Image.fromarray(img).save(Path(tmp) / "in.png")
        Image.fromarray(mask).save(Path(tmp) / "mask.png")
        for seed in range(args.seeds):
            for cc in (True, False):
                req = GenerationRequest.create(
                    model=args.model,
                    prompt="a blue background",
                    steps=args.steps,
                    seed=seed,
                    width=size,
                    height=size,
                    init_image=ImageRef(path=str(Path(tmp) / "in.png")),
                    mask=ImageRef(path=str(Path(tmp) / "mask.png")),
                    mask_blur=args.blur,
                    color_correction=cc,
                )
                out = engine.generate(req).images[0].astype(np.float64)
                m = plan_edit(req).blend_mask
                band = (m > 0) & (m < 255)
                inner = (m == 255) & (grow(band * 255, 3) > 0)
                outer = (m == 0) & (grow(band * 255, 3) > 0)
                found[cc]["step"].append(float(np.abs(out[inner].mean(0) - out[outer].mean(0)).mean()))
                found[cc]["band"].append(float(np.abs(out[band] - img[band]).mean()))
                found[cc]["changed"].append(int((out[m == 0] != img[m == 0]).any()))
    on, off = (float(np.median(found[cc]["step"])) for cc in (True, False))
    _emit(
        {
            "model": args.model,
            "size": size,
            "blur_px": args.blur,
            "seeds": args.seeds,
            "steps": args.steps,
            "seam_step_levels": round(on, 2),
            "seam_step_levels_uncorrected": round(off, 2),
            "correction_ratio": round(on / off, 3) if off else None,
            "band_mean_abs_diff": round(float(np.median(found[True]["band"])), 2),
            "band_mean_abs_diff_uncorrected": round(float(np.median(found[False]["band"])), 2),
            "runs_with_changes_outside_mask": sum(found[True]["changed"]) + sum(found[False]["changed"]),
        },
        args.json,
    )
    return 0
