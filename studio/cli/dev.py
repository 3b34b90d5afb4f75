"""`studio dev …`: developer tools (tiny test models, demo-model training and evaluation)."""

from __future__ import annotations

import argparse
import importlib

# Modules that add `studio dev` sub-commands through register_dev(subparsers).
DEV_MODULES = ("studio.dev.cli",)


def register(sub: argparse._SubParsersAction) -> None:
    dev = sub.add_parser("dev", help="developer tools")
    dsub = dev.add_subparsers(dest="dev_command", metavar="DEV_COMMAND", required=True)

    tiny = dsub.add_parser("tiny-model", help="build a tiny randomly initialised pipeline")
    tiny.add_argument("out", help="output folder (diffusers) or .safetensors file (single-file)")
    tiny.add_argument("--arch", default="sd15", choices=["sd15", "sd15-inpaint", "sd2", "sdxl"])
    tiny.add_argument("--format", default="diffusers", choices=["diffusers", "single-file"])
    tiny.add_argument("--seed", type=int, default=0)
    tiny.set_defaults(func=_tiny_model)

    for name in DEV_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name == name or (exc.name and name.startswith(exc.name)):
                continue
            raise
        module.register_dev(dsub)


def _tiny_model(args: argparse.Namespace) -> int:
    from studio.testing import save_tiny_model

    path = save_tiny_model(args.out, arch=args.arch, fmt=args.format, seed=args.seed)
    print(path)
    return 0
