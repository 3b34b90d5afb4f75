"""The Ray worker: an actor holding an `Engine` and its model cache, one job at a time.

`StudioWorker.run` is a streaming generator (`num_returns="streaming"`): it yields every step
preview and load progress as the engine makes them, then the `GenerationResult` (images as numpy
arrays, nothing written on the worker). `cancel` sets the run's cancel event, which the engine's
step callbacks check, so a cancel stops the run within one step. The actor is threaded
(`max_concurrency`), so `cancel`, `describe` and transfers are answered while a job runs.
"""

from __future__ import annotations

import json
import os
import queue
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import ray

from studio.cluster.files import FileRef, FileStore
from studio.core.errors import StudioError
from studio.core.request import GenerationRequest

# Engine options a job may carry that mean the same on any machine (the device, dtype and tiny
# autoencoder files are the worker's own).
PORTABLE_OPTIONS = ("memory", "oom_fallback", "allow_pickle")


def _error(exc: BaseException) -> dict[str, str]:
    if isinstance(exc, StudioError):
        return {"type": type(exc).__name__, "code": exc.code, "message": exc.message, "hint": exc.hint}
    return {"type": type(exc).__name__, "code": "error", "message": f"{type(exc).__name__}: {exc}", "hint": ""}


class StudioWorker:
    def __init__(self, name: str, accept_transfers: bool = True) -> None:
        if "torch" not in sys.modules and os.environ.get("STUDIO_WORKER_THREADS") is None:
            # Ray limits a worker to OMP_NUM_THREADS = its CPUs (1). torch's CPU kernels add up in an
            # order that depends on the thread count (a level of difference in pixels, measured), so the
            # worker computes with the threads a local run on this machine would use: torch's default.
            os.environ.pop("OMP_NUM_THREADS", None)
        elif os.environ.get("STUDIO_WORKER_THREADS"):
            os.environ["OMP_NUM_THREADS"] = os.environ["STUDIO_WORKER_THREADS"]
        self.name = name
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.files = FileStore(accept_transfers)
        self._engines: dict[str, Any] = {}
        self._cancels: dict[str, threading.Event] = {}
        self._busy = threading.Lock()
        self._lock = threading.Lock()
        self.current: dict[str, Any] | None = None
        self.jobs_done = 0

    # -- what it is ------------------------------------------------------------------------------------
    def ping(self) -> str:
        return self.name

    def describe(self) -> dict[str, Any]:
        """Name, host, process, device, what it is running and the models it has loaded."""
        from studio.engine.devices import choose_device

        info = choose_device(None, None)
        models: list[str] = []
        for engine in list(self._engines.values()):
            models += engine.cache.names()
        return {
            "name": self.name,
            "host": self.host,
            "pid": self.pid,
            "device": info.device,
            "device_name": info.name,
            "dtype": info.dtype,
            "running": dict(self.current) if self.current else None,
            "models": models,
            "jobs_done": self.jobs_done,
            "accepts_transfers": self.files.accept_transfers,
        }

    # -- files ---------------------------------------------------------------------------------------
    def locate(self, refs: list[FileRef]) -> dict[str, str | None]:
        """sha256 -> where this worker has it (None: it has not)."""
        return {r.sha256: self.files.find(r) for r in refs}

    def receive_begin(self, ref: FileRef) -> None:
        self.files.begin(ref)

    def receive_chunk(self, ref: FileRef, data: bytes) -> None:
        self.files.chunk(ref, data)

    def receive_end(self, ref: FileRef) -> str:
        return self.files.end(ref)

    # -- running ---------------------------------------------------------------------------------------
    def _engine(self, options: dict[str, Any]) -> Any:
        from studio.core import settings as core_settings
        from studio.engine.engine import Engine

        portable = {k: v for k, v in options.items() if k in PORTABLE_OPTIONS}
        key = json.dumps(portable, sort_keys=True)
        if key not in self._engines:
            self._engines.clear()  # one engine (and its models) in memory at a time
            saved = core_settings.load()
            taesd: dict[str, str | Path] = {a: saved.taesd_for(a) for a in core_settings.ARCHES if saved.taesd_for(a)}
            preset = portable.get("memory") or (saved.memory_preset if saved.memory_preset != "auto" else None)
            self._engines[key] = Engine(
                taesd=taesd,
                preset=preset,
                allow_pickle=bool(portable.get("allow_pickle")),
                auto_fallback=bool(portable.get("oom_fallback")) or saved.oom_fallback,
            )
        return self._engines[key]

    def preload(self, request_json: str, options: dict[str, Any]) -> list[str]:
        """Load the request's model now (before a timed run); the models loaded."""
        request = GenerationRequest.from_json(request_json)
        engine = self._engine(options)
        engine.load(request.model, None, (request.text_encoders, request.vae))
        return list(engine.cache.names())

    @ray.method(num_returns="streaming")
    def run(
        self,
        run_id: str,
        request_json: str,
        options: dict[str, Any],
        branch_latent: np.ndarray | None = None,
        job: str = "",
    ) -> Iterator[tuple[str, Any]]:
        """Yields ("progress", LoadProgress), ("step", StepPreview) …, then ("result", GenerationResult)
        or ("error", {type, code, message, hint})."""
        if not self._busy.acquire(blocking=False):
            yield "error", {"type": "WorkerBusy", "code": "busy", "message": f"{self.name} is busy", "hint": ""}
            return
        cancel = threading.Event()
        with self._lock:
            self._cancels[run_id] = cancel
        events: queue.Queue[tuple[str, Any]] = queue.Queue()
        try:
            request = GenerationRequest.from_json(request_json)
            self.current = {"job": job, "prompt": request.prompt, "step": 0, "total": request.steps}
            engine = self._engine(options)

            def on_step(preview: Any) -> None:
                if self.current is not None:
                    self.current.update(step=preview.step, total=preview.total)
                events.put(("step", preview))

            def work() -> None:
                try:
                    result = engine.generate(
                        request,
                        on_step=on_step,
                        cancel=cancel,
                        on_progress=lambda p: events.put(("progress", p)),
                        branch_latent=branch_latent,
                    )
                    events.put(("result", result))
                except BaseException as exc:  # noqa: BLE001 — every error goes back to the caller
                    events.put(("error", _error(exc)))

            thread = threading.Thread(target=work, name=f"studio-worker-{run_id[:8]}", daemon=True)
            thread.start()
            while True:
                kind, value = events.get()
                yield kind, value
                if kind in ("result", "error"):
                    break
            thread.join(timeout=5)
            if kind == "result":
                self.jobs_done += 1
        except StudioError as exc:
            yield "error", _error(exc)
        finally:
            with self._lock:
                self._cancels.pop(run_id, None)
            self.current = None
            self._busy.release()

    def cancel(self, run_id: str) -> bool:
        with self._lock:
            event = self._cancels.get(run_id)
        if event is not None:
            event.set()
        return event is not None
