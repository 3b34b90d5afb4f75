"""The durable queue run by a cluster's workers: one `QueueRunner` per worker, on this machine.

Each worker gets a thread here that claims the next waiting job from the local `JobStore`, runs it
on that worker through a `RemoteEngine` and lands its images in the local gallery — the queue's
own transaction, so nothing is lost and nothing made twice whatever dies when. A worker that dies
mid-job gives its job back to the queue (`WorkerLost`); its thread waits for Ray to restart it
and goes on. A worker the cluster has no room for yet takes jobs once a node joins. If the cluster
itself goes away (its address stops answering), every running job is given back and `run` raises
`ClusterLost`: the queue is intact for the next run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from studio.cluster.connect import ClusterError, reachable
from studio.cluster.remote import RemoteEngine
from studio.core.queue import JobStore, Outcome, QueueRunner, RunnerId
from studio.core.results import StepPreview

log = logging.getLogger(__name__)


class ClusterLost(ClusterError):
    code = "cluster-lost"


class ClusterQueue:
    def __init__(
        self,
        store: JobStore,
        handles: list[Any],
        *,
        address: str = "",
        keep_every_s: float = 10.0,
        on_outcome: Callable[[Outcome], None] | None = None,
        on_step: Callable[[RemoteEngine, str, StepPreview], None] | None = None,
        on_progress: Callable[[RemoteEngine, str, Any], None] | None = None,
        options: Callable[[], dict[str, Any]] | None = None,
    ) -> None:
        self.store = store
        self.address = address
        self.lost = threading.Event()
        self.keep_every_s = keep_every_s
        self.on_outcome = on_outcome
        self.on_step = on_step
        self.on_progress = on_progress
        self.engines = [RemoteEngine(h, f"worker {i + 1}", lost=self.lost) for i, h in enumerate(handles)]
        self._options = options
        self.outcomes: list[Outcome] = []
        self._active: set[str] = set()
        self._lock = threading.Lock()

    def _health(self, done: threading.Event) -> None:
        """Watch the cluster's address; three missed answers in a row and the cluster is lost."""
        misses = 0
        while not done.wait(1.0):
            if not self.address or self.address in ("gpus", "in-process") or self.address.startswith("ray://"):
                return
            misses = 0 if reachable(self.address, 1.0) else misses + 1
            if misses >= 3:
                log.warning("the Ray cluster at %s stopped answering", self.address)
                self.lost.set()
                return

    def run(
        self,
        stop: threading.Event | None = None,
        abandon: threading.Event | None = None,
        timeout_s: float | None = None,
    ) -> list[Outcome]:
        """Run jobs until none wait and none run (`stop`: finish the running jobs, then stop;
        `abandon`: stop them now and give them back)."""
        stop = stop or threading.Event()
        abandon = abandon or threading.Event()
        done = threading.Event()
        self.store.prune()
        threads = [
            threading.Thread(target=self._loop, args=(e, stop, abandon), name=f"cluster-{e.name}", daemon=True)
            for e in self.engines
        ]
        health = threading.Thread(target=self._health, args=(done,), daemon=True)
        health.start()
        for t in threads:
            t.start()
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        for t in threads:
            t.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        done.set()
        if self.lost.is_set():
            raise ClusterLost(
                f"lost the Ray cluster at {self.address}; the queue is intact "
                f"({self.store.counts()['waiting']} jobs wait for the next run)",
                "Start the cluster again (or run on this machine) and run the queue again.",
            )
        return self.outcomes

    def _loop(self, engine: RemoteEngine, stop: threading.Event, abandon: threading.Event) -> None:
        here = RunnerId.here(f"cluster {engine.name}")
        runner = QueueRunner(self.store, engine, runner=here, keep_every_s=self.keep_every_s)
        engine.options = self._options or (lambda: runner.current.job.options if runner.current is not None else {})
        engine.label = lambda: runner.current.job.id if runner.current is not None else ""
        up = False
        while not (stop.is_set() or abandon.is_set() or self.lost.is_set()):
            if not up:
                up = engine.ready(timeout=2.0)
                if not up:
                    if self._finished():
                        return
                    continue
            claim = self.store.claim(here, lease_s=runner.lease_s)
            if claim is None:
                if self._finished():
                    return
                time.sleep(0.2)
                continue
            with self._lock:
                self._active.add(claim.job.id)
            try:
                step = None
                if self.on_step is not None:
                    job_id, hook = claim.job.id, self.on_step

                    def step(p: StepPreview, job_id: str = job_id, hook: Any = hook) -> None:
                        hook(engine, job_id, p)

                progress = None
                if self.on_progress is not None:
                    job_id, report = claim.job.id, self.on_progress

                    def progress(p: Any, job_id: str = job_id, report: Any = report) -> None:
                        report(engine, job_id, p)  # model loading, and files being sent to the worker

                outcome = runner.run_claimed(
                    claim, cancel=abandon, give_back_on_cancel=True, on_step=step, on_progress=progress
                )
            finally:
                with self._lock:
                    self._active.discard(claim.job.id)
            with self._lock:
                self.outcomes.append(outcome)
            if self.on_outcome is not None:
                self.on_outcome(outcome)
            if outcome.status == "requeued":
                up = False  # the worker went away (or was busy): wait for it to answer again

    def _finished(self) -> bool:
        with self._lock:
            if self._active:
                return False
        return self.store.counts()["waiting"] == 0
