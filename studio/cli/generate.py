"""`studio generate`: one generation from the command line, with a progress bar and a PNG out."""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from studio.core.errors import InvalidRequest
from studio.core.files import check_writable
from studio.core.gallery.record import complete_model_hash
from studio.core.request import SCHEDULE_TYPES, SCHEDULER_NAMES, GenerationRequest, PreviewMode

# Used where the model's family has no recommended settings (studio.core.recommend), as A1111 does.
FALLBACK_STEPS, FALLBACK_CFG, FALLBACK_SCHEDULER = 20, 7.0, "Euler a"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("generate", help="generate images headless", description="Generate images without the window.")
    add_request_options(p)
    p.add_argument(
        "--xyz",
        action="append",
        default=[],
        metavar="FIELD=V1,V2,…",
        help="an X/Y/Z plot axis (up to three: x, y, z): cfg, steps, seed, scheduler, size, cfg_end, "
        "strength, hires_scale, lora:NAME, controlnet[:N], prompt_sr … (ranges: 1-5, 1-9 (+2), 0-1 [5]); "
        "--out gets the labelled grid, every cell joins the gallery",
    )
    p.add_argument("--out", type=Path, required=True, help="output PNG (batch: name-1.png, name-2.png, …)")
    p.add_argument("--json", action="store_true", help="print a machine-readable summary")
    p.add_argument("--no-gallery", action="store_true", help="do not record the images in the gallery")
    p.add_argument("--library", type=Path, default=None, help="gallery library folder (default: the user's)")
    p.set_defaults(func=run)


# The options that set up the engine rather than the recipe (a queued job keeps them beside its request).
ENGINE_OPTIONS = ("device", "dtype", "memory", "oom_fallback", "allow_pickle", "taesd", "previews_dir")


