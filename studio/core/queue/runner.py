"""Running queued jobs: claim one, generate it, land its images, repeat until none wait.

`QueueRunner` is plain Python: it is handed an engine (anything with `Engine.generate`'s
signature), so `studio queue run`, the window's engine thread and a cluster worker run jobs the
same way. While a job runs, a heartbeat thread renews its lease and passes on a cancel asked for
from elsewhere (the window's Queue panel, `studio queue cancel`). Every few seconds the step's
latent is kept in the job's row, so a text-to-image job interrupted by a crash continues from that
step when it runs again (recorded as a branch of its own run at that step: the recipe says so).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.core import faults
from studio.core.errors import StudioError
from studio.core.gallery.record import complete_model_hash, keep_steps, out_path_for, result_info
from studio.core.gallery.store import GalleryItem
from studio.core.queue.jobs import GIVEN_BACK, LEASE_S, Claim, RunnerId, WorkerLost
from studio.core.queue.store import JobStore
from studio.core.request import BranchRef, GenerationRequest
from studio.core.results import GenerationResult, StepPreview

log = logging.getLogger(__name__)
KEEP_EVERY_S = 10.0  # how often a running job's step latent is kept for resuming after a crash


@dataclass
class Outcome:
    """How one job ended for this runner."""

    job_id: str
    status: str  # done | failed | cancelled | requeued (given back, e.g. Ctrl+C) | lost (lease taken over)
    items: list[GalleryItem] = field(default_factory=list)
    result: GenerationResult | None = None
    error: str = ""
    hint: str = ""
    resumed_from: int | None = None


def resumable(request: GenerationRequest) -> bool:
    """Whether a run of `request` can continue from a kept step (text-to-image; not a branch)."""
    return request.init_image is None and request.branch is None


class _Heartbeat(threading.Thread):
    def __init__(self, store: JobStore, claim: Claim, cancel: threading.Event, lease_s: float) -> None:
        super().__init__(name=f"queue-lease-{claim.job.id[:8]}", daemon=True)
        self.store, self.claim, self.cancel, self.lease_s = store, claim, cancel, lease_s
        self.stopped = threading.Event()
        self.lost = False

    def run(self) -> None:
        while not self.stopped.wait(max(0.2, self.lease_s / 6)):
            try:
                held, cancel_asked = self.store.heartbeat(self.claim, self.lease_s)
            except StudioError as exc:  # the database is busy or gone: try again next beat
                log.warning("queue lease not renewed: %s", exc)
                continue
            if not held:
                self.lost = True
            if cancel_asked or not held:
                self.cancel.set()

    def stop(self) -> None:
        self.stopped.set()
        if self.is_alive() and self is not threading.current_thread():
            self.join(timeout=5)


class QueueRunner:
    def __init__(
        self,
        store: JobStore,
        engine: Any,
        *,
        runner: RunnerId | None = None,
        lease_s: float = LEASE_S,
        keep_every_s: float = KEEP_EVERY_S,
        on_outcome: Callable[[Outcome], None] | None = None,
    ) -> None:
        self.store = store
        self.engine = engine
        self.runner = runner or RunnerId.here("queue runner")
        self.lease_s = lease_s
        self.keep_every_s = keep_every_s
        self.on_outcome = on_outcome
        self.current: Claim | None = None

    def run(
        self, stop: threading.Event | None = None, abandon: threading.Event | None = None, max_jobs: int | None = None
    ) -> list[Outcome]:
        """Run jobs until none wait (or `stop` is set: the current job is finished first; `abandon`
        cancels it and gives it back to the queue)."""
        outcomes: list[Outcome] = []
        self.store.prune()
        while not (stop is not None and stop.is_set()) and (max_jobs is None or len(outcomes) < max_jobs):
            claim = self.store.claim(self.runner, lease_s=self.lease_s)
            if claim is None:
                break
            outcome = self.run_claimed(claim, cancel=abandon, give_back_on_cancel=abandon is not None)
            outcomes.append(outcome)
            if self.on_outcome is not None:
                self.on_outcome(outcome)
            if outcome.status == "requeued":
                break
        return outcomes

    def run_claimed(
        self,
        claim: Claim,
        *,
        cancel: threading.Event | None = None,
        give_back_on_cancel: bool | Callable[[], bool] = False,
        on_step: Callable[[StepPreview], None] | None = None,
        on_progress: Callable[[Any], None] | None = None,
    ) -> Outcome:
        """Run one claimed job to its end. `cancel` set from outside stops it within a step: the job is
        then cancelled, or given back to the queue uncounted with `give_back_on_cancel` (or when that
        callable, asked then, says so: the window gives its job back when it closes)."""
        job = claim.job
        self.current = claim
        stop = threading.Event()  # set by the heartbeat (cancel asked elsewhere, lease lost) or by `cancel`
        beat = _Heartbeat(self.store, claim, stop, self.lease_s)
        watcher = None
        if cancel is not None:
            watcher = threading.Thread(target=_forward, args=(cancel, stop, beat.stopped), daemon=True)
            watcher.start()
        beat.start()
        try:
            return self._run(claim, stop, cancel, give_back_on_cancel, beat, on_step, on_progress)
        finally:
            beat.stop()
            if watcher is not None:
                watcher.join(timeout=5)
            self.current = None
            log.info("queue job %s ended", job.id[:8])

    def _run(
        self,
        claim: Claim,
        stop: threading.Event,
        cancel: threading.Event | None,
        give_back: bool | Callable[[], bool],
        beat: _Heartbeat,
        on_step: Callable[[StepPreview], None] | None,
        on_progress: Callable[[Any], None] | None,
    ) -> Outcome:
        job = claim.job
        try:
            request = job.request
        except StudioError as exc:
            self.store.finish(claim, "failed", f"The job's recipe cannot be read: {exc}")
            return Outcome(job.id, "failed", error=str(exc))
        landed = self.store.landed(job.id)
        if len(landed) >= request.batch_size and self.store.settle(job.id):  # every image is in already
            return Outcome(job.id, "done", items=list(self.store.gallery.get_many(landed.values()).values()))
        branch_latent = self.store.latent(job.id)
        resumed_from = None
        point = self.store.resume_point(job.id) if resumable(request) else None
        if point is not None and 0 < point[0] < request.steps:
            resumed_from, branch_latent = point
            run_request = request.replace(branch=BranchRef(parent_id=job.id, step=resumed_from))
        else:
            run_request = request
        kept_at = [time.monotonic()]
        made: list[StepPreview] = []  # kept with the gallery images (studio.core.gallery.steps)

        def step(preview: StepPreview) -> None:
            faults.point("job:step")
            made.append(preview)
            if (
                resumable(request)
                and preview.latent is not None
                and preview.step < preview.total
                and time.monotonic() - kept_at[0] >= self.keep_every_s
            ):
                kept_at[0] = time.monotonic()
                try:
                    self.store.keep_step(claim, preview.step, preview.latent)
                except StudioError as exc:
                    log.warning("step %d not kept: %s", preview.step, exc)
            if on_step is not None:
                on_step(preview)

        try:
            result = self.engine.generate(
                run_request, on_step=step, cancel=stop, on_progress=on_progress, branch_latent=branch_latent
            )
        except WorkerLost as exc:  # a cluster worker went away mid-job: the job waits for another one
            if exc.give_back:
                self.store.finish(claim, "waiting", GIVEN_BACK)
                return Outcome(job.id, "requeued", error=exc.message, hint=exc.hint)
            state = self.store.interrupt(claim, exc.message)
            return Outcome(job.id, "requeued" if state == "waiting" else state, error=exc.message, hint=exc.hint)
        except StudioError as exc:
            self.store.finish(claim, "failed", exc.message, exc.hint)
            return Outcome(job.id, "failed", error=exc.message, hint=exc.hint)
        except Exception as exc:
            log.exception("queue job %s failed", job.id)
            message = f"Generation failed: {type(exc).__name__}: {exc}"
            hint = "The details are in the log. The other jobs still run."
            self.store.finish(claim, "failed", message, hint)
            return Outcome(job.id, "failed", error=message, hint=hint)
        faults.point("job:generated")
        if result.cancelled or not result.images:
            if beat.lost:
                return Outcome(job.id, "lost", result=result)
            if cancel is not None and cancel.is_set() and (give_back() if callable(give_back) else give_back):
                self.store.finish(claim, "waiting", GIVEN_BACK)
                return Outcome(job.id, "requeued", result=result)
            self.store.finish(claim, "cancelled", f"cancelled at step {result.steps_done} of {result.total_steps}")
            return Outcome(job.id, "cancelled", result=result)
        return self._land(claim, result, landed, resumed_from, made)

    def _land(
        self,
        claim: Claim,
        result: GenerationResult,
        landed: dict[int, str],
        resumed_from: int | None,
        steps: list[StepPreview] | None = None,
    ) -> Outcome:
        job = claim.job
        complete_model_hash(result)
        out = Path(job.out_path) if job.out_path else None
        items: list[GalleryItem] = []
        try:
            for i, image in enumerate(result.images):
                if i in landed:
                    continue
                items.append(
                    self.store.gallery.add_image(
                        image,
                        result.request,
                        info=result_info(result, i),
                        parent_id=job.parent_id,
                        run_id=job.id,
                        batch_index=i,
                        finalize=self.store.lander(job.id),
                        out_path=out_path_for(out, i, len(result.images)) if out is not None else None,
                    )
                )
        except StudioError as exc:
            self.store.finish(claim, "failed", exc.message, exc.hint)
            return Outcome(job.id, "failed", items=items, result=result, error=exc.message, hint=exc.hint)
        state = self.store.get(job.id).state
        if state != "done":  # images of the batch the gallery has more than once? settle what is there
            self.store.finish(claim, "failed", "not every image of the batch was saved")
            return Outcome(job.id, "failed", items=items, result=result, error="not every image was saved")
        faults.point("job:done")
        if steps:  # the steps stay with the images, to scrub and branch from after a restart
            keep_steps(self.store.gallery, job.id, result, steps)
        return Outcome(job.id, "done", items=items, result=result, resumed_from=resumed_from)


def _forward(source: threading.Event, target: threading.Event, until: threading.Event) -> None:
    while not until.is_set():
        if source.wait(0.1):
            target.set()
            return
