"""`studio bench speed --json`: the studio's fast path against bare diffusers, in one run.

Same pipeline object (same weights), same settings, same seed; the two paths alternate (bare first on
even rounds, fast first on odd ones) after one warm-up run each (the fast path's first run includes
any compilation: reported as compile_warmup_s). The fast path is put on and taken off between runs
with the same code the engine uses (studio.engine.fast), so what is timed is what a user gets.

Per path, the best of --runs (other processes only ever add time; medians beside): it/s of the
denoising loop (from the first step's end to the last's, the device synchronised there only), seconds
per image (the whole call: prompt embeddings, loop, VAE decode),
peak device memory (CUDA; null elsewhere), NaN or black images; then the denoiser's FLOPs per step
(counted from its shapes, studio.engine.flops) and the share of the device's dense fp16/bf16 peak the
loop reaches (null on CPU, in fp32, or on a GPU the table does not know).

--arch demo (default) times the bundled demo model (or --model); sd15, sdxl and flux-dev build
full-size pipelines with random weights on the device (studio.dev.fullsize; speed does not depend on
the weights' values) and hand both paths the same random prompt embeddings.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from studio.cli import positive_int, size8
from studio.core.errors import InvalidRequest

PARTS = ("sdpa", "channels_last", "tf32", "fused_qkv", "compile", "cuda_graphs", "draft")


def register_bench(bsub: argparse._SubParsersAction) -> None:
    s = bsub.add_parser("speed", help="the fast path vs bare diffusers, alternating: it/s, s/image, memory, % of peak")
    s.add_argument("--arch", default="demo", choices=["demo", "sd15", "sdxl", "flux-dev"])
    s.add_argument("--model", default="demo", help="with --arch demo: the model to time (default: the demo model)")
    s.add_argument("--size", type=size8, default=None, help="image side (default: the model's native size)")
    s.add_argument("--steps", type=positive_int, default=20)
    s.add_argument("--runs", type=positive_int, default=5, help="timed runs of each path (the best counts)")
    s.add_argument("--batch", type=positive_int, default=1)
    s.add_argument("--device", default=None)
    s.add_argument("--dtype", default=None)
    s.add_argument(
        "--parts",
        default="recommended",
        help="the fast path to time, a comma list: recommended (the device's, as --fast gives), "
        f"{', '.join(PARTS)}, no-sdpa (SDPA's math kernel only); e.g. recommended,draft",
    )
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=bench_speed)


def parse_parts(text: str, info: Any):
    from studio.core.request import FastPath
    from studio.engine.fast import recommended

    fields: dict[str, bool] = {}
    for word in filter(None, (w.strip().replace("-", "_") for w in text.split(","))):
        if word == "recommended":
            fields.update({k: v for k, v in recommended(info).model_dump().items() if v})
        elif word == "no_sdpa":
            fields["sdpa"] = False
        elif word in PARTS:
            fields[word] = True
        else:
            raise InvalidRequest(f"unknown fast-path part {word!r} in --parts; use recommended or {', '.join(PARTS)}")
    return FastPath(**fields)


def _driver() -> str | None:
    import shutil
    import subprocess

    if shutil.which("nvidia-smi") is None:
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().splitlines()[0] if out.returncode == 0 and out.stdout.strip() else None


def _setup(args: argparse.Namespace, info: Any) -> tuple[Any, dict[str, Any], int]:
    """The pipeline, the call's keyword arguments (all but generator/callback), the image side."""
    if args.arch == "demo":
        from studio.engine.loader import ModelCache

        lm = ModelCache(1).get(args.model, info)
        side = args.size or int(lm.denoiser.config.sample_size) * int(lm.pipe.vae_scale_factor)
        kwargs: dict[str, Any] = dict(prompt="a red circle at the top left on a blue background", negative_prompt="")
        kwargs["guidance_scale"] = 3.5 if lm.family.flow else 7.0
        return lm.pipe, kwargs, side
    from studio.dev import fullsize

    side = args.size or fullsize.NATIVE[args.arch]
    pipe = fullsize.pipeline(args.arch, info.device, info.torch_dtype)
    kwargs = fullsize.prompt_kwargs(args.arch, info.device, info.torch_dtype, batch=1)
    kwargs["guidance_scale"] = 3.5 if args.arch == "flux-dev" else 7.0
    if args.arch == "flux-dev":
        kwargs["max_sequence_length"] = 512
    return pipe, kwargs, side