def add_request_options(p: argparse.ArgumentParser) -> None:
    """Every option of a generation (recipe and engine): `studio generate` and `studio queue add`."""
    p.add_argument("--model", default="demo", help='"demo" (bundled), a diffusers folder or a .safetensors checkpoint')
    p.add_argument("--prompt", required=True)
    p.add_argument("--negative", default="", help="negative prompt")
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help=f"denoising steps (default: the model family's recommended, else {FALLBACK_STEPS})",
    )
    p.add_argument(
        "--cfg",
        type=float,
        default=None,
        help=f"guidance scale, 0–30 (default: the model family's recommended, else {FALLBACK_CFG:g})",
    )
    p.add_argument("--cfg-rescale", type=float, default=0.0, help="guidance rescale (0–1)")
    p.add_argument(
        "--cfg-end",
        type=float,
        default=None,
        help="guide only this share of the steps, 0–1 (default: the model family's recommended, else 1)",
    )
    p.add_argument("--seed", type=int, default=None, help="seed (random if not given)")
    p.add_argument("--size", default=None, help="WxH, multiples of 8 (default: the model's native size)")
    p.add_argument(
        "--scheduler",
        default=None,
        help=f"the sampler, one of: {', '.join(SCHEDULER_NAMES)}; A1111's older names with the schedule type "
        f"('DPM++ 2M Karras') and ComfyUI's ('dpmpp_2m') work too (default: the model family's recommended, "
        f"else {FALLBACK_SCHEDULER})",
    )
    p.add_argument(
        "--schedule",
        default=None,
        help=f"the schedule type, one of: {', '.join(SCHEDULE_TYPES)} (default: Automatic, or the one the "
        "--scheduler name says)",
    )
    p.add_argument(
        "--prediction",
        choices=("epsilon", "v"),
        default=None,
        help="override what an SD 2.x file's prediction type is taken to be (ε: 512-base/inpainting, v: 768-v); "
        "by default what the file says, else what its UNet does; without it the Models dialog's choice",
    )
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--clip-skip", type=int, default=0, help="final text-encoder layers to skip (0 = none)")
    p.add_argument(
        "--lora",
        action="append",
        default=[],
        metavar="PATH_OR_NAME:WEIGHT",
        help="apply a LoRA (repeatable); <lora:name:0.8> in the prompt works too",
    )
    p.add_argument(
        "--controlnet",
        action="append",
        default=[],
        metavar="MODEL:IMAGE:PREPROCESSOR:WEIGHT[:START:END]",
        help="a ControlNet unit (repeatable); preprocessors: none, canny, hed, …",
    )
    p.add_argument("--guess-mode", action="store_true", help="ControlNet guess mode")
    p.add_argument(
        "--preview",
        default="x0",
        choices=[m.value for m in PreviewMode],
        help="x0: the model's estimate of the finished picture, drawn by a tiny decoder when there is one "
        "(default); latent2rgb: what the sampler holds (the noisy latent); taesd; vae; none",
    )
    p.add_argument("--preview-every", type=int, default=1)
    p.add_argument("--previews-dir", type=Path, default=None, help="write every step's preview PNG here")
    p.add_argument(
        "--taesd",
        type=Path,
        default=None,
        help="tiny autoencoder (folder or .safetensors) for the x0 and taesd previews "
        "(default: the ones set in the Models dialog, or TAESD/TAESDXL/TAESD3/TAEF1 found in the models folders)",
    )
    p.add_argument(
        "--vae",
        type=Path,
        default=None,
        help="a VAE (.safetensors file or diffusers folder) instead of the model's "
        "own; for a FLUX/SD3 file that holds only the transformer, its VAE (e.g. ae.safetensors)",
    )
    p.add_argument(
        "--text-encoder",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="a text-encoder file for a FLUX/SD3 file that holds only the transformer (repeatable: "
        "CLIP-L and T5-XXL for FLUX, plus CLIP-G for SD3; any order)",
    )
    p.add_argument("--device", default=None, help="auto (default), cuda, cuda:N (which GPU), mps or cpu")
    p.add_argument("--dtype", default=None, help="auto (default), float16, bfloat16 or float32")
    p.add_argument(
        "--memory",
        default=None,
        choices=["fast", "balanced", "low memory"],
        help="memory preset (default: the one saved in the Device dialog, else chosen from the device's memory)",
    )
    p.add_argument(
        "--oom-fallback", action="store_true", help="on out-of-memory, retry once with the next lower preset"
    )
    p.add_argument("--allow-pickle", action="store_true", help="allow pickled .ckpt/.bin models (they can run code)")
    p.add_argument("--fast", action="store_true", help="the device's fast path (CUDA: compiled blocks, fused QKV, …)")
    p.add_argument("--draft", action="store_true", help="draft speed: step caching (faster, a slightly other picture)")
    e = p.add_argument_group("image to image, inpainting, outpainting")
    e.add_argument("--init", type=Path, default=None, help="input image (img2img / inpaint / outpaint)")
    e.add_argument(
        "--strength", type=float, default=None, help="how much to change (0–1; img2img default 0.75, else 1)"
    )
    e.add_argument("--mask", type=Path, default=None, help="mask image: white = repaint")
    e.add_argument("--mask-grow", type=int, default=0, help="grow the mask by PX pixels")
    e.add_argument("--mask-blur", type=int, default=4, help="feather the mask edge by PX pixels")
    e.add_argument("--only-masked", action="store_true", help="generate only the masked area (plus padding) at --size")
    e.add_argument("--padding", type=int, default=32, help="pixels around the mask with --only-masked")
    e.add_argument(
        "--outpaint", default=None, metavar="L,T,R,B", help="expand the canvas by these pixels and fill them"
    )
    e.add_argument("--outpaint-fill", default="edge", choices=["edge", "mirror", "noise"])
    e.add_argument(
        "--color-correction",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="inpaint/outpaint: match the repainted colours to the unmasked surround (default: on)",
    )
    h = p.add_argument_group("hires fix (a second pass at a larger size, as A1111's)")
    h.add_argument("--hires-scale", type=float, default=None, help="upscale the first pass by F (>1) and denoise again")
    h.add_argument("--hires-steps", type=int, default=0, help="second-pass steps (0: as many as the first pass)")
    h.add_argument("--hires-strength", type=float, default=0.7, help="second-pass denoising strength (default 0.7)")
    h.add_argument(
        "--hires-upscaler",
        default="latent",
        metavar="latent|lanczos|PATH",
        help="how the first pass is enlarged: its latents (default), the image (Lanczos), or an upscaler model",
    )


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().replace("×", "x").split("x"))
    except ValueError:
        raise InvalidRequest(f"--size must look like 512x512, not {text!r}") from None
    return w, h


