"""The studio's log and crash reports.

`setup()` (called by `studio` for every command and by the window; the packaged build runs the
same entry point) writes a rotating log file, `studio.log`, in the user log folder
(platformdirs; `STUDIO_HOME/logs` when STUDIO_HOME is set), turns faulthandler on (a hard crash —
a segfault in a native library — writes every thread's stack to `faults.log` beside it), and
routes uncaught exceptions, on any thread, to the log and to the listeners the window adds (its
crash dialog). `crash_report()` is what that dialog copies: versions, device, the error and the
last lines of the log, with the prompts taken out unless the user asks for them.
"""

from __future__ import annotations

import faulthandler
import logging
import logging.handlers
import os
import platform
import sys
import threading
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

import platformdirs

from studio.core.paths import APP

LOG_NAME = "studio.log"
FAULTS_NAME = "faults.log"
MAX_BYTES = 2 * 2**20
BACKUPS = 5
FORMAT = "%(asctime)s %(process)d %(threadName)s %(levelname)s %(name)s: %(message)s"
PACKAGES = (
    "torch",
    "diffusers",
    "transformers",
    "huggingface_hub",
    "safetensors",
    "PySide6-Essentials",
    "numpy",
    "pillow",
    "peft",
    "accelerate",
)
HIDDEN = "‹prompt hidden›"

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]
Listener = Callable[[ExcInfo, str], None]  # (exception, thread name)

_state: dict[str, Any] = {"handler": None, "faults": None}
_listeners: list[Listener] = []
_lock = threading.Lock()


def log_dir() -> Path:
    home = os.environ.get("STUDIO_HOME")
    if home:
        return Path(home) / "logs"
    return Path(platformdirs.user_log_dir(APP, appauthor=False))


def log_file() -> Path:
    return log_dir() / LOG_NAME


def setup(console_level: int | None = None) -> Path | None:
    """Log to the rotating file (INFO and up), faulthandler on, exception hooks in. Safe to call again
    (the file follows a changed STUDIO_HOME). `console_level`: also print records of that level and up
    to stderr, one line each. Returns the log file, or None if its folder cannot be written."""
    with _lock:
        root = logging.getLogger()
        folder = log_dir()
        old = _state["handler"]
        if old is None or Path(old.baseFilename).parent != folder:
            try:
                folder.mkdir(parents=True, exist_ok=True)
                handler = logging.handlers.RotatingFileHandler(
                    folder / LOG_NAME,
                    maxBytes=MAX_BYTES,
                    backupCount=BACKUPS,
                    encoding="utf-8",
                    errors="backslashreplace",
                )
            except OSError:
                handler = None
            if old is not None:
                root.removeHandler(old)
                old.close()
            _state["handler"] = handler
            if handler is not None:
                handler.setFormatter(logging.Formatter(FORMAT))
                handler.setLevel(logging.INFO)
                root.addHandler(handler)
                _enable_faulthandler(folder)
        if root.level > logging.INFO or root.level == logging.NOTSET:
            root.setLevel(logging.INFO)
        if console_level is not None and not any(isinstance(h, _Stderr) for h in root.handlers):
            console = _Stderr()
            console.setLevel(console_level)
            console.setFormatter(logging.Formatter("studio: %(levelname)s: %(message)s"))
            root.addHandler(console)
        if not getattr(sys.excepthook, "_studio", False) or not getattr(threading.excepthook, "_studio", False):
            _install_hooks()  # first call, or something (a test harness) put its own hooks in since
    handler = _state["handler"]
    return Path(handler.baseFilename) if handler is not None else None


class _Stderr(logging.Handler):
    """Writes to whatever sys.stderr is when a record comes (a test may have swapped it; a windowed
    build on Windows has none, and then the log file has it all)."""

    def emit(self, record: logging.LogRecord) -> None:
        stream = sys.stderr
        if stream is None:
            return
        try:
            stream.write(self.format(record) + "\n")
            stream.flush()
        except Exception:  # noqa: BLE001 — logging's own rule: a failing handler reports, never raises
            self.handleError(record)


def _enable_faulthandler(folder: Path) -> None:
    try:
        fh = open(folder / FAULTS_NAME, "a", encoding="utf-8")  # noqa: SIM115 — kept open for the process
    except OSError:
        return
    previous = _state["faults"]
    faulthandler.enable(file=fh, all_threads=True)
    _state["faults"] = fh
    if previous is not None:
        previous.close()


def add_listener(listener: Listener) -> None:
    """Call `listener(exc_info, thread_name)` for every uncaught exception (the window's crash dialog)."""
    _listeners.append(listener)


def remove_listener(listener: Listener) -> None:
    if listener in _listeners:
        _listeners.remove(listener)


def report_exception(exc_info: ExcInfo, thread: str = "") -> None:
    """Log an uncaught exception with its traceback and tell the listeners."""
    logging.getLogger("studio").critical(
        "uncaught exception%s", f" in thread {thread}" if thread else "", exc_info=exc_info
    )
    for listener in list(_listeners):
        try:
            listener(exc_info, thread)
        except Exception:
            logging.getLogger("studio").exception("crash listener failed")


def _install_hooks() -> None:
    previous_sys, previous_thread = sys.excepthook, threading.excepthook

    def sys_hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if issubclass(exc_type, KeyboardInterrupt):
            previous_sys(exc_type, exc, tb)
            return
        report_exception((exc_type, exc, tb), threading.current_thread().name)
        if not _listeners:
            previous_sys(exc_type, exc, tb)

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit:
            return
        name = args.thread.name if args.thread is not None else ""
        report_exception((args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback), name)
        if not _listeners:
            previous_thread(args)

    sys_hook._studio = thread_hook._studio = True  # type: ignore[attr-defined]
    sys.excepthook = sys_hook
    threading.excepthook = thread_hook


def tail(lines: int = 200) -> list[str]:
    """The last lines of the log file."""
    try:
        with open(log_file(), encoding="utf-8", errors="replace") as fh:
            return fh.read().splitlines()[-lines:]
    except OSError:
        return []


def versions() -> dict[str, str]:
    from importlib import metadata

    from studio import __version__

    out = {"studio": __version__, "python": platform.python_version(), "platform": platform.platform()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def redact(text: str, prompts: Iterable[str]) -> str:
    """`text` with each of `prompts` (longest first) replaced by a marker."""
    for p in sorted({p.strip() for p in prompts if p and p.strip()}, key=len, reverse=True):
        text = text.replace(p, HIDDEN)
    return text


def crash_report(
    exc_info: ExcInfo | None = None,
    *,
    device: dict[str, Any] | None = None,
    prompts: Iterable[str] = (),
    include_prompts: bool = False,
    lines: int = 60,
) -> str:
    """A report to paste into a bug: versions, device, the error, the log's last `lines` lines.
    The `prompts` the studio knows of are hidden unless `include_prompts`."""
    parts = ["Studio crash report", ""]
    parts += [f"{k}: {v}" for k, v in versions().items()]
    if device:
        parts.append("device: " + ", ".join(f"{k}={v}" for k, v in device.items() if v not in (None, "")))
    if exc_info is not None:
        parts += ["", "error:", "".join(traceback.format_exception(*exc_info)).rstrip()]
    parts += ["", f"last {lines} lines of {log_file()}:", *tail(lines)]
    text = "\n".join(parts) + "\n"
    return text if include_prompts else redact(text, prompts)