def bench_speed(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from studio.engine import fast
    from studio.engine.devices import choose_device
    from studio.engine.flops import CallRecorder, count_flops, peak_tflops
    from studio.engine.loader import quiet_libraries

    quiet_libraries()
    info = choose_device(args.device, args.dtype)
    speed = parse_parts(args.parts, info)
    t_build = time.perf_counter()
    pipe, call, side = _setup(args, info)
    build_s = time.perf_counter() - t_build
    cuda = info.device.startswith("cuda")
    model = fast.denoiser_of(pipe)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(info.torch_device)

    def run(path: str) -> dict[str, Any]:
        want = speed if path == "fast" else fast.BARE
        fast.apply(pipe, want, info)
        marks: list[float] = []

        def on_step(p, i, t, kw):
            if i in (0, args.steps - 1):
                sync()
                marks.append(time.perf_counter())
            return kw

        if cuda:
            torch.cuda.reset_peak_memory_stats(info.torch_device)
        sync()
        t0 = time.perf_counter()
        with torch.inference_mode(), fast.running(pipe, want, info):
            out = pipe(
                **call,
                num_inference_steps=args.steps,
                height=side,
                width=side,
                num_images_per_prompt=args.batch,
                generator=torch.Generator("cpu").manual_seed(1),
                output_type="np",
                callback_on_step_end=on_step,
            )
        sync()
        total = time.perf_counter() - t0
        images = np.asarray(out.images, dtype=np.float32)
        loop = marks[-1] - marks[0] if len(marks) == 2 else total
        return {
            "s": total,
            "it_s": (args.steps - 1) / loop if len(marks) == 2 and loop > 0 else args.steps / total,
            "peak_mb": torch.cuda.max_memory_allocated(info.torch_device) / 2**20 if cuda else None,
            "bad": int(sum(1 for im in images if not np.isfinite(im).all() or im.max() <= 1 / 255)),
            "image": images[0],
        }

    recorder = CallRecorder(model)
    warm = {"bare": run("bare")}
    recorder.remove()
    calls_per_step = recorder.calls / args.steps
    flops = None
    if recorder.args is not None:
        flops = count_flops(model, recorder.args, recorder.kwargs) * calls_per_step
    del recorder  # the recorded inputs hold device memory: let them go
    warm["fast"] = run("fast")
    runs: dict[str, list[dict[str, Any]]] = {"bare": [], "fast": []}
    for i in range(args.runs):
        for path in ("bare", "fast") if i % 2 == 0 else ("fast", "bare"):
            runs[path].append(run(path))
    fast.apply(pipe, fast.BARE, info)

    peak = peak_tflops(info.name, info.dtype) if cuda else None
    report: dict[str, Any] = {
        "arch": args.arch,
        "model": args.model if args.arch == "demo" else f"random-weight {args.arch} (full size)",
        "size": side,
        "steps": args.steps,
        "batch": args.batch,
        "runs": args.runs,
        "device": info.device,
        "device_name": info.name,
        "dtype": info.dtype,
        "fast_path": speed.model_dump(),
        "build_s": round(build_s, 2),
        "flops_per_step": flops,
        "peak_tflops": peak,
    }
    for path in ("bare", "fast"):
        # the best of the runs: other processes only ever add time (the medians are reported beside)
        its = max(r["it_s"] for r in runs[path])
        s_img = min(r["s"] for r in runs[path]) / args.batch
        peaks = [r["peak_mb"] for r in runs[path] if r["peak_mb"] is not None]
        achieved = flops * its / 1e12 if flops else None
        report[path] = {
            "it_s": round(its, 3),
            "s_per_image": round(s_img, 4),
            "peak_mb": round(max(peaks), 1) if peaks else None,
            "tflops": round(achieved, 4) if achieved is not None else None,
            "peak_share": round(achieved / peak, 4) if achieved is not None and peak else None,
            "bad_images": sum(r["bad"] for r in runs[path]) + warm[path]["bad"],
            "first_run_s": round(warm[path]["s"], 3),
            "median_it_s": round(statistics.median(r["it_s"] for r in runs[path]), 3),
            "median_s_per_image": round(statistics.median(r["s"] for r in runs[path]) / args.batch, 4),
        }
    report["speedup_it_s"] = round(report["fast"]["it_s"] / report["bare"]["it_s"], 4)
    report["speedup_s_per_image"] = round(report["bare"]["s_per_image"] / report["fast"]["s_per_image"], 4)
    report["compile_warmup_s"] = (
        round(warm["fast"]["s"] - min(r["s"] for r in runs["fast"]), 2) if speed.compile else None
    )
    diff = np.abs(runs["fast"][-1]["image"] - runs["bare"][-1]["image"]) * 255
    report["pixel_diff"] = {"max": round(float(diff.max()), 2), "mean": round(float(diff.mean()), 4)}
    if not cuda:
        from studio.engine.devices import _peak_rss_mb

        report["process_peak_rss_mb"] = _peak_rss_mb()
    report["versions"] = {"torch": torch.__version__, "diffusers": _version("diffusers"), "cuda": torch.version.cuda}
    report["driver"] = _driver() if cuda else None
    if args.json:
        print(json.dumps(report))
    else:
        for k, v in report.items():
            print(f"{k}: {v}")
    return 0


def _version(name: str) -> str:
    from importlib.metadata import version

    return version(name)