def edit_fields(args: argparse.Namespace) -> dict:
    """Request fields for img2img / inpaint / outpaint from the CLI flags (input files hashed)."""
    from studio.core.hashing import sha256_file
    from studio.core.request import ImageRef

    if args.init is None:
        if args.mask is not None or args.outpaint or args.strength is not None:
            raise InvalidRequest("--mask, --outpaint and --strength need an input image (--init)")
        return {}
    for flag, path in (("--init", args.init), ("--mask", args.mask)):
        if path is not None and not path.is_file():
            raise InvalidRequest(f"{flag} file not found: {path}")
    fields: dict = {
        "init_image": ImageRef(path=str(args.init.resolve()), sha256=sha256_file(args.init)),
        "strength": args.strength
        if args.strength is not None
        else (0.75 if args.mask is None and not args.outpaint else 1.0),
        "mask_grow": args.mask_grow,
        "mask_blur": args.mask_blur,
        "inpaint_area": "only_masked" if args.only_masked else "whole",
        "inpaint_padding": args.padding,
        "outpaint_fill": args.outpaint_fill,
        "color_correction": args.color_correction,
    }
    if args.mask is not None:
        fields["mask"] = ImageRef(path=str(args.mask.resolve()), sha256=sha256_file(args.mask))
    if args.outpaint:
        try:
            sides = tuple(int(v) for v in args.outpaint.split(","))
        except ValueError:
            sides = ()
        if len(sides) != 4:
            raise InvalidRequest(f"--outpaint must be LEFT,TOP,RIGHT,BOTTOM pixels, not {args.outpaint!r}")
        fields["outpaint"] = sides
    return fields


def _prediction(args) -> str:
    """--prediction, else the Models dialog's override for this model file, else "" (the file's own)."""
    if args.prediction:
        return "v_prediction" if args.prediction == "v" else "epsilon"
    from studio.core import settings

    saved = settings.load()
    return saved.prediction_for(args.model) or saved.prediction_for(Path(args.model).expanduser().resolve())


def parse_lora(text: str):
    from studio.core.request import LoraRef

    ref, _, weight = text.rpartition(":")
    try:
        w = float(weight)
    except ValueError:
        ref, w = text, 1.0
    if not ref:
        raise InvalidRequest(f"--lora needs PATH_OR_NAME[:WEIGHT], not {text!r}")
    is_path = ref.endswith(".safetensors") or "/" in ref or os.sep in ref
    name = Path(ref).stem if is_path else ref
    if is_path and not Path(ref).expanduser().is_file():
        raise InvalidRequest(f"LoRA file not found: {ref}")
    from pydantic import ValidationError

    try:
        return LoraRef(name=name, path=str(Path(ref).expanduser().resolve()) if is_path else "", weight=w)
    except ValidationError:
        raise InvalidRequest(f"--lora weight must be between -2 and 2, not {w}") from None


def parse_controlnet(text: str):
    from pydantic import ValidationError

    from studio.core.hashing import sha256_file
    from studio.core.request import ControlNetRef, ImageRef

    parts = text.split(":")
    if len(parts) not in (4, 6):
        raise InvalidRequest(f"--controlnet needs MODEL:IMAGE:PREPROCESSOR:WEIGHT[:START:END], not {text!r}")
    model, image, pre = parts[:3]
    if not Path(model).expanduser().exists():
        raise InvalidRequest(f"--controlnet model not found: {model}")
    if not Path(image).is_file():
        raise InvalidRequest(f"--controlnet control image not found: {image}")
    try:
        nums = [float(v) for v in parts[3:]]
        start, end = (nums[1], nums[2]) if len(nums) == 3 else (0.0, 1.0)
        return ControlNetRef(
            model=str(Path(model).expanduser().resolve()),
            image=ImageRef(path=str(Path(image).resolve()), sha256=sha256_file(image)),
            preprocessor=pre,
            weight=nums[0],
            start=start,
            end=end,
        )
    except (ValueError, ValidationError):
        raise InvalidRequest(f"--controlnet weight must be 0–2 and start/end 0–1: {text!r}") from None


