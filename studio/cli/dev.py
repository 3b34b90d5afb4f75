"""`studio dev …`: developer tools (tiny test models, demo-model training and evaluation)."""

from __future__ import annotations

import argparse

from studio.cli import register_from

# Plain names, so `studio --help` does not import torch (studio.testing_flow imports it lazily too).
FLOW_ARCHS = ("flux-dev", "flux-schnell", "flux-fill", "sd3-medium", "sd35-medium", "sd35-large")
FLOW_FORMATS = ("diffusers", "single-file", "comfy", "gguf", "fp8")

# Modules that add `studio dev` sub-commands through register_dev(subparsers).
DEV_MODULES = ("studio.dev.cli",)


def register(sub: argparse._SubParsersAction) -> None:
    dev = sub.add_parser("dev", help="developer tools")
    dsub = dev.add_subparsers(dest="dev_command", metavar="DEV_COMMAND", required=True)

    tiny = dsub.add_parser("tiny-model", help="build a tiny randomly initialised pipeline")
    tiny.add_argument("out", help="output folder (diffusers) or .safetensors file (single-file)")
    tiny.add_argument("--arch", default="sd15", choices=["sd15", "sd15-inpaint", "sd2", "sdxl", *FLOW_ARCHS])
    tiny.add_argument(
        "--format",
        default="diffusers",
        choices=list(FLOW_FORMATS),
        help="diffusers (a folder); single-file (SD: an LDM checkpoint; SD 3.5: all-in-one; FLUX: BFL's "
        "transformer-only file); comfy, gguf, fp8 (FLUX/SD3: the transformer only). Transformer-only "
        "formats write ComfyUI's models/ folders with the separate encoders and VAE",
    )
    tiny.add_argument("--quant", default="Q8_0", help="GGUF quantization (Q8_0, Q5_0, Q4_0 …) for --format gguf")
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(func=_tiny_model)

    fit = dsub.add_parser("fit-latent-rgb", help="fit a model's latent→RGB preview factors (writes latent_rgb.json)")
    fit.add_argument("model", help="a diffusers model folder")
    fit.set_defaults(func=_fit_latent_rgb)

    register_from(DEV_MODULES, dsub, "register_dev")


def _tiny_model(args: argparse.Namespace) -> int:
    from studio.core.errors import InvalidRequest

    if args.arch in FLOW_ARCHS:
        from studio.testing_flow import save_tiny_flow

        files = save_tiny_flow(args.out, arch=args.arch, fmt=args.format, seed=args.seed, quant=args.quant)
        print(files.model)
        for p in [*files.encoders, *([files.vae] if files.vae else [])]:
            print(p)
        return 0
    if args.format not in ("diffusers", "single-file"):
        raise InvalidRequest(
            f"--format {args.format} is for FLUX/SD3 models; SD 1.x/2.x/XL take diffusers or single-file"
        )
    from studio.testing import save_tiny_model

    path = save_tiny_model(args.out, arch=args.arch, fmt=args.format, seed=args.seed)
    print(path)
    return 0


def _fit_latent_rgb(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    import torch
    from diffusers import AutoencoderKL

    from studio.core.errors import ModelNotFound
    from studio.engine.previews import fit_latent_rgb, latent_rgb_error, latent_rgb_factors

    folder = Path(args.model)
    if not (folder / "vae" / "config.json").is_file():
        raise ModelNotFound(f"{folder} is not a diffusers model folder with a vae/ subfolder.")
    vae = AutoencoderKL.from_pretrained(
        folder, subfolder="vae", local_files_only=True, torch_dtype=torch.float32
    ).eval()
    fitted = fit_latent_rgb(vae)
    before = latent_rgb_error(vae, *latent_rgb_factors("sd1", channels=vae.config.latent_channels))
    after = latent_rgb_error(vae, torch.tensor(fitted["factors"]), torch.tensor(fitted["bias"]))
    (folder / "latent_rgb.json").write_text(
        json.dumps({"_comment": "fitted by studio dev fit-latent-rgb", **fitted}, indent=1)
    )
    print(
        json.dumps(
            {
                "path": str(folder / "latent_rgb.json"),
                "error_sd1_factors": round(before, 4),
                "error_fitted": round(after, 4),
            }
        )
    )
    return 0
