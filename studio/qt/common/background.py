"""Short background jobs of the model manager (scanning folders, importing, downloading) on a QThread.

`Task(fn)` runs `fn(report, cancel)` on its own thread: `report(obj)` arrives as `progressed(obj)`
on the GUI thread, `cancel` is a `threading.Event` the function checks. The result arrives as
`succeeded(result)`, a `StudioError` as `failed(message, hint)`. Running tasks are kept referenced
here until they end, so closing a dialog never destroys a thread that still runs.
"""

from __future__ import annotations

import logging
import threading
import traceback
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QThread, Signal

from studio.core.errors import StudioError

log = logging.getLogger(__name__)
_RUNNING: set[Task] = set()


class Task(QThread):
    progressed = Signal(object)
    succeeded = Signal(object)
    failed = Signal(str, str)

    def __init__(self, fn: Callable[[Callable[[Any], None], threading.Event], Any], name: str = "studio-task") -> None:
        super().__init__()
        self.setObjectName(name)
        self.fn = fn
        self.cancel_event = threading.Event()
        self.finished.connect(lambda: _RUNNING.discard(self))

    def start(self, *args, **kwargs) -> None:
        _RUNNING.add(self)
        super().start(*args, **kwargs)

    def cancel(self) -> None:
        self.cancel_event.set()

    def run(self) -> None:
        try:
            result = self.fn(self.progressed.emit, self.cancel_event)
        except StudioError as exc:
            self.failed.emit(exc.message, exc.hint)
        except Exception as exc:  # noqa: BLE001 — reported, never fatal
            log.error("%s failed:\n%s", self.objectName(), traceback.format_exc())
            self.failed.emit(f"{type(exc).__name__}: {exc}", "See the log for details.")
        else:
            self.succeeded.emit(result)


def running() -> list[Task]:
    return [t for t in list(_RUNNING) if t.isRunning()]


def stop_all(timeout_ms: int = 10_000) -> bool:
    """Cancel every running task and wait for them (the window calls this when it closes)."""
    tasks = running()
    for t in tasks:
        t.cancel()
    return all(t.wait(timeout_ms) for t in tasks)