def hires_fields(args: argparse.Namespace) -> dict:
    """The `hires` request field from the --hires-* flags ({} without --hires-scale)."""
    from studio.core.hashing import file_sha256
    from studio.core.request import HiresFix

    if args.hires_scale is None:
        if args.hires_steps or args.hires_strength != 0.7 or args.hires_upscaler != "latent":
            raise InvalidRequest("--hires-steps, --hires-strength and --hires-upscaler need --hires-scale")
        return {}
    if args.init is not None:
        raise InvalidRequest("--hires-scale is for text-to-image runs, not with --init")
    upscaler, sha = args.hires_upscaler.strip(), ""
    if upscaler.lower() not in ("latent", "lanczos"):
        from studio.core.upscalers import find_upscaler, read

        path = find_upscaler(upscaler)
        read(path)  # an upscaler this studio runs, else one message now rather than after the first pass
        upscaler, sha = str(path.resolve()), file_sha256(path)
    from pydantic import ValidationError

    try:
        hires = HiresFix(
            scale=args.hires_scale,
            steps=args.hires_steps,
            strength=args.hires_strength,
            upscaler=upscaler,
            upscaler_sha256=sha,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InvalidRequest(f"--hires-{first['loc'][0]}: {first['msg']}") from None
    return {"hires": hires}


def sampling_defaults(args: argparse.Namespace) -> tuple[int, float, str, float]:
    """(steps, guidance, scheduler, guidance end): what was given, else the model family's recommended settings
    (as the window applies when a model is chosen: the demo model's CFG 7 on the first half of the
    steps, SD-Turbo's 1–4 steps without guidance …), else A1111's 20 steps, CFG 7 on every step, Euler a."""
    from studio.core import recommend

    rec = None
    if None in (args.steps, args.cfg, args.scheduler, args.cfg_end):
        rec = recommend.for_model(args.model)
    steps = args.steps if args.steps is not None else (rec.steps if rec else FALLBACK_STEPS)
    cfg = args.cfg if args.cfg is not None else (rec.cfg if rec else FALLBACK_CFG)
    scheduler = args.scheduler if args.scheduler is not None else (rec.sampler_label if rec else FALLBACK_SCHEDULER)
    cfg_end = args.cfg_end if args.cfg_end is not None else (rec.cfg_end if rec else 1.0)
    return steps, cfg, scheduler, cfg_end


def image_size8(path: Path, extra_w: int = 0, extra_h: int = 0) -> tuple[int, int]:
    """The size the canvas is generated at: the (expanded) image snapped up to multiples of 8."""
    from studio.engine.inpaint import load_rgb, snap8

    h, w = load_rgb(path, "init image").shape[:2]
    return snap8(w + extra_w), snap8(h + extra_h)


def native_size(engine, model: str, parts=((), "")) -> int:
    lm = engine.load(model, parts=parts)
    if lm.family.flow:  # FLUX/SD3: the VAE's sample size (1024 for the real models), else the family's
        from studio.core.checkpoint import defaults

        size = int(lm.pipe.vae.config.get("sample_size") or defaults()[lm.arch]["sample_size"])
        return max(16, size // 16 * 16)
    return int(lm.pipe.unet.config.sample_size) * 8


def _existing(path: Path, flag: str) -> str:
    if not path.expanduser().is_file():
        raise InvalidRequest(f"{flag} file not found: {path}")
    return str(path.expanduser().resolve())


def check_files(args: argparse.Namespace) -> None:
    """Every file a generation names exists, and what it writes can be written: said before
    anything loads, one clear line each."""
    for flag, path in (("--vae", args.vae), ("--taesd", args.taesd)):
        if path is not None and not path.expanduser().exists():
            raise InvalidRequest(f"{flag} file not found: {path}")
    for path in args.text_encoder:
        _existing(path, "--text-encoder")
    from studio.engine.inpaint import load_rgb  # numpy and Pillow only

    for flag, path in (("--init", args.init), ("--mask", args.mask)):
        if path is not None:
            if not path.is_file():
                raise InvalidRequest(f"{flag} file not found: {path}")
            load_rgb(path, flag.removeprefix("--") + " image")  # refuses a file Pillow cannot read
    for text in args.lora:
        parse_lora(text)
    for text in args.controlnet:
        load_rgb(parse_controlnet(text).image.path, "control image")
    if args.previews_dir is not None:
        if args.previews_dir.is_file():
            raise InvalidRequest(f"--previews-dir {args.previews_dir} is a file, not a folder")
        check_writable(args.previews_dir / "step-001.png", "--previews-dir")


def engine_options(args: argparse.Namespace) -> dict:
    """The engine settings given on the command line (kept with a queued job), JSON-friendly."""
    out = {k: getattr(args, k) for k in ENGINE_OPTIONS if getattr(args, k, None) not in (None, False)}
    return {k: str(Path(v).expanduser().resolve()) if isinstance(v, Path) else v for k, v in out.items()}


def make_engine(options: dict):
    """An engine set up from `engine_options` and what the window's Models and Device dialogs saved."""
    from studio.core import settings as core_settings
    from studio.engine.engine import Engine

    saved = core_settings.load()  # what the window's Models and Device dialogs saved
    if options.get("taesd"):  # for every architecture whose latents it reads (the engine checks the channels)
        taesd: dict[str, str | Path] = {arch: str(options["taesd"]) for arch in core_settings.ARCHES}
    else:
        from studio.core.library import tiny_autoencoders

        taesd = dict(tiny_autoencoders(saved))
    preset = options.get("memory") or (saved.memory_preset if saved.memory_preset != "auto" else None)
    return Engine(
        device=options.get("device"),
        dtype=options.get("dtype"),
        allow_pickle=bool(options.get("allow_pickle")),
        taesd=taesd,
        preset=preset,
        auto_fallback=bool(options.get("oom_fallback")) or saved.oom_fallback,
    )


def build_request(args: argparse.Namespace, native: Callable[[], int]) -> GenerationRequest:
    """The request the options describe; `native()` gives the model's size when neither --size nor an
    input image says it."""
    import random

    edit = edit_fields(args)
    if args.size:
        width, height = parse_size(args.size)
    elif args.init is not None and not args.only_masked:
        left, top, right, bottom = edit.get("outpaint") or (0, 0, 0, 0)
        width, height = image_size8(args.init, left + right, top + bottom)
    else:
        width = height = native()
    steps, cfg, scheduler, cfg_end = sampling_defaults(args)
    return GenerationRequest.create(
        model=args.model,
        prompt=args.prompt,
        negative_prompt=args.negative,
        steps=steps,
        guidance_scale=cfg,
        guidance_rescale=args.cfg_rescale,
        guidance_end=cfg_end,
        seed=args.seed if args.seed is not None else random.randrange(2**32),
        width=width,
        height=height,
        scheduler=scheduler,
        **({"schedule_type": args.schedule} if args.schedule else {}),
        prediction_type=_prediction(args),
        batch_size=args.batch,
        clip_skip=args.clip_skip,
        preview=args.preview,
        preview_every=args.preview_every,
        loras=tuple(parse_lora(text) for text in args.lora),
        controlnets=tuple(parse_controlnet(text) for text in args.controlnet),
        plugins={"controlnet": {"guess_mode": True}} if args.guess_mode else {},
        vae=str(args.vae.expanduser().resolve()) if args.vae else "",
        text_encoders=tuple(_existing(p, "--text-encoder") for p in args.text_encoder),
        **edit,
        **hires_fields(args),
        fast=_fast_path(args),
    )


def _fast_path(args: argparse.Namespace) -> dict:
    """--fast: the fast path the device gains from (part of the recipe; studio.engine.fast); --draft: step caching."""
    from studio.engine.devices import choose_device
    from studio.engine.fast import recommended

    speed = recommended(choose_device(args.device, args.dtype)).model_dump() if args.fast else {}
    return {**speed, "draft": True} if args.draft else speed


def preview_writer(folder: Path) -> Callable:
    """on_step(preview) that writes each step's preview as `folder/step-NNN.png` (--previews-dir)."""
    folder.mkdir(parents=True, exist_ok=True)

    def write(p) -> None:
        if p.image is not None:
            from PIL import Image

            Image.fromarray(p.image).save(folder / f"step-{p.step:03d}.png")

    return write


def run(args: argparse.Namespace) -> int:
    if args.out.suffix.lower() not in (".png", ""):
        raise InvalidRequest(f"--out must be a .png file, not {args.out.name}")
    check_writable(args.out.with_suffix(".png"), "--out")
    check_files(args)
    engine = make_engine(engine_options(args))
    bar = _Progress(enabled=sys.stderr.isatty() and not args.json)
    parts = (
        tuple(_existing(p, "--text-encoder") for p in args.text_encoder),
        str(args.vae.expanduser().resolve()) if args.vae else "",
    )
    request = build_request(args, lambda: native_size(engine, args.model, parts))
    write_preview = preview_writer(args.previews_dir) if args.previews_dir else None

    made = []  # kept with the gallery images, so they can be scrubbed and branched from in the window

    def on_step(p) -> None:
        made.append(p)
        bar.update(p.step, p.total, p.elapsed_s)
        if write_preview is not None:
            write_preview(p)

    if args.xyz:
        from studio.cli.plot import run_plot

        def cell_steps(n: int, total: int):
            bar.desc = f"cell {n}/{total}"
            return on_step

        try:
            return run_plot(args, engine, request, cell_steps)
        finally:
            bar.close()
    cancel = threading.Event()
    try:
        result = engine.generate(request, on_step=on_step, cancel=cancel)
    finally:
        bar.close()
    complete_model_hash(result)  # the checkpoint's SHA-256, cached by path, size and mtime
    paths = save_outputs(
        result, args.out.with_suffix(".png"), gallery=not args.no_gallery, library=args.library, steps=made
    )
    summary = {
        "status": result.status,
        "files": [str(p) for p in paths],
        "seeds": result.seeds,
        "steps": result.steps_done,
        "device": result.device,
        "dtype": result.dtype,
        "model": result.model_name,
        "timings": {k: round(v, 4) for k, v in result.timings.items()},
        "memory_preset": result.preset or None,
        "notice": result.notice,
        **({"color_correction": result.color_correction} if result.color_correction is not None else {}),
        "request": request.to_dict(),
    }
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        for p in paths:
            print(p)
    return 0


def save_outputs(result, out: Path, *, gallery: bool, library: Path | None, steps=None) -> list[Path]:
    """Write each image with full provenance to `out` (and into the gallery unless told not to)."""
    from studio.core.gallery import record_result
    from studio.core.gallery.record import out_path_for, result_info
    from studio.core.metadata import write_png

    out.parent.mkdir(parents=True, exist_ok=True)
    n = len(result.images)
    if gallery:
        record_result(result, library=library, out_path=out, steps=steps)
    else:
        for i, image in enumerate(result.images):
            write_png(out_path_for(out, i, n), image, result.request, result_info(result, i))
    return [out_path_for(out, i, n) for i in range(n)]


class _Progress:
    """A one-line terminal progress bar with it/s and time left (tqdm), only on a terminal."""

    def __init__(self, enabled: bool, unit: str = "step", desc: str = "generating") -> None:
        self.enabled, self.unit, self.desc = enabled, unit, desc
        self._bar: Any = None

    def update(self, step: int, total: int, elapsed: float) -> None:
        if not self.enabled:
            return
        if self._bar is not None and (self._bar.total != total or self._bar.desc != self.desc):
            self.close()  # a new cell of a plot: a new bar
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=total, unit=self.unit, desc=self.desc, file=sys.stderr, leave=False)
        self._bar.n = step
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
