"""One queue runner at a time per library: an OS file lock beside the gallery database.

The lock is `filelock`'s (fcntl on Linux and macOS, msvcrt on Windows): the operating system lets
it go when its process dies, `kill -9` included, so a crash never leaves the library locked. Who
holds it (what, which process, since when) is written beside it for the message a second runner
shows. Other consumers of the same store (a cluster's workers) do not need it: claims are atomic.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from studio.core.files import atomic_write
from studio.core.queue.jobs import QueueError, process_started, runner_alive

LOCK_NAME = ".queue-runner.lock"
INFO_NAME = ".queue-runner.json"


class QueueBusy(QueueError):
    code = "queue-busy"


class RunnerLock:
    """`with RunnerLock(library, "studio queue run"):` — raises QueueBusy if another holds it."""

    def __init__(self, library: str | os.PathLike[str], name: str) -> None:
        from filelock import FileLock

        self.root = Path(library)
        self.name = name
        self._lock = FileLock(str(self.root / LOCK_NAME), timeout=0, thread_local=False)

    @property
    def held(self) -> bool:
        return self._lock.is_locked

    def holder(self) -> dict[str, Any] | None:
        """What the lock's holder wrote about itself (None when nothing live holds it)."""
        try:
            info = json.loads((self.root / INFO_NAME).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(info, dict):
            return None
        alive = runner_alive(str(info.get("host", "")), int(info.get("pid") or 0), info.get("started"))
        return None if alive is False else info

    def acquire(self) -> None:
        from filelock import Timeout

        try:
            self._lock.acquire()
        except Timeout:
            info = self.holder() or {}
            who = info.get("name") or "another queue runner"
            since = ""
            if info.get("since"):
                since = f", since {datetime.fromtimestamp(float(info['since'])):%H:%M}"
            pid = f" (pid {info['pid']}{since})" if info.get("pid") else ""
            raise QueueBusy(
                f"{who}{pid} is already running this library's queue ({self.root}).",
                "Only one runner at a time: it runs the jobs you add; stop it first to run them here.",
            ) from None
        except OSError as exc:
            raise QueueError(f"cannot lock the queue of {self.root}: {exc.strerror or exc}") from None
        info = {
            "name": self.name,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": process_started(os.getpid()),
            "since": time.time(),
        }
        with contextlib.suppress(OSError):  # without it, only a second runner's message is vaguer
            atomic_write(self.root / INFO_NAME, json.dumps(info).encode())

    def release(self) -> None:
        if self._lock.is_locked:
            with contextlib.suppress(OSError):
                (self.root / INFO_NAME).unlink(missing_ok=True)
            self._lock.release()

    def __enter__(self) -> RunnerLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
