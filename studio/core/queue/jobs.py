"""What the durable queue hands out and keeps: `Job` (a row of the jobs table), `Claim` (a job a
runner holds, with its lease token), `RunnerId` (who runs it), and the helpers that read rows,
pack latents and tell whether a runner's process is alive. Used by `store.JobStore`."""

from __future__ import annotations

import io
import json
import os
import socket
import sqlite3
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from studio.core.errors import StudioError
from studio.core.request import GenerationRequest

STATES = ("waiting", "running", "done", "failed", "cancelled")
OPEN_STATES = ("waiting", "running", "failed")  # what `studio queue list` shows by default
LEASE_S = 60.0  # a runner that has not renewed its lease for this long is taken for dead
MAX_ATTEMPTS = 3
KEEP_FINISHED = 1000  # done and cancelled jobs kept for the record; older ones are pruned
# What a waiting job's `error` says when it was running as its runner stopped: it died, or it was
# stopped (Ctrl+C twice, the window closing) and gave the job back.
INTERRUPTED, GIVEN_BACK = "interrupted", "stopped before it finished"

_JOB_COLUMNS = (
    "seq, id, position, created_at, updated_at, state, request_json, source, out_path, options, "
    "parent_id, latent IS NOT NULL AS has_latent, attempts, max_attempts, runner, runner_host, "
    "runner_pid, runner_started, lease_until, cancel_asked, started_at, finished_at, error, hint, "
    "gallery_ids, resume_step"
)


class QueueError(StudioError):
    code = "queue-error"


class JobNotFound(QueueError):
    code = "job-not-found"


class WorkerLost(QueueError):
    """The worker running a job went away mid-job (its process killed, its machine gone): the job goes
    back to the queue for another worker. `give_back`: uncounted (the cluster itself was lost, not the
    job's fault); otherwise the attempt counts, so a job that kills every worker fails in the end."""

    code = "worker-lost"

    def __init__(self, message: str, hint: str = "", *, give_back: bool = False) -> None:
        super().__init__(message, hint)
        self.give_back = give_back


@dataclass(frozen=True)
class RunnerId:
    """Who runs a job: a name people read ("studio queue run", "window"), and the process."""

    name: str
    host: str
    pid: int
    started: float  # the process's start time, so a reused pid is not taken for the runner

    @classmethod
    def here(cls, name: str) -> RunnerId:
        return cls(name, socket.gethostname(), os.getpid(), process_started(os.getpid()) or 0.0)

    def label(self) -> str:
        return f"{self.name} (pid {self.pid} on {self.host})"


def process_started(pid: int) -> float | None:
    """A process's start time (seconds since the epoch), or None when it does not exist."""
    try:
        import psutil

        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:  # killed, not yet reaped by its parent: gone
            return None
        return float(proc.create_time())
    except Exception:  # noqa: BLE001 — no such process, no permission, no psutil: unknown
        return None


def runner_alive(host: str, pid: int | None, started: float | None) -> bool | None:
    """True/False for a runner on this machine; None (unknown: go by its lease) elsewhere."""
    if host != socket.gethostname():
        return None
    if not pid:
        return False
    now_started = process_started(pid)
    if now_started is None:
        return False
    return not started or abs(now_started - started) < 1.0


@dataclass(frozen=True)
class Job:
    id: str
    seq: int
    state: str
    position: float
    created_at: float
    updated_at: float
    request_json: str = field(repr=False)
    source: str
    out_path: str
    options: dict[str, Any]
    parent_id: str | None
    has_latent: bool
    attempts: int
    max_attempts: int
    runner: str
    runner_host: str
    runner_pid: int | None
    lease_until: float | None
    cancel_asked: bool
    started_at: float | None
    finished_at: float | None
    error: str
    hint: str
    gallery_ids: tuple[str, ...]
    resume_step: int | None

    @property
    def request(self) -> GenerationRequest:
        return GenerationRequest.from_json(self.request_json)

    @property
    def was_running(self) -> bool:
        """A waiting job that was running when its runner stopped (died, or gave it back)."""
        return self.state == "waiting" and self.error in (INTERRUPTED, GIVEN_BACK)

    @property
    def images_wanted(self) -> int:
        return _batch_size(self.request_json)

    def to_dict(self) -> dict[str, Any]:
        d = {k: v for k, v in self.__dict__.items() if k not in ("request_json", "seq")}
        d["gallery_ids"] = list(self.gallery_ids)
        try:
            d["request"] = self.request.to_dict()
        except StudioError:
            d["request"] = None
        return d


@dataclass(frozen=True)
class Claim:
    """A job a runner holds: the job as claimed and the token that proves it still holds it."""

    job: Job
    token: str
    runner: RunnerId


def _batch_size(request_json: str) -> int:
    try:
        return max(1, int(json.loads(request_json).get("batch_size", 1)))
    except (ValueError, TypeError, AttributeError):
        return 1


def _job(row: sqlite3.Row) -> Job:
    try:
        options = json.loads(row["options"] or "{}")
    except ValueError:
        options = {}
    return Job(
        id=row["id"],
        seq=row["seq"],
        state=row["state"],
        position=row["position"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        request_json=row["request_json"],
        source=row["source"],
        out_path=row["out_path"],
        options=options if isinstance(options, dict) else {},
        parent_id=row["parent_id"],
        has_latent=bool(row["has_latent"]),
        attempts=row["attempts"],
        max_attempts=row["max_attempts"],
        runner=row["runner"],
        runner_host=row["runner_host"],
        runner_pid=row["runner_pid"],
        lease_until=row["lease_until"],
        cancel_asked=bool(row["cancel_asked"]),
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        error=row["error"],
        hint=row["hint"],
        gallery_ids=tuple(x for x in row["gallery_ids"].split("\n") if x),
        resume_step=row["resume_step"],
    )


def latent_bytes(latent: np.ndarray | None) -> bytes | None:
    if latent is None:
        return None
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(latent, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


def latent_from(blob: bytes | None) -> np.ndarray | None:
    if blob is None:
        return None
    try:
        out: np.ndarray = np.load(io.BytesIO(blob), allow_pickle=False)
        return out
    except (ValueError, OSError):
        return None
