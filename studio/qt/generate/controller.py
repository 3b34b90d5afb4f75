"""The run controller: turns engine events into history, canvas, strip and progress updates, and
turns user intents (generate, cancel, scrub, branch) into engine requests. GUI thread only.

It reads the draft and speaks to the user through the window's `Session` (the draft request, the
step history, messages by topic); the views it drives — canvas, steps strip, queue, progress — are
the ones it was given."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from PySide6.QtCore import QObject, Signal

from studio.core import library
from studio.core import settings as core_settings
from studio.core.errors import StudioError
from studio.core.request import BranchRef, FastPath, GenerationRequest
from studio.core.results import GenerationResult, StepPreview
from studio.qt.common.images import to_qimage
from studio.qt.common.session import MODEL, Session
from studio.qt.common.widgets import ProgressGroup
from studio.qt.generate.canvas import CanvasView
from studio.qt.generate.engine_worker import EngineBridge
from studio.qt.generate.queue_panel import QueuePanel
from studio.qt.generate.steps_strip import StepsStrip
from studio.session.step_history import RunRecord, resolve_step

# What "Branch from here" takes from the Prompt panel; everything else in the request is the parent
# run's recipe, so a branch draws with the same model, size, steps, VAE, LoRAs and ControlNet units.
BRANCH_FIELDS = (
    "prompt",
    "negative_prompt",
    "guidance_scale",
    "guidance_rescale",
    "guidance_end",
    "seed",
    "scheduler",
    "schedule_type",
    "preview",
    "preview_every",
)
PREVIEW_NAMES = {
    "latent2rgb": "noisy latent preview",
    "x0": "x0 preview",
    "taesd": "TAESD preview",
    "vae": "VAE preview",
    "upscale": "tiles upscaled",
}


class RunController(QObject):
    stepReceived = Signal(str, int)  # run id, step: every step, in order (tests and plugins listen)
    runStarted = Signal(str)
    runFinished = Signal(str, str)  # run id, status (done | cancelled | failed)
    framePainted = Signal()

    def __init__(
        self,
        bridge: EngineBridge,
        session: Session,
        canvas: CanvasView,
        strip: StepsStrip,
        queue: QueuePanel,
        progress: ProgressGroup,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.bridge, self.session, self.history, self.canvas = bridge, session, session.history, canvas
        self.strip, self.queue, self.progress = strip, queue, progress
        self.gallery: Any = None
        self.edit: Any = None  # the Edit tab (EditWorkspace): previews and results of runs made from it
        self.edit_serials: dict[str, int] = {}  # run id -> the Edit canvas state it started from
        self.numbers: dict[str, int] = queue.numbers
        self.on_request_queued: list = []  # callbacks(request) — the window saves settings
        b = bridge
        b.jobStarted.connect(self._started)
        b.loadProgress.connect(self._load_progress)
        b.stepsReady.connect(self._steps)
        b.jobFinished.connect(self._finished)
        b.jobFailed.connect(self._failed)
        b.jobRemoved.connect(self._removed)
        b.engineReady.connect(progress.set_device)
        b.engineFailed.connect(lambda m, h: session.say(m, h))
        b.memory.connect(progress.set_memory)
        b.modelLoaded.connect(self._model_loaded)
        b.modelFailed.connect(self._model_failed)
        strip.stepSelected.connect(self.show_step)
        strip.branchRequested.connect(self.branch)
        strip.useSettingsRequested.connect(self.use_settings)

    # -- intents --------------------------------------------------------------------------------------
    def generate(self) -> list[str]:
        """Queue the Prompt panel's request(s). Returns the new run ids ([] when invalid)."""
        try:
            requests = self.session.build_requests()
        except StudioError as exc:
            self.session.say(exc.message, exc.hint or "Fix the highlighted setting and try again.")
            return []
        self.session.withdraw(kind="error")  # this request is fine: the last error no longer holds
        requests = [self.with_speed(r) for r in requests]
        ids = [self._submit(r) for r in requests]
        if self.edit is not None:
            for run_id, r in zip(ids, requests):
                if r.init_image is not None:
                    self.edit_serials[run_id] = self.edit.serial
                    self.edit.begin_run(run_id, r)
        for cb in self.on_request_queued:
            cb(requests[0])
        return ids

    def with_speed(self, request: GenerationRequest) -> GenerationRequest:
        """The Device dialog's speed settings on a request (part of its recipe): the device's fast
        path when "Fast path" is ticked, step caching with "Draft speed"."""
        saved = core_settings.load()
        recommended = (self.bridge.device or {}).get("fast_path") if saved.fast_path else None
        speed = FastPath(**recommended) if recommended else FastPath()
        speed = speed.model_copy(update={"draft": saved.draft})
        return request if request.fast == speed else request.replace(fast=speed)

    def adopt(self, stored: list) -> list[str]:
        """Jobs of the durable queue the window did not queue itself (from before a crash, or added by
        `studio queue add`): into the window's queue and its run history. Returns their run ids."""
        jobs = self.bridge.adopt(stored)
        for job in jobs:
            rec = self.history.add_run(job.job_id, job.request)
            self.numbers[job.job_id] = rec.number
        if jobs:
            self.queue.refresh()
            self.strip.refresh_runs()
        return [j.job_id for j in jobs]

    def request_replaced(self, job_id: str, request: GenerationRequest) -> None:
        """A waiting job's recipe was edited in the Queue panel."""
        rec = self.history.get(job_id)
        if rec is not None:
            rec.request = request
        self.queue.refresh()
        self.strip.refresh_runs()

    def queue_request(self, request: GenerationRequest) -> str:
        """Queue a request made elsewhere (an upscale, a plot's cells): the run id."""
        return self._submit(request)

    def _submit(self, request: GenerationRequest, latent=None, gallery_parent: str | None = None) -> str:
        job = self.bridge.submit(request, latent, gallery_parent)
        rec = self.history.add_run(job.job_id, request)
        self.numbers[job.job_id] = rec.number
        self.queue.refresh()
        self.strip.refresh_runs()
        return job.job_id

    def cancel_current(self) -> None:
        if self.bridge.current is not None:
            self.bridge.cancel(self.bridge.current.job_id)
            self.progress.bar.setFormat("Cancelling…")

    def cancel_all(self) -> None:
        self.bridge.cancel_all()

    def branch(self, run_id: str, step: int) -> str | None:
        """A new run from `step` of `run_id`: the parent's whole recipe (model, size, steps, VAE, LoRAs,
        ControlNet units, plugin parameters, …) with only BRANCH_FIELDS taken from the Prompt panel."""
        owner = self._owner_of(run_id, step)
        kept = owner.steps.get(step) if owner else None
        if owner is None or kept is None or kept.latent is None:
            self.session.say(
                "That step is no longer kept, so it cannot be branched from.",
                "Older runs are trimmed to stay within the memory budget; pick a newer run.",
            )
            return None
        parent = owner.request
        try:
            panel = self.session.draft_fields()
            request = parent.replace(
                **{k: panel[k] for k in BRANCH_FIELDS}, branch=BranchRef(parent_id=owner.run_id, step=step)
            )
        except StudioError as exc:
            self.session.say(exc.message, exc.hint)
            return None
        gallery_parent = owner.gallery_ids[0] if owner.gallery_ids else None
        return self._submit(request, kept.latent, gallery_parent)

    def _owner_of(self, run_id: str, step: int) -> RunRecord | None:
        rec = self.history.get(run_id)
        while rec is not None and rec.branch_step is not None and step <= rec.branch_step:
            rec = self.history.get(rec.parent_id)
        return rec

    def use_settings(self, run_id: str) -> None:
        rec = self.history.get(run_id)
        if rec is not None and rec.request.upscale is not None:
            self.session.say(
                "An upscale has no generation settings to use.",
                "Its recipe is the source image's; open the source in the gallery to use its settings.",
                kind="info",
            )
        elif rec is not None:
            self.session.load_request(rec.request.replace(branch=None), keep_vae=True)

    # -- showing steps --------------------------------------------------------------------------------
    def show_step(self, run_id: str, step: int) -> None:
        rec = self.history.get(run_id)
        if rec is None:
            return
        aspect = (rec.request.width, rec.request.height)
        if rec.status == "done" and step == rec.total and rec.images:
            self.canvas.show_array(
                rec.images[0], f"#{rec.number} · final · seed {rec.request.seed}", aspect, final=True
            )
            self._show_edit_result(run_id)
            return
        kept = resolve_step(self.history, run_id, step)
        if kept is None or kept.image is None:
            self.canvas.show_image(None, "", aspect)
            return
        if run_id in self.edit_serials and self.edit is not None:  # composited full-canvas preview
            self.edit.show_step(kept.image, self.edit_serials[run_id], run_id)
        mode = kept.decoder or PREVIEW_NAMES.get(
            rec.request.preview.value if hasattr(rec.request.preview, "value") else str(rec.request.preview), "preview"
        )
        self.canvas.show_image(to_qimage(kept.image), f"#{rec.number} · step {step}/{rec.total} · {mode}", aspect)

    # -- engine events --------------------------------------------------------------------------------
    def _started(self, job_id: str) -> None:
        rec = self.history.get(job_id)
        if rec is None:
            return
        rec.status = "running"
        self.history.current_id = job_id
        self.session.withdraw(MODEL)  # e.g. "the demo model is not installed": a model is running now
        self._t0 = time.perf_counter()
        self.strip.show_run(job_id, follow=True)
        self.canvas.clear(placeholder="Loading the model…")
        self.canvas.show_image(None, "", (rec.request.width, rec.request.height))
        self.progress.loading("starting", 0.0)
        self.queue.set_progress("starting")
        self.runStarted.emit(job_id)

    def _load_progress(self, job_id: str, stage: str, fraction: float) -> None:
        self.progress.loading(stage, fraction)
        self.queue.set_progress(stage)
        if self.canvas.image() is None:
            self.canvas.placeholder = stage[:1].upper() + stage[1:]
            self.canvas.update()

    def _steps(self, job_id: str, previews: list[StepPreview]) -> None:
        rec = self.history.get(job_id)
        if rec is None:
            return
        kept = []
        for p in previews:
            k = self.history.add_step(job_id, p)
            if k is not None:
                kept.append(k)
            self.stepReceived.emit(job_id, p.step)
        if not kept:
            return
        last = previews[-1]
        done_here = last.step - rec.first_step + 1
        it_s = done_here / last.elapsed_s if last.elapsed_s > 0 else None
        eta = (last.total - last.step) / it_s if it_s else None
        text = self.progress.step(last.step, last.total, it_s, eta)
        self.queue.set_progress(text)
        self.strip.add_steps(job_id, kept)  # selects the newest when following → show_step paints it

    def _end(self, job_id: str, status: str) -> RunRecord | None:
        rec = self.history.get(job_id)
        if self.history.current_id == job_id:
            self.history.current_id = None
        if rec is not None:
            rec.status = status
        self.strip.refresh_runs()
        return rec

    def _finished(self, job_id: str, result: GenerationResult, items: list) -> None:
        rec = self._end(job_id, result.status)
        if rec is None:
            return
        if result.images:
            self.history.set_images(job_id, result.images)
        rec.gallery_ids = [getattr(i, "id", "") for i in items or []]
        if self.strip.run_id == job_id:
            self.strip.refresh_current()
        if result.cancelled and job_id in self.edit_serials and self.edit is not None:
            if self.edit.serial == self.edit_serials[job_id]:
                self.edit.canvas.clear_preview()  # back to the input
        else:
            self._show_edit_result(job_id)
        took = result.timings.get("total_s", 0.0)
        if result.cancelled:
            self.progress.idle(f"Cancelled at step {result.steps_done}/{result.total_steps}")
            self.session.say(
                f"Run #{rec.number} cancelled at step {result.steps_done} of {result.total_steps}.",
                "Its steps are kept: scrub back and use Branch from here to continue from any of them.",
                kind="info",
            )
        else:
            unit = "tiles" if result.request.upscale is not None else "steps"
            self.progress.idle(f"Done · {result.total_steps} {unit} in {took:.1f}s")
        if result.gallery_error:
            self.session.say("The image could not be saved to the gallery.", result.gallery_error, kind="warning")
        if self.gallery is not None and items:
            with contextlib.suppress(Exception):  # the gallery panel is another team's widget; never let it stop a run
                self.gallery.items_added(items)
        self.runFinished.emit(job_id, result.status)

    def _show_edit_result(self, run_id: str) -> None:
        rec = self.history.get(run_id)
        if self.edit is None or run_id not in self.edit_serials or rec is None or not rec.images:
            return
        what = rec.request.kind
        self.edit.show_result(
            rec.images[0],
            self.edit_serials[run_id],
            f"Result of #{rec.number} ({what}, seed {rec.request.seed}) over the input.",
        )

    def _failed(self, job_id: str, message: str, hint: str) -> None:
        if job_id in self.edit_serials and self.edit is not None and self.edit.serial == self.edit_serials[job_id]:
            self.edit.canvas.clear_preview()
        rec = self._end(job_id, "failed")
        if rec is not None:
            rec.error = message
        self.progress.idle("Failed")
        about_model = any(w in message.lower() for w in ("model", "checkpoint", "file"))
        self.session.say(
            message,
            hint,
            topic=MODEL if about_model else "",
            action="Choose model…" if about_model else "",
            action_key="choose-model",
        )
        self.canvas.clear(placeholder="Nothing to show: the run failed (see the message above).")
        self.runFinished.emit(job_id, "failed")

    def _model_loaded(self, model: str, info: dict) -> None:
        if self.bridge.current is None:
            self.progress.idle(f"Model ready: {library.model_label(model)}")  # the model box's name for it
        self.session.withdraw(MODEL)  # a model loads: what was said about a missing or broken one is over

    def _model_failed(self, model: str, message: str, hint: str) -> None:
        if self.bridge.current is None:
            self.progress.idle("Model not loaded")
        self.session.say(
            message,
            hint or "Choose another model folder or file.",
            topic=MODEL,
            action="Choose model…",
            action_key="choose-model",
        )

    def _removed(self, job_id: str) -> None:
        self.edit_serials.pop(job_id, None)
        if self.edit is not None:
            self.edit.end_run(job_id)
        self.history.remove_run(job_id)
        self.numbers.pop(job_id, None)
        self.strip.refresh_runs()
