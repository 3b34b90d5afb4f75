"""The `studio` command. Each sub-command lives in its own module with a `register(subparsers)`.

`studio` with no sub-command opens the window.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from studio import __version__
from studio.core.errors import StudioError

# Modules that add sub-commands; each has register(subparsers) and sets args.func.
COMMAND_MODULES = (
    "studio.cli.generate",
    "studio.cli.upscale",
    "studio.cli.dev",
    "studio.cli.bench",
    "studio.cli.models",
    "studio.cli.preprocess",
    "studio.cli.gallery",
    "studio.cli.metadata",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="studio", description="Local image-generation studio.")
    parser.add_argument("--version", action="version", version=f"studio {__version__}")
    parser.add_argument("--smoke-test", action="store_true", help="check this installation headless and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    run = sub.add_parser("run", help="open the studio window (the default)")
    run.add_argument("--model", default=None, help="model to open with (default: the last one, or the demo model)")
    run.add_argument(
        "--autotest-screenshot",
        type=Path,
        default=None,
        metavar="PNG",
        help="generate once with the demo model, save a screenshot, exit",
    )
    run.set_defaults(func=_run_window)
    register_from(COMMAND_MODULES, sub, "register")
    return parser


def register_from(modules: tuple[str, ...], sub: argparse._SubParsersAction, hook: str) -> None:
    """Let each of `modules` add sub-commands through its `hook(sub)`; a module that is not
    installed (e.g. studio.qt in a headless build) is skipped, any other import error is raised."""
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and (name == exc.name or name.startswith(exc.name + ".")):
                continue
            raise
        getattr(module, hook)(sub)


def _run_window(args: argparse.Namespace) -> int:
    if getattr(args, "autotest_screenshot", None):
        from studio.qt.app.autotest import run_autotest

        return run_autotest(args.autotest_screenshot)
    from studio.qt.app.app import run_app

    return run_app(args)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.smoke_test:
        from studio.cli.smoke import run

        return run()
    func = getattr(args, "func", None) or _run_window
    try:
        return int(func(args) or 0)
    except StudioError as exc:
        print(f"studio: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("studio: interrupted", file=sys.stderr)
        return 130
