"""`studio bench soak --images N --json`: is memory bounded over a long session?

The engine and the gallery make N images in one process, as a long session or a queue run would
(every image generated with step previews, saved with its full provenance into a temporary
library). The process's resident memory (RSS) is sampled after every image. The first images
warm up (model load, allocator pools, caches); growth is measured from the end of the warm-up to
the end: median of the last few samples against the median of the warm-up's last few, so a
single allocation spike does not decide it. Target: growth ≤ 5 % over 200 images.

Then the model switch: A → B → A, where B is a second copy of A in another folder (another model
as far as the loader can tell, the same size), with the engine's own model cache: the footprint
after coming back to A is compared with A's before the switch.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from studio.cli import positive_int, size8

PROMPTS = (
    "a red circle at the top left on a blue background",
    "a large green star in the middle on a yellow background",
    "a small blue square at the bottom right on a white background",
    "a purple triangle at the top on a black background",
)
TARGET_PCT = 5.0


def register_bench(bsub: argparse._SubParsersAction) -> None:
    s = bsub.add_parser("soak", help="memory over N images in one process (engine + gallery), and a model switch")
    s.add_argument("--images", type=positive_int, default=200)
    s.add_argument(
        "--warmup",
        type=positive_int,
        default=None,
        help="images before growth is measured (default: 10 %%, at least 10)",
    )
    s.add_argument("--model", default="demo")
    s.add_argument("--steps", type=positive_int, default=8)
    s.add_argument("--size", type=size8, default=None, help="image side (default: the model's native size)")
    s.add_argument("--device", default=None)
    s.add_argument("--no-switch", action="store_true", help="skip the A → B → A model switch")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=bench_soak)


def _rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


def _median_of(values: list[float], start: int, end: int) -> float:
    window = values[max(0, start) : max(start + 1, end)]
    return statistics.median(window)


def bench_soak(args: argparse.Namespace) -> int:
    from studio.core.gallery import Gallery
    from studio.core.gallery.record import result_info
    from studio.core.library import check_model, native_size
    from studio.core.request import GenerationRequest
    from studio.engine.engine import Engine
    from studio.engine.loader import resolve_model

    check_model(args.model)
    engine = Engine(device=args.device)
    size = args.size or native_size(args.model) or 512
    warmup = args.warmup or max(10, args.images // 10)
    if warmup >= args.images:
        warmup = max(1, args.images // 2)
    samples: list[float] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="studio-soak-") as tmp:
        with Gallery(Path(tmp) / "library") as gallery:
            for i in range(args.images):
                request = GenerationRequest.create(
                    model=args.model,
                    prompt=PROMPTS[i % len(PROMPTS)],
                    seed=i,
                    steps=args.steps,
                    width=size,
                    height=size,
                    scheduler="DPM++ 2M",
                    guidance_scale=7.0,
                    guidance_end=0.5,
                )
                result = engine.generate(request, on_step=lambda p: None)
                for n, image in enumerate(result.images):
                    gallery.add_image(
                        image, result.request, info=result_info(result, n), run_id=f"soak-{i}", batch_index=n
                    )
                samples.append(_rss_mb())
            saved = gallery.count()
        seconds = time.perf_counter() - t0
        tail = max(3, min(10, (args.images - warmup) // 4 or 1))
        base = _median_of(samples, warmup - tail, warmup)
        end = _median_of(samples, len(samples) - tail, len(samples))
        after = samples[warmup:] or samples[-1:]
        xs = list(range(len(after)))
        slope = statistics.linear_regression(xs, after).slope if len(after) >= 2 else 0.0
        out = {
            "images": args.images,
            "saved": saved,
            "warmup": warmup,
            "model": args.model,
            "size": size,
            "steps": args.steps,
            "device": engine.device_info.device,
            "rss_mb_after_warmup": round(base, 1),
            "rss_mb_end": round(end, 1),
            "rss_mb_max": round(max(samples), 1),
            "rss_growth_pct": round((end - base) / base * 100.0, 2),
            "rss_slope_mb_per_100_images": round(slope * 100, 2),
            "seconds": round(seconds, 1),
            "images_per_s": round(args.images / seconds, 2),
            "target_pct": TARGET_PCT,
        }
        if not args.no_switch:
            out["switch"] = _switch(engine, args.model, resolve_model(args.model)[1], Path(tmp), size)
    out["ok"] = out["rss_growth_pct"] <= TARGET_PCT and out.get("switch", {}).get("ok", True)
    if args.json:
        print(json.dumps(out))
    else:
        for k, v in out.items():
            print(f"{k}: {v}")
    return 0


def _switch(engine, model: str, path: Path, tmp: Path, size: int) -> dict:
    """A → B → A: B is a copy of A in another folder. Footprints are read after a generation with each."""
    from studio.core.request import GenerationRequest

    other = tmp / "model-b"
    if path.is_dir():
        shutil.copytree(path, other)
    else:
        other = tmp / path.name
        shutil.copy2(path, other)

    def footprint(m: str) -> float:
        engine.generate(GenerationRequest.create(model=m, prompt=PROMPTS[0], seed=1, steps=2, width=size, height=size))
        return _rss_mb()

    a = statistics.median(footprint(model) for _ in range(3))
    b = footprint(str(other))
    a2 = statistics.median(footprint(model) for _ in range(3))
    model_mb = (
        sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20
        if path.is_dir()
        else path.stat().st_size / 2**20
    )
    return {
        "a_mb": round(a, 1),
        "b_mb": round(b, 1),
        "a_again_mb": round(a2, 1),
        "model_files_mb": round(model_mb, 1),
        "cache_size": engine.cache.capacity,
        "return_pct": round((a2 - a) / a * 100.0, 2),
        "ok": (a2 - a) / a * 100.0 <= TARGET_PCT,
    }
