"""The window's link to the durable queue (`studio.core.queue`): its store in the library's database,
the window's runner identity and its runner lock. No Qt here: `EngineBridge` calls it from the GUI
thread (add, claim, cancel, reorder, edit) and `EngineWorker` from the engine thread (`run`).

The window runs the library's queue while it holds the runner lock. When `studio queue run` holds
it, the window's jobs wait in the store (that runner may take them) and the window tries again
every few seconds.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from studio.core.errors import StudioError
from studio.core.queue import Claim, Job, JobStore, Outcome, QueueBusy, QueueRunner, RunnerId, RunnerLock
from studio.core.request import GenerationRequest

log = logging.getLogger(__name__)
RUNNER_NAME = "the studio window"


class QueueLink:
    def __init__(self, library: str | Path | None = None) -> None:
        self.store = JobStore.open(library)
        self.runner = RunnerId.here(RUNNER_NAME)
        self._lock = RunnerLock(self.store.root, RUNNER_NAME)
        self.busy_message = ""  # why the window does not run the queue now ("" when it holds the lock)

    # -- the runner lock -------------------------------------------------------------------------------
    @property
    def holds_lock(self) -> bool:
        return self._lock.held

    def try_lock(self) -> bool:
        """Take the runner lock if free; True when the window holds it."""
        if self._lock.held:
            return True
        try:
            self._lock.acquire()
        except QueueBusy as exc:
            self.busy_message = exc.message
            return False
        except StudioError as exc:  # the library cannot be locked at all: run without the guard
            log.warning("queue lock: %s", exc)
            self.busy_message = ""
            return True
        self.busy_message = ""
        return True

    def close(self) -> None:
        self._lock.release()
        self.store.close()

    # -- jobs ------------------------------------------------------------------------------------------
    def add(self, request: GenerationRequest, latent: np.ndarray | None, parent_id: str | None) -> Job:
        return self.store.add(request, source="window", parent_id=parent_id, latent=latent)

    def claim(self, job_id: str) -> Claim | None:
        try:
            return self.store.claim(self.runner, job_id=job_id)
        except StudioError as exc:
            log.warning("could not take job %s from the queue: %s", job_id[:8], exc)
            return None

    def leftovers(self) -> tuple[list[Job], int]:
        """At start: the jobs that wait from before (a crash, a closed window, `studio queue add`), and
        how many of them were running when their runner stopped."""
        self.store.recover()  # a job whose runner died waits again, marked interrupted
        waiting = self.store.jobs(("waiting",))
        return waiting, sum(1 for j in waiting if j.was_running)

    def state(self, job_id: str) -> Job | None:
        try:
            return self.store.get(job_id)
        except StudioError:
            return None

    def run(
        self,
        engine: Any,
        claim: Claim,
        cancel: threading.Event,
        give_back: Callable[[], bool],
        on_step: Callable,
        on_progress: Callable,
    ) -> Outcome:
        """Engine thread: run a claimed job to its end (its images land in the gallery with it). A cancel
        cancels the job, unless `give_back()` then says the window is closing: it waits again."""
        runner = QueueRunner(self.store, engine, runner=self.runner)
        return runner.run_claimed(
            claim, cancel=cancel, give_back_on_cancel=give_back, on_step=on_step, on_progress=on_progress
        )
