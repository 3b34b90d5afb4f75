"""The bridge to the engine thread.

One long-lived `QThread` runs an `EngineWorker` that owns the `Engine` (torch is imported there,
never on the GUI thread). The GUI thread only ever *sends*: a job to run, or a cancel flag
(`threading.Event`). It never waits on the worker, except once when the window closes.

Queue: pending jobs live here, on the GUI side, so reordering and removing them is instant; the
worker is handed one job at a time and reports back with queued signals carrying plain data
(`StepPreview`, `GenerationResult`, dicts, strings).

Preview throttling: the worker drops every step into the job's mailbox and emits
`stepsAvailable` only when the mailbox was empty, so at most one notification per job is ever
waiting in the GUI's event queue however fast the steps come. The GUI drains the mailbox at most
once per screen refresh and hands *all* steps on (for the history) in one batch; the window paints
only the newest.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QThread, QTimer, Signal, Slot
from PySide6.QtGui import QGuiApplication

from studio.core.errors import InvalidRequest, StudioError
from studio.core.request import GenerationRequest
from studio.core.results import GenerationResult, LoadProgress, StepPreview
from studio.qt.generate.workers import WorkersLink

log = logging.getLogger(__name__)


@dataclass
class Job:
    request: GenerationRequest
    branch_latent: np.ndarray | None = None
    gallery_parent: str | None = None  # gallery item id of the image this run continues, if any
    job_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    cancel: threading.Event = field(default_factory=threading.Event)
    state: str = "queued"  # queued | running | done | cancelled | failed
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _mailbox: list[StepPreview] = field(default_factory=list, repr=False)
    _notified: bool = False
    last_posted: int = 0  # the newest step the worker has finished (read by cancel bookkeeping)
    cancelled_at: int | None = None  # last_posted when cancel was asked for
    claim: Any = None  # the durable queue's claim (studio.core.queue.Claim) while it runs, with a QueueLink
    give_back: bool = False  # cancelled because the window closes: back to the queue, not cancelled

    def post(self, preview: StepPreview) -> bool:
        """Worker side: keep a step; True when the GUI must be told (its mailbox was empty)."""
        with self._lock:
            self.last_posted = preview.step
            self._mailbox.append(preview)
            if self._notified:
                return False
            self._notified = True
            return True

    def take(self) -> list[StepPreview]:
        """GUI side: everything posted since the last call, oldest first."""
        with self._lock:
            out, self._mailbox = self._mailbox, []
            self._notified = False
            return out


ENGINE_NICE = 4  # how much less CPU priority the engine thread (and torch's threads it starts) gets


def lower_thread_priority(nice: int = ENGINE_NICE) -> None:
    """Let the GUI thread win the CPU when both want it: on Linux a thread's nice value is its own, and
    the threads it starts (torch's intra-op pool, created on first use by this thread) inherit it."""
    if not sys.platform.startswith("linux"):
        return
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + nice))
    except OSError:  # not permitted or not supported: the window still works, just less smoothly under load
        pass


