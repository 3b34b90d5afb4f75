"""`RemoteEngine`: one cluster worker behind `Engine.generate`'s signature.

The durable queue's `QueueRunner` (and the window's engine thread) run a job by calling
`engine.generate(request, on_step, cancel, on_progress, branch_latent)`; handed a `RemoteEngine`,
that call sends the request's files the worker lacks (by SHA-256, once), runs the job on the
worker's own `Engine`, streams the step previews back as they are made, forwards a cancel (the
worker stops within a step) and returns the `GenerationResult` — images and all — to this
machine, where the runner saves them in the local gallery. A worker that goes away mid-job
raises `WorkerLost`, so the queue gives the job to another worker.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from studio.cluster.connect import import_ray
from studio.cluster.files import FileRef, pack, request_files, rewrite
from studio.core import paths
from studio.core.errors import ModelNotFound, StudioError
from studio.core.queue import WorkerLost
from studio.core.request import GenerationRequest
from studio.core.results import GenerationResult, LoadProgress, StepPreview


def _lost_errors() -> tuple[type[BaseException], ...]:
    ray = import_ray()
    ex = ray.exceptions
    return tuple(
        getattr(ex, n)
        for n in ("RayActorError", "WorkerCrashedError", "ObjectLostError", "OwnerDiedError", "NodeDiedError")
        if hasattr(ex, n)
    )


_LOCKS: dict[str, threading.Lock] = {}
_LOCKS_LOCK = threading.Lock()


def _transfer_lock(sha256: str) -> threading.Lock:
    with _LOCKS_LOCK:
        return _LOCKS.setdefault(sha256, threading.Lock())


class RemoteEngine:
    """Runs requests on one worker actor. `options()` gives the current job's engine options;
    `lost` set from outside (the cluster is gone) ends a run at once, the job given back."""

    def __init__(
        self,
        handle: Any,
        name: str,
        *,
        options: Callable[[], dict[str, Any]] | None = None,
        lost: threading.Event | None = None,
        label: Callable[[], str] | None = None,
    ) -> None:
        self.handle = handle
        self.name = name
        self.options = options or dict
        self.lost = lost or threading.Event()
        self.label = label or str
        self.info: dict[str, Any] = {}
        self.sent: list[str] = []  # names of files sent to this worker (tests and the bench look)

    # -- the worker ----------------------------------------------------------------------------------
    def describe(self, timeout: float = 10.0) -> dict[str, Any]:
        ray = import_ray()
        self.info = ray.get(self.handle.describe.remote(), timeout=timeout)
        return self.info

    def ready(self, timeout: float = 1.0) -> bool:
        """Whether the worker answers (it may be starting, or restarting after its process died)."""
        try:
            self.describe(timeout)
        except Exception:  # noqa: BLE001 — not up (yet), or gone
            return False
        return True

    def _place(self, refs: dict[str, FileRef], on_progress: Callable[[Any], None] | None) -> dict[str, str]:
        """path (as the request names it) -> where the worker has it; sends what it lacks."""
        ray = import_ray()
        if not refs:
            return {}
        have = ray.get(self.handle.locate.remote(list(refs.values())))
        where: dict[str, str] = {}
        for key, ref in refs.items():
            found = have.get(ref.sha256)
            if found is None:
                with _transfer_lock(ref.sha256):  # one transfer of a file at a time from this machine:
                    # a worker beside one that was just sent it finds it in their machine's cache
                    found = ray.get(self.handle.locate.remote([ref])).get(ref.sha256) or self._send(ref, on_progress)
            where[key] = found
        return where

    def _send(self, ref: FileRef, on_progress: Callable[[Any], None] | None) -> str:
        ray = import_ray()
        stage = f"sending {ref.name} to {self.name}"
        try:
            ray.get(self.handle.receive_begin.remote(ref))
        except ray.exceptions.RayTaskError as exc:
            cause = exc.as_instanceof_cause()
            raise ModelNotFound(
                f"No worker has {ref.name} (SHA-256 {ref.sha256[:12]}…) and {self.name} cannot be sent it: "
                f"{getattr(cause, 'message', cause)}",
                "Put the file into the worker's models library, or let it take transfers.",
            ) from None
        if on_progress is not None:
            on_progress(LoadProgress(stage, 0.0))
        for block, sent in pack(ref):
            ray.get(self.handle.receive_chunk.remote(ref, ray.put(block)))
            if on_progress is not None:
                on_progress(LoadProgress(stage, min(1.0, sent / max(1, ref.size))))
        where = str(ray.get(self.handle.receive_end.remote(ref)))
        self.sent.append(ref.name)
        return where

    def preload(self, request: GenerationRequest, options: dict[str, Any] | None = None) -> list[str]:
        """Send what the request needs and load its model on the worker (before a timed run)."""
        ray = import_ray()
        run_request = rewrite(request, self._place(request_files(request), None))
        return list(ray.get(self.handle.preload.remote(run_request.to_json(), options or {})))

    # -- Engine.generate --------------------------------------------------------------------------------
    def generate(
        self,
        request: GenerationRequest,
        on_step: Callable[[StepPreview], None] | None = None,
        cancel: threading.Event | None = None,
        on_progress: Callable[[Any], None] | None = None,
        branch_latent: np.ndarray | None = None,
    ) -> GenerationResult:
        ray = import_ray()
        lost_errors = _lost_errors()
        done = threading.Event()
        run_id = uuid.uuid4().hex
        try:
            where = self._place(request_files(request), on_progress)
            run_request = rewrite(request, where)
            stream = self.handle.run.remote(run_id, run_request.to_json(), self.options(), branch_latent, self.label())
            if cancel is not None:
                threading.Thread(target=self._forward_cancel, args=(cancel, done, run_id), daemon=True).start()
            while True:
                if self.lost.is_set():
                    raise WorkerLost(f"lost the cluster while {self.name} ran the job", give_back=True)
                ready, _ = ray.wait([stream], timeout=0.25)
                if not ready:
                    continue
                try:
                    kind, value = ray.get(next(stream))
                except StopIteration:
                    raise WorkerLost(f"{self.name} ended the job without a result") from None
                if kind == "step" and on_step is not None:
                    on_step(value)
                elif kind == "progress" and on_progress is not None:
                    on_progress(value)
                elif kind == "error":
                    if value.get("code") == "busy":
                        raise WorkerLost(value["message"], give_back=True)
                    err = StudioError(value["message"], value.get("hint", ""))
                    err.code = value.get("code", "error")
                    raise err
                elif kind == "result":
                    return self._arrived(value, request)
        except lost_errors as exc:
            raise WorkerLost(
                f"{self.name} went away mid-job ({type(exc).__name__})", "The job waits for another worker."
            ) from None
        finally:
            done.set()

    def _forward_cancel(self, cancel: threading.Event, done: threading.Event, run_id: str) -> None:
        while not done.is_set():
            if cancel.wait(0.05):
                self.handle.cancel.remote(run_id)  # the worker's step callbacks see it within a step
                return

    def _arrived(self, result: GenerationResult, request: GenerationRequest) -> GenerationResult:
        """The worker's result as this machine records it: the request as queued (its paths, not the
        worker's), the model named as here, and which worker on what device made it."""
        info = self.info or {}
        result.request = request
        if request.model.strip().lower() == "demo":
            result.model_name, result.model_path = "demo", str(paths.demo_model_dir())
        else:
            model = Path(request.model).expanduser()
            result.model_name, result.model_path = model.name, str(model.resolve())
        worker_name = info.get("name") or self.name
        result.worker = f"{worker_name} on {info.get('host') or '?'}"
        name = str(info.get("device_name") or "")
        if name and not name.lower().startswith(result.device.split(":")[0].lower()):
            result.device = f"{result.device} ({name})"  # cuda (NVIDIA …); the CPU says "cpu"
        return result
