"""The `studio` command. Each sub-command lives in its own module with a `register(subparsers)`.

`studio` with no sub-command opens the window.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import sys
from pathlib import Path
from typing import NoReturn

from studio import __version__
from studio.core.errors import StudioError

# Modules that add sub-commands; each has register(subparsers) and sets args.func.
COMMAND_MODULES = (
    "studio.cli.generate",
    "studio.cli.queue",
    "studio.cli.cluster",
    "studio.cli.upscale",
    "studio.cli.dev",
    "studio.cli.bench",
    "studio.cli.models",
    "studio.cli.preprocess",
    "studio.cli.gallery",
    "studio.cli.metadata",
)


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (exit 2) like every other error the CLI reports."""

    def error(self, message: str) -> NoReturn:
        self.exit(
            2,
            f"studio: {self.prog.removeprefix('studio ').strip() or 'studio'}: {message} "
            f"(`{self.prog} --help` lists the options)\n",
        )


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def size8(text: str) -> int:
    """argparse type: an image side in pixels, a positive multiple of 8."""
    value = positive_int(text)
    if value % 8:
        raise argparse.ArgumentTypeError(f"{value} is not a multiple of 8")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="studio", description="Local image-generation studio.")
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
    if argv is None:  # the `studio` process itself: file names that are not UTF-8 print as they are
        for stream in (sys.stdout, sys.stderr):
            if hasattr(stream, "reconfigure"):
                with contextlib.suppress(ValueError, OSError):
                    stream.reconfigure(errors="surrogateescape")
    parser = build_parser()
    args = parser.parse_args(argv)
    from studio.core import logs

    log_path = logs.setup(console_level=logging.WARNING)
    log = logging.getLogger("studio.cli")
    if args.smoke_test:
        from studio.cli.smoke import run

        return run()
    func = getattr(args, "func", None) or _run_window
    words = [a for a in (sys.argv[1:] if argv is None else argv) if isinstance(a, str)]
    log.info("studio %s", " ".join(a for a in words[:3] if not a.startswith("-")))  # the command, not the prompt
    try:
        return int(func(args) or 0)
    except StudioError as exc:
        log.info("refused: %s", exc)
        say(f"studio: {one_line(str(exc))}")
        return 2
    except KeyboardInterrupt:
        say("studio: interrupted")
        return 130
    except OSError as exc:  # a file the command was given or writes: say which and why
        log.info("file error", exc_info=True)
        where = f": {exc.filename}" if exc.filename else ""
        say(f"studio: {one_line(exc.strerror or str(exc))}{where}")
        return 2
    except Exception as exc:  # a bug: one line here, the traceback in the log
        log.exception("internal error")
        where = f" (the details are in {log_path})" if log_path else ""
        say(f"studio: internal error: {type(exc).__name__}: {one_line(str(exc))}{where}")
        return 1


def one_line(text: str) -> str:
    return " ".join(text.split())


def say(line: str) -> None:
    """One line on stderr, whatever bytes a file name in it holds."""
    try:
        print(line, file=sys.stderr)
    except UnicodeEncodeError:
        enc = getattr(sys.stderr, "encoding", None) or "utf-8"
        print(line.encode(enc, "backslashreplace").decode(enc), file=sys.stderr)
