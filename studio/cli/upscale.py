"""`studio upscale`: an image through an upscaler model (Real-ESRGAN, ESRGAN), tiled, to a PNG with
its provenance, recorded in the gallery as an "upscale" of its source."""

from __future__ import annotations

import argparse
import json
import sys
import threading
from pathlib import Path

from studio.core.errors import InvalidRequest


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "upscale",
        help="upscale an image with an upscaler model",
        description="Upscale an image with a Real-ESRGAN / ESRGAN model (.safetensors), in blended tiles.",
    )
    p.add_argument("image", type=Path, help="the image to upscale (PNG, JPEG, WebP …)")
    p.add_argument("--model", type=Path, required=True, help="the upscaler (.safetensors)")
    p.add_argument("--scale", type=float, default=None, help="factor each way (default: the model's own, e.g. 4)")
    p.add_argument("--tile", type=int, default=512, help="tile size in input pixels (0: the whole image at once)")
    p.add_argument("--out", type=Path, required=True, help="output PNG")
    p.add_argument("--device", default=None, help="auto (default), cuda, mps or cpu")
    p.add_argument("--dtype", default=None, help="auto (default), float16, bfloat16 or float32")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    p.add_argument("--no-gallery", action="store_true", help="do not record the image in the gallery")
    p.add_argument("--library", type=Path, default=None, help="gallery library folder (default: the user's)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from studio.cli.generate import _Progress, save_outputs
    from studio.core.upscalers import upscale_request
    from studio.engine.engine import Engine

    if args.out.suffix.lower() not in (".png", ""):
        raise InvalidRequest(f"--out must be a .png file, not {args.out.name}")
    if args.tile < 0:
        raise InvalidRequest(f"--tile must be 0 or more, not {args.tile}")
    request = upscale_request(args.image, args.model, args.scale, args.tile)
    engine = Engine(device=args.device, dtype=args.dtype)
    bar = _Progress(enabled=sys.stderr.isatty() and not args.json, unit="tile", desc="upscaling")
    try:
        result = engine.generate(
            request, on_step=lambda p: bar.update(p.step, p.total, p.elapsed_s), cancel=threading.Event()
        )
    finally:
        bar.close()
    paths = save_outputs(result, args.out.with_suffix(".png"), gallery=not args.no_gallery, library=args.library)
    summary = {
        "status": result.status,
        "files": [str(p) for p in paths],
        "size": [request.width, request.height],
        "upscaler": result.upscaler or None,
        "tiles": result.total_steps,
        "device": result.device,
        "dtype": result.dtype,
        "timings": {k: round(v, 4) for k, v in result.timings.items()},
        "request": request.to_dict(),
    }
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        for p in paths:
            print(p)
    return 0