class EngineWorker(QObject):
    """Lives on the engine thread. Owns the engine; runs one job at a time."""

    ready = Signal(object)  # dict: device, dtype, name
    initFailed = Signal(str, str)
    tokenizerReady = Signal(object)
    started = Signal(str)
    loadProgress = Signal(str, str, float)  # job id, stage, fraction
    stepsAvailable = Signal(str)
    finished = Signal(str, object, object)  # job id, GenerationResult, gallery items (list)
    failed = Signal(str, str, str)  # job id, message, hint
    memory = Signal(object)  # dict from Engine.memory_info()
    modelLoaded = Signal(str, object)  # model, dict(name, arch) — after a preload
    modelFailed = Signal(str, str, str)  # model, message, hint
    info = Signal(object)  # dict: device, dtype, name and Engine.describe() (preset, attention …) after a change

    def __init__(self, engine_factory: Callable[[], Any] | None = None, record: bool = True, link: Any = None) -> None:
        super().__init__()
        self._factory = engine_factory
        self.record = record
        self.link = link  # QueueLink: jobs come from the durable queue and land through it
        self.engine: Any = None
        self.workers = WorkersLink()  # this machine's engine, or a Ray worker (Device dialog ▸ Workers)
        self._last_mem = 0.0

    @Slot()
    def init(self) -> None:
        lower_thread_priority()
        try:
            from studio.core import embeddings
            from studio.core.prompts.chunks import TokenCounter
            from studio.engine.clip_vocab import build_clip_tokenizer

            found, _ = embeddings.find()  # the counter counts an embedding's vectors where its name stands
            vectors = {name: e.vectors for name, e in found.items()}
            self.tokenizerReady.emit(TokenCounter.from_tokenizer(build_clip_tokenizer(), vectors))
        except Exception as exc:  # noqa: BLE001 — the counter just stays approximate
            log.warning("no CLIP tokenizer for the token counter: %s", exc)
        try:
            if self._factory is not None:
                self.engine = self._factory()
            else:
                from studio.core import settings as core_settings
                from studio.engine.engine import Engine

                self.engine = Engine(device=core_settings.load().engine_device())
        except StudioError as exc:
            self.initFailed.emit(exc.message, exc.hint)
            return
        except Exception as exc:
            log.exception("engine start failed")
            self.initFailed.emit(f"The engine could not start: {exc}", "See the log for details.")
            return
        self.workers.apply_saved()  # chosen in an earlier session (a non-local address was confirmed then)
        self.ready.emit(self._describe())
        self._emit_memory(force=True)

    def _describe(self) -> dict:
        info = self.engine.device_info
        out = {"device": info.device, "dtype": info.dtype, "name": info.name, "workers": self.workers.status}
        if hasattr(self.engine, "describe"):
            try:
                out.update(self.engine.describe())
            except Exception as exc:  # noqa: BLE001 — a nicety: the device line still shows
                log.warning("engine describe: %s", exc)
        return out

    @Slot(object)
    def configure(self, options: dict) -> None:
        """Settings changed while the engine runs (preset, OOM fallback, tiny autoencoders): from the next run."""
        if self.engine is None:
            return
        try:
            if "preset" in options and hasattr(self.engine, "set_preset"):
                preset = options["preset"]
                if preset in (None, "", "auto"):
                    from studio.engine.memory import auto_preset

                    preset = auto_preset(self.engine.device_info, self.engine.memory_info().get("total_mb"))
                self.engine.set_preset(preset)
            if "auto_fallback" in options and hasattr(self.engine, "auto_fallback"):
                self.engine.auto_fallback = bool(options["auto_fallback"])
            if "taesd" in options and hasattr(self.engine, "set_taesd"):
                self.engine.set_taesd(dict(options["taesd"]))
            if "workers" in options:
                self.workers.apply(options["workers"], options.get("cluster_address", ""))
        except StudioError as exc:
            log.warning("engine settings not applied: %s", exc)
        self.info.emit(self._describe())
        self._emit_memory(force=True)

    @Slot()
    def refresh_memory(self) -> None:
        self._emit_memory(force=True)

    def _emit_memory(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.engine is None or (not force and now - self._last_mem < 1.0):
            return
        self._last_mem = now
        with contextlib.suppress(Exception):  # memory figures are a nicety
            self.memory.emit(dict(self.engine.memory_info()))

    @Slot(str, object)
    def preload(self, model: str, parts: Any = None) -> None:
        """Load a model ahead of the first request, so a bad file is reported at once. `parts`: the
        (text-encoder files, VAE) a FLUX/SD3 transformer-only file is loaded with."""
        if self.engine is None:
            return

        def on_progress(p: LoadProgress) -> None:
            self.loadProgress.emit("", p.stage, float(p.fraction))

        try:
            lm = self.engine.load(model, on_progress=on_progress, parts=parts or ((), ""))
        except StudioError as exc:
            self.modelFailed.emit(model, exc.message, exc.hint)
            return
        except Exception as exc:  # noqa: BLE001 — reported to the window, never raised in the worker
            log.error("loading %s failed:\n%s", model, traceback.format_exc())
            self.modelFailed.emit(
                model, f"The model could not be loaded: {type(exc).__name__}: {exc}", "See the log for details."
            )
            return
        self.modelLoaded.emit(model, {"name": getattr(lm, "name", model), "arch": getattr(lm, "arch", "")})
        self._emit_memory(force=True)

    @Slot(object)
    def run(self, job: Job) -> None:
        if self.engine is None:
            self.failed.emit(
                job.job_id, "The engine is not running.", "Restart the studio; see the log for why it stopped."
            )
            return
        if job.cancel.is_set():
            self.finished.emit(job.job_id, GenerationResult(request=job.request, status="cancelled"), [])
            return
        self.started.emit(job.job_id)
        made: list[StepPreview] = []  # kept with the gallery images (studio.core.gallery.steps)

        def on_step(preview: StepPreview) -> None:
            made.append(preview)
            if job.post(preview):
                self.stepsAvailable.emit(job.job_id)
            self._emit_memory()

        def on_progress(p: LoadProgress) -> None:
            self.loadProgress.emit(job.job_id, p.stage, float(p.fraction))

        if job.claim is not None and self.link is not None:
            self._run_queued(job, on_step, on_progress)
            return
        try:
            result = self.workers.engine_for(self.engine).generate(
                job.request,
                on_step=on_step,
                cancel=job.cancel,
                on_progress=on_progress,
                branch_latent=job.branch_latent,
            )
        except StudioError as exc:
            self.failed.emit(job.job_id, exc.message, exc.hint)
            self._emit_memory(force=True)
            return
        except Exception as exc:  # noqa: BLE001 — reported to the window, never raised in the worker
            log.error("generation failed:\n%s", traceback.format_exc())
            self.failed.emit(
                job.job_id,
                f"Generation failed: {type(exc).__name__}: {exc}",
                "The details are in the log. The next request will still run.",
            )
            self._emit_memory(force=True)
            return
        items: list[Any] = []
        if self.record and result.images and not result.cancelled:
            try:
                from studio.core.gallery.record import record_result

                result.run_id = result.run_id or job.job_id
                items = record_result(result, parent_id=job.gallery_parent, steps=made)
            except Exception as exc:  # noqa: BLE001 — the image is still on the canvas; say so, don't lose the run
                log.warning("could not save to the gallery: %s", exc)
                result.gallery_error = str(exc)
        self.finished.emit(job.job_id, result, items)
        self._emit_memory(force=True)

    def _run_queued(self, job: Job, on_step: Callable, on_progress: Callable) -> None:
        """A job of the durable queue: generated, and its images landed with the job in one commit."""
        try:
            engine = self.workers.engine_for(self.engine)
            outcome = self.link.run(engine, job.claim, job.cancel, lambda: job.give_back, on_step, on_progress)
        except Exception as exc:  # noqa: BLE001 — reported to the window, never raised in the worker
            log.error("queued job failed:\n%s", traceback.format_exc())
            outcome = None
            self.failed.emit(job.job_id, f"The queued job failed: {type(exc).__name__}: {exc}", "See the log.")
        if outcome is not None and outcome.status == "failed":
            self.failed.emit(job.job_id, outcome.error, outcome.hint)
        elif outcome is not None:
            result = outcome.result or GenerationResult(request=job.request, status="cancelled")
            self.finished.emit(job.job_id, result, outcome.items)
        self._emit_memory(force=True)


class EngineBridge(QObject):
    """GUI-thread side: the queue, cancel flags, and throttled delivery of steps."""

    engineReady = Signal(object)
    engineFailed = Signal(str, str)
    tokenizerReady = Signal(object)
    queueChanged = Signal()
    jobStarted = Signal(str)
    loadProgress = Signal(str, str, float)
    stepsReady = Signal(str, object)  # job id, list[StepPreview] (all of them, in order)
    jobFinished = Signal(str, object, object)  # job id, GenerationResult, gallery items
    jobFailed = Signal(str, str, str)
    jobRemoved = Signal(str)  # a queued job removed or cancelled before it started
    memory = Signal(object)
    modelLoaded = Signal(str, object)
    modelFailed = Signal(str, str, str)
    engineInfo = Signal(object)  # the device dict again after configure() (preset, attention …)
    _runJob = Signal(object)
    _preload = Signal(str, object)
    _configure = Signal(object)
    _refreshMemory = Signal()

    def __init__(
        self,
        engine_factory: Callable[[], Any] | None = None,
        record: bool = True,
        parent: QObject | None = None,
        link: Any = None,
    ) -> None:
        super().__init__(parent)
        self.pending: list[Job] = []
        self.current: Job | None = None
        self.device: dict | None = None
        self.link = link  # QueueLink: every job is kept in the library's durable queue (None: in memory only)
        self.paused = False
        self._thread = QThread()
        self._thread.setObjectName("studio-engine")
        self.worker = EngineWorker(engine_factory, record, link)
        self.worker.moveToThread(self._thread)
        self._thread.started.connect(self.worker.init)
        self._runJob.connect(self.worker.run)
        self._preload.connect(self.worker.preload)
        self._configure.connect(self.worker.configure)
        self._refreshMemory.connect(self.worker.refresh_memory)
        w = self.worker
        w.ready.connect(self._on_ready)
        w.initFailed.connect(self.engineFailed)
        w.tokenizerReady.connect(self.tokenizerReady)
        w.started.connect(self._on_started)
        w.loadProgress.connect(self.loadProgress)
        w.stepsAvailable.connect(self._on_steps_available)
        w.finished.connect(self._on_finished)
        w.failed.connect(self._on_failed)
        w.memory.connect(self.memory)
        w.modelLoaded.connect(self.modelLoaded)
        w.modelFailed.connect(self.modelFailed)
        w.info.connect(self._on_info)
        rate = 60.0
        screen = QGuiApplication.primaryScreen()
        if screen is not None and screen.refreshRate() > 1:
            rate = min(max(screen.refreshRate(), 24.0), 120.0)
        self.min_interval_ms = 1000.0 / rate
        self._last_drain = 0.0
        self._drain_timer = QTimer(self)
        self._drain_timer.setSingleShot(True)
        self._drain_timer.timeout.connect(self._drain)
        self.deliveries = 0  # how many batches went to the GUI (for the bench)
        self._thread.start()

    # -- queue ------------------------------------------------------------------------------------------
    def submit(
        self, request: GenerationRequest, branch_latent: np.ndarray | None = None, gallery_parent: str | None = None
    ) -> Job:
        job = Job(request, branch_latent, gallery_parent)
        if self.link is not None:  # kept in the database first: a crash from here on loses nothing
            job.job_id = self.link.add(request, branch_latent, gallery_parent).id
        self.pending.append(job)
        self.queueChanged.emit()
        self._pump()
        return job

    def preload(self, model: str, parts: Any = None) -> None:
        """Load `model` on the engine thread (after whatever it is doing); reports modelLoaded/modelFailed."""
        if self._thread.isRunning():
            self._preload.emit(model, parts)

    def configure(self, **options: Any) -> None:
        """Change engine settings (preset, auto_fallback, taesd) on the engine thread; engineInfo follows."""
        if self._thread.isRunning():
            self._configure.emit(options)

    def refresh_memory(self) -> None:
        """Ask for a fresh memory reading (the memory signal follows)."""
        if self._thread.isRunning():
            self._refreshMemory.emit()

    def jobs(self) -> list[Job]:
        return ([self.current] if self.current else []) + list(self.pending)

    def job(self, job_id: str) -> Job | None:
        return next((j for j in self.jobs() if j.job_id == job_id), None)

    @property
    def busy(self) -> bool:
        return self.current is not None or bool(self.pending)

    def adopt(self, stored: list[Any]) -> list[Job]:
        """Take the durable queue's waiting jobs (a crash's, `studio queue add`'s) into this queue; returns them."""
        known = {j.job_id for j in self.jobs()}
        new = []
        for s in stored:
            if s.id in known or self.link is None:
                continue
            try:
                request = s.request
            except StudioError as exc:
                log.warning("queued job %s has an unreadable recipe: %s", s.id[:8], exc)
                continue
            job = Job(request, self.link.store.latent(s.id), s.parent_id, job_id=s.id)
            self.pending.append(job)
            new.append(job)
        if new:
            self.queueChanged.emit()
            self._pump()
        return new

    def drop(
        self,
        job_id: str,
        result: GenerationResult | None = None,
        items: list[Any] | tuple = (),
        failed: tuple[str, str] | None = None,
    ) -> None:
        """A waiting job that left the queue elsewhere: run (`result`, `items`), failed or cancelled."""
        job = next((j for j in self.pending if j.job_id == job_id), None)
        if job is None:
            return
        self.pending.remove(job)
        if result is not None:
            job.state = result.status
            self.jobFinished.emit(job_id, result, list(items))
        elif failed is not None:
            job.state = "failed"
            self.jobFailed.emit(job_id, *failed)
        else:
            job.state = "cancelled"
            self.jobRemoved.emit(job_id)
        self.queueChanged.emit()

    def set_paused(self, paused: bool) -> None:
        """A paused queue finishes the running job and starts no other until resumed."""
        if paused != self.paused:
            self.paused = paused
            self.queueChanged.emit()
            self._pump()

    def move(self, job_id: str, delta: int) -> None:
        idx = next((i for i, j in enumerate(self.pending) if j.job_id == job_id), None)
        if idx is None:
            return
        new = max(0, min(len(self.pending) - 1, idx + delta))
        if new != idx:
            self.pending.insert(new, self.pending.pop(idx))
            self._store(lambda store: store.reorder([j.job_id for j in self.pending]))
            self.queueChanged.emit()

    def replace_request(self, job_id: str, request: GenerationRequest) -> None:
        """Change a waiting job's recipe (the store's copy first)."""
        job = next((j for j in self.pending if j.job_id == job_id), None)
        if job is None:
            raise InvalidRequest("Only a job that is still waiting can be edited.")
        if self.link is not None:
            self.link.store.update_request(job_id, request)
        job.request = request
        self.queueChanged.emit()

    def _store(self, change: Callable[[Any], Any]) -> None:
        if self.link is not None:
            try:
                change(self.link.store)
            except StudioError as exc:  # the job finished or left meanwhile: the window's view stays
                log.info("queue: %s", exc)

    def cancel(self, job_id: str) -> None:
        """Cancel the running job (stops within one step) or drop a queued one."""
        if self.current is not None and self.current.job_id == job_id:
            self._cancel_running()
            return
        for j in list(self.pending):
            if j.job_id == job_id:
                self.pending.remove(j)
                j.state = "cancelled"
                self._store(lambda store: store.cancel(job_id))
                self.jobRemoved.emit(job_id)
                self.queueChanged.emit()

    remove = cancel

    def cancel_all(self) -> None:
        for j in list(self.pending):
            self.cancel(j.job_id)
        if self.current is not None:
            self._cancel_running()

    def _cancel_running(self) -> None:
        job = self.current
        if job is not None and not job.cancel.is_set():
            with job._lock:
                job.cancelled_at = job.last_posted
            job.cancel.set()

    def _pump(self) -> None:
        if self.paused or (self.link is not None and not self.link.holds_lock):
            return  # paused, or another runner (`studio queue run`) has the library's queue
        while self.current is None and self.pending and self._thread.isRunning():
            job = self.pending.pop(0)
            if self.link is not None:
                job.claim = self.link.claim(job.job_id)
                if job.claim is None:  # cancelled or taken elsewhere meanwhile
                    job.state = "cancelled"
                    self.jobRemoved.emit(job.job_id)
                    self.queueChanged.emit()
                    continue
            self.current = job
            job.state = "running"
            self.queueChanged.emit()
            self._runJob.emit(job)

    # -- from the worker ------------------------------------------------------------------------------
    def _on_ready(self, info: dict) -> None:
        self.device = info
        self.engineReady.emit(info)

    def _on_info(self, info: dict) -> None:
        self.device = info
        self.engineInfo.emit(info)

    def _on_started(self, job_id: str) -> None:
        self.jobStarted.emit(job_id)

    def _on_steps_available(self, job_id: str) -> None:
        wait = self.min_interval_ms - (time.perf_counter() - self._last_drain) * 1000.0
        if wait <= 0:
            self._drain()
        elif not self._drain_timer.isActive():
            self._drain_timer.start(max(1, int(wait)))

    def _drain(self) -> None:
        job = self.current
        if job is None:
            return
        steps = job.take()
        if steps:
            self._last_drain = time.perf_counter()
            self.deliveries += 1
            self.stepsReady.emit(job.job_id, steps)

    def _finish(self, job_id: str) -> Job | None:
        job = self.current if self.current is not None and self.current.job_id == job_id else None
        if job is not None:
            self._drain_timer.stop()
            self._drain()  # every step arrives before the end of its run
            self.current = None
        return job

    def _on_finished(self, job_id: str, result: GenerationResult, items: list) -> None:
        job = self._finish(job_id)
        if job is not None:
            job.state = result.status
            if job.cancelled_at is not None:
                result.cancel_requested_at_step = job.cancelled_at
        self.jobFinished.emit(job_id, result, items)
        self.queueChanged.emit()
        self._pump()

    def _on_failed(self, job_id: str, message: str, hint: str) -> None:
        job = self._finish(job_id)
        if job is not None:
            job.state = "failed"
        self.jobFailed.emit(job_id, message, hint)
        self.queueChanged.emit()
        self._pump()

    # -- lifetime -------------------------------------------------------------------------------------
    def shutdown(self, timeout_ms: int = 30000) -> bool:
        """Cancel everything and stop the thread (the one place the GUI waits: on close). In the durable
        queue the waiting jobs stay waiting and the running one is given back: the next start offers them."""
        self.pending.clear()
        if self.current is not None:
            self.current.give_back = True
            self.current.cancel.set()
        self._drain_timer.stop()
        if not self._thread.isRunning():
            return True
        self._thread.quit()
        ok = self._thread.wait(timeout_ms)
        if ok:
            self.worker.engine = None
            if self.link is not None:
                self.link.close()
        return ok

    @property
    def engine_thread(self) -> QThread:
        return self._thread
