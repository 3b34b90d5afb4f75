"""The durable queue: jobs kept in the library's SQLite database beside the gallery.

- `JobStore(gallery)` / `JobStore.open(library)` — add, list, claim, cancel, retry, reorder, edit;
- `QueueRunner(store, engine)` — runs jobs until none wait (the CLI, the window, cluster workers);
- `RunnerLock(library, name)` — one `studio queue run` or window per library at a time.
"""

from __future__ import annotations

from studio.core.queue.jobs import (
    OPEN_STATES,
    STATES,
    Claim,
    Job,
    JobNotFound,
    QueueError,
    RunnerId,
    WorkerLost,
)
from studio.core.queue.lock import QueueBusy, RunnerLock
from studio.core.queue.runner import Outcome, QueueRunner
from studio.core.queue.store import JobStore

__all__ = [
    "OPEN_STATES",
    "STATES",
    "Claim",
    "Job",
    "JobNotFound",
    "JobStore",
    "Outcome",
    "QueueBusy",
    "QueueError",
    "QueueRunner",
    "RunnerId",
    "RunnerLock",
    "WorkerLost",
]
