"""Who runs the window's jobs (View ▸ Device and memory ▸ Workers): this process's engine, a Ray
worker on every GPU of this machine, or a Ray cluster by address. No Qt: the engine thread's
`EngineWorker` holds one `WorkersLink` and hands its jobs to `engine_for(local)`, so a job on a
worker goes through the same `QueueRunner` path, previews, cancel and gallery as a local one."""

from __future__ import annotations

import logging
from typing import Any

from studio.core.errors import StudioError

log = logging.getLogger(__name__)
LOCAL_STATUS = "Jobs run on this machine."


class WorkersLink:
    def __init__(self) -> None:
        self.mode = "local"
        self.address = ""
        self.remote: Any = None  # a studio.cluster.remote.RemoteEngine, when jobs run on a worker
        self.status = LOCAL_STATUS

    def engine_for(self, local: Any) -> Any:
        return self.remote if self.remote is not None else local

    def apply(self, mode: str, address: str = "") -> str:
        """Use `mode` ("local", "gpus", "cluster" at `address`) from the next job; returns what to show.
        A cluster that cannot be reached leaves the jobs on this machine, and says why."""
        if mode == self.mode and address == self.address and (self.remote is not None or mode == "local"):
            return self.status
        self.mode, self.address, self.remote = mode, address, None
        if mode == "local":
            self._disconnect()
            self.status = LOCAL_STATUS
            return self.status
        try:
            from studio.cluster.connect import connect, workers
            from studio.cluster.remote import RemoteEngine

            where = connect("gpus" if mode == "gpus" else address)
            handles = workers()
            engines = [RemoteEngine(h, f"worker {i + 1}") for i, h in enumerate(handles)]
            ready = next((e for e in engines if e.ready(timeout=60)), None)
            if ready is None:
                raise StudioError(f"none of the {len(engines)} workers at {where} answers")
        except StudioError as exc:
            log.warning("workers not used: %s", exc)
            self.mode, self.remote = "local", None
            self.status = f"Cannot use the workers: {exc} Jobs run on this machine."
            return self.status
        self.remote = ready
        info = ready.info
        place = "this machine's GPUs" if mode == "gpus" else f"the cluster at {where}"
        self.status = (
            f"Jobs run on {info.get('name')} ({info.get('device_name') or info.get('device')}) on "
            f"{info.get('host')}, one of {len(engines)} workers of {place}."
        )
        return self.status

    def apply_saved(self) -> str:
        from studio.core import settings

        saved = settings.load()
        return self.apply(saved.workers, saved.cluster_address) if saved.workers != "local" else self.status

    def _disconnect(self) -> None:
        import sys

        if "ray" in sys.modules:
            from studio.cluster.connect import disconnect

            disconnect()
