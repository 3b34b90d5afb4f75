"""The durable queue: jobs in the gallery's SQLite database (same file, WAL, same atomic rules).

A job is a full `GenerationRequest` plus its state — waiting, running, done, failed, cancelled —,
its attempts, who runs it and until when, and the gallery ids of its images. Its images are the
gallery rows whose `run_id` is the job's id, so the gallery itself says which of a job's images
have landed, whatever moment a crash came at:

- `claim()` takes the first waiting job in one `BEGIN IMMEDIATE` transaction (two runners never
  take the same job), marks it running, counts an attempt and gives the runner a lease token.
  The runner renews the lease (`heartbeat()`); a job whose runner died (same machine: its process
  is gone; elsewhere: its lease ran out) goes back to waiting at the next claim, or fails after
  `max_attempts` interruptions, so a job that crashes the studio every time does not loop forever.
- an image lands with `Gallery.add_image(..., finalize=store.lander(job_id))`: the row becoming
  `ok` and the job being updated (its gallery ids; done when every image of its batch is in) are
  one commit. A second copy of an image that has landed (a job run again after its first runner
  died between writing the file and that commit) is dropped, so nothing is made twice.
- a job whose images have all landed is marked done whenever it is looked at (`claim`,
  `recover`), which covers a crash after the last image's file but before its commit: opening
  the gallery rolls that save forward, and the job is then done without being run again.

Several runners may share a store (the window, `studio queue run`, a cluster's workers); only
one `studio queue run` or window at a time per library takes the runner lock (`lock.py`).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from studio.core import faults
from studio.core.gallery.store import Gallery
from studio.core.queue.jobs import (
    _JOB_COLUMNS,
    INTERRUPTED,
    KEEP_FINISHED,
    LEASE_S,
    MAX_ATTEMPTS,
    OPEN_STATES,
    STATES,
    Claim,
    Job,
    JobNotFound,
    QueueError,
    RunnerId,
    _batch_size,
    _job,
    latent_bytes,
    latent_from,
    runner_alive,
)
from studio.core.request import GenerationRequest


class JobStore:
    """The queue of one library. Shares the gallery's connection and lock (so a job's image and
    its job row can change in one transaction). Thread-safe."""

    def __init__(self, gallery: Gallery) -> None:
        self.gallery = gallery
        self._own_gallery = False

    @classmethod
    def open(cls, library: str | os.PathLike[str] | None = None) -> JobStore:
        store = cls(Gallery(library))
        store._own_gallery = True
        return store

    def close(self) -> None:
        if self._own_gallery:
            self.gallery.close()

    def __enter__(self) -> JobStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def root(self) -> Path:
        """The library folder."""
        return self.gallery.root

    # -- adding and reading --------------------------------------------------------------------------
    def add(
        self,
        request: GenerationRequest,
        *,
        source: str = "",
        out_path: str = "",
        options: dict[str, Any] | None = None,
        parent_id: str | None = None,
        latent: np.ndarray | None = None,
        max_attempts: int = MAX_ATTEMPTS,
    ) -> Job:
        """Queue a request at the end. Returns the new job (its id is also its images' run id)."""
        if max_attempts < 1:
            raise QueueError(f"attempts must be at least 1, not {max_attempts}")
        job_id = uuid.uuid4().hex
        now = time.time()
        with self.gallery._tx() as conn:
            (last,) = conn.execute("SELECT coalesce(max(position), 0) FROM jobs").fetchone()
            conn.execute(
                "INSERT INTO jobs (id, position, created_at, updated_at, state, request_json, source, "
                "out_path, options, parent_id, latent, max_attempts) "
                "VALUES (?, ?, ?, ?, 'waiting', ?, ?, ?, ?, ?, ?, ?)",
                (
                    job_id,
                    float(last) + 1.0,
                    now,
                    now,
                    request.to_json(),
                    source,
                    str(out_path or ""),
                    json.dumps(options or {}),
                    parent_id,
                    latent_bytes(latent),
                    int(max_attempts),
                ),
            )
        return self.get(job_id)

    def get(self, job_id: str) -> Job:
        """A job by id or by a unique id prefix (at least 4 characters)."""
        key = (job_id or "").strip().lower()
        rows = []
        if len(key) >= 4 and all(c in "0123456789abcdef" for c in key):
            with self.gallery._lock:
                rows = self.gallery.conn.execute(
                    f"SELECT {_JOB_COLUMNS} FROM jobs WHERE id >= ? AND id < ? LIMIT 2", (key, key + "g")
                ).fetchall()
        if not rows:
            raise JobNotFound(f"no queued job with id {job_id!r}", "`studio queue list --all` shows every job.")
        if len(rows) > 1 and rows[0]["id"] != key:
            raise JobNotFound(f"id {job_id!r} matches more than one job", "Give more of the id.")
        return _job(rows[0])

    def jobs(self, states: Iterable[str] | None = OPEN_STATES) -> list[Job]:
        """Jobs in the given states: running first, then waiting in run order, then the rest, newest first."""
        wanted = tuple(states) if states is not None else STATES
        bad = [s for s in wanted if s not in STATES]
        if bad:
            raise QueueError(f"unknown job state {bad[0]!r}; choose from {', '.join(STATES)}")
        marks = ",".join("?" * len(wanted))
        with self.gallery._lock:
            rows = self.gallery.conn.execute(
                f"SELECT {_JOB_COLUMNS} FROM jobs WHERE state IN ({marks}) ORDER BY "
                "CASE state WHEN 'running' THEN 0 WHEN 'waiting' THEN 1 ELSE 2 END, "
                "CASE WHEN state IN ('running', 'waiting') THEN position ELSE -updated_at END, seq",
                wanted,
            ).fetchall()
        return [_job(r) for r in rows]

    def counts(self) -> dict[str, int]:
        with self.gallery._lock:
            rows = self.gallery.conn.execute("SELECT state, count(*) FROM jobs GROUP BY state").fetchall()
        out = dict.fromkeys(STATES, 0)
        out.update({r[0]: r[1] for r in rows})
        return out

    def latent(self, job_id: str) -> np.ndarray | None:
        """The latent a branch job continues from (None for other jobs)."""
        with self.gallery._lock:
            row = self.gallery.conn.execute("SELECT latent FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return latent_from(row[0]) if row else None

    def landed(self, job_id: str) -> dict[int, str]:
        """batch index -> gallery id of this job's images that are in the gallery."""
        with self.gallery._lock:
            rows = self.gallery.conn.execute(
                "SELECT batch_index, id FROM items WHERE run_id = ? AND state = 'ok' ORDER BY batch_index",
                (job_id,),
            ).fetchall()
        return {int(r[0]): str(r[1]) for r in rows}

    # -- claiming and running ---------------------------------------------------------------------------
    def recover(self) -> list[Job]:
        """Put jobs whose runner died back in the queue (or fail them after too many attempts), and
        mark done the jobs whose images have all landed. Returns the jobs that were interrupted."""
        with self.gallery._tx() as conn:
            ids = self._recover(conn)
        return [self.get(i) for i in ids]

    def _recover(self, conn: sqlite3.Connection) -> list[str]:
        now = time.time()
        interrupted = []
        for row in conn.execute(
            "SELECT id, runner_host, runner_pid, runner_started, lease_until, attempts, max_attempts "
            "FROM jobs WHERE state = 'running'"
        ).fetchall():
            alive = runner_alive(row["runner_host"], row["runner_pid"], row["runner_started"])
            expired = row["lease_until"] is not None and row["lease_until"] < now
            if alive is False or expired:
                interrupted.append(row["id"])
                if row["attempts"] >= row["max_attempts"]:
                    conn.execute(
                        "UPDATE jobs SET state = 'failed', updated_at = ?, finished_at = ?, lease_token = '', "
                        "error = ?, hint = ? WHERE id = ?",
                        (
                            now,
                            now,
                            f"The run was interrupted {row['attempts']} times (the studio stopped while it ran).",
                            "`studio queue retry ID` runs it again; the log says why the studio stopped.",
                            row["id"],
                        ),
                    )
                else:
                    conn.execute(
                        "UPDATE jobs SET state = 'waiting', updated_at = ?, lease_token = '', lease_until = NULL, "
                        "error = ? WHERE id = ?",
                        (now, INTERRUPTED, row["id"]),
                    )
        for row in conn.execute("SELECT id, request_json FROM jobs WHERE state IN ('waiting', 'running')").fetchall():
            self._settle(conn, row["id"], row["request_json"], now)
        return interrupted

    def _settle(self, conn: sqlite3.Connection, job_id: str, request_json: str, now: float) -> bool:
        """Record which of the job's images are in the gallery; done when all are. True when done."""
        rows = conn.execute(
            "SELECT batch_index, id FROM items WHERE run_id = ? AND state = 'ok' ORDER BY batch_index",
            (job_id,),
        ).fetchall()
        ids = "\n".join(str(r[1]) for r in rows)
        done = len({r[0] for r in rows}) >= _batch_size(request_json)
        (before,) = conn.execute("SELECT gallery_ids FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if before == ids and not done:
            return False
        conn.execute(
            "UPDATE jobs SET gallery_ids = ?, updated_at = ?, "
            "state = CASE WHEN ? AND state IN ('waiting', 'running') THEN 'done' ELSE state END, "
            "finished_at = CASE WHEN ? AND state IN ('waiting', 'running') THEN ? ELSE finished_at END, "
            "lease_token = CASE WHEN ? THEN '' ELSE lease_token END, "
            "resume_latent = CASE WHEN ? THEN NULL ELSE resume_latent END, "
            "error = CASE WHEN ? THEN '' ELSE error END WHERE id = ?",
            (ids, now, done, done, now, done, done, done, job_id),
        )
        return done

    def settle(self, job_id: str) -> bool:
        """Bring a job's gallery ids up to date; marks it done when all its images are in. True if done."""
        with self.gallery._tx() as conn:
            row = conn.execute("SELECT request_json FROM jobs WHERE id = ?", (job_id,)).fetchone()
            return row is not None and self._settle(conn, job_id, row[0], time.time())

    def claim(self, runner: RunnerId, job_id: str | None = None, lease_s: float = LEASE_S) -> Claim | None:
        """Take the first waiting job (or `job_id`, if it is waiting). None when there is none."""
        now = time.time()
        token = uuid.uuid4().hex
        with self.gallery._tx() as conn:
            self._recover(conn)
            if job_id is not None:
                row = conn.execute("SELECT id FROM jobs WHERE id = ? AND state = 'waiting'", (job_id,)).fetchone()
            else:
                row = conn.execute(
                    "SELECT id FROM jobs WHERE state = 'waiting' ORDER BY position, seq LIMIT 1"
                ).fetchone()
            if row is None:
                return None
            conn.execute(
                "UPDATE jobs SET state = 'running', attempts = attempts + 1, runner = ?, runner_host = ?, "
                "runner_pid = ?, runner_started = ?, lease_token = ?, lease_until = ?, cancel_asked = 0, "
                "started_at = ?, updated_at = ?, error = '', hint = '' WHERE id = ?",
                (runner.name, runner.host, runner.pid, runner.started, token, now + lease_s, now, now, row[0]),
            )
        faults.point("job:claimed")
        return Claim(self.get(row[0]), token, runner)

    def heartbeat(self, claim: Claim, lease_s: float = LEASE_S) -> tuple[bool, bool]:
        """Renew the lease. Returns (still held, cancel asked for)."""
        with self.gallery._tx() as conn:
            cur = conn.execute(
                "UPDATE jobs SET lease_until = ? WHERE id = ? AND lease_token = ? AND state = 'running'",
                (time.time() + lease_s, claim.job.id, claim.token),
            )
            held = cur.rowcount == 1
            row = conn.execute("SELECT cancel_asked FROM jobs WHERE id = ?", (claim.job.id,)).fetchone()
        return held, bool(row and row[0])

    def lander(self, job_id: str) -> Callable[[sqlite3.Connection, str], None]:
        """The `finalize` hook for `Gallery.add_image`: updates the job in the image's own commit."""

        def land(conn: sqlite3.Connection, item_id: str) -> None:
            row = conn.execute("SELECT request_json FROM jobs WHERE id = ?", (job_id,)).fetchone()
            if row is not None:
                self._settle(conn, job_id, row[0], time.time())

        return land

    def finish(self, claim: Claim, state: str, error: str = "", hint: str = "") -> bool:
        """End a held job: 'failed' or 'cancelled' (with a reason), or 'waiting' to give it back
        uncounted (the runner was stopped, not the job's fault). False when the lease was lost."""
        if state not in ("failed", "cancelled", "waiting"):
            raise QueueError(f"a job cannot be finished as {state!r}")
        now = time.time()
        with self.gallery._tx() as conn:
            row = conn.execute("SELECT request_json FROM jobs WHERE id = ?", (claim.job.id,)).fetchone()
            if row is not None and self._settle(conn, claim.job.id, row[0], now):
                return True  # every image landed after all
            cur = conn.execute(
                "UPDATE jobs SET state = ?, updated_at = ?, lease_token = '', lease_until = NULL, "
                "attempts = attempts - ?, finished_at = ?, error = ?, hint = ?, "
                "resume_latent = CASE WHEN ? THEN resume_latent END "
                "WHERE id = ? AND lease_token = ? AND state = 'running'",
                (
                    state,
                    now,
                    int(state == "waiting"),
                    None if state == "waiting" else now,
                    error,
                    hint,
                    state == "waiting",
                    claim.job.id,
                    claim.token,
                ),
            )
            return cur.rowcount == 1

    def interrupt(self, claim: Claim, reason: str = INTERRUPTED) -> str:
        """A held job whose run was cut short by its worker going away: it waits again, the attempt
        counted (as when a runner dies), or fails once it has used its attempts. Returns its state."""
        now = time.time()
        with self.gallery._tx() as conn:
            row = conn.execute(
                "SELECT request_json, attempts, max_attempts FROM jobs WHERE id = ? AND lease_token = ? "
                "AND state = 'running'",
                (claim.job.id, claim.token),
            ).fetchone()
            if row is None:
                return self._state(conn, claim.job.id)
            if self._settle(conn, claim.job.id, row["request_json"], now):
                return "done"
            if row["attempts"] >= row["max_attempts"]:
                conn.execute(
                    "UPDATE jobs SET state = 'failed', updated_at = ?, finished_at = ?, lease_token = '', "
                    "lease_until = NULL, error = ?, hint = ? WHERE id = ?",
                    (
                        now,
                        now,
                        f"The run was interrupted {row['attempts']} times ({reason}).",
                        "`studio queue retry ID` runs it again.",
                        claim.job.id,
                    ),
                )
                return "failed"
            conn.execute(
                "UPDATE jobs SET state = 'waiting', updated_at = ?, lease_token = '', lease_until = NULL, "
                "error = ? WHERE id = ?",
                (now, INTERRUPTED, claim.job.id),
            )
            return "waiting"

    def _state(self, conn: sqlite3.Connection, job_id: str) -> str:
        row = conn.execute("SELECT state FROM jobs WHERE id = ?", (job_id,)).fetchone()
        return str(row[0]) if row else "gone"

    def resume_point(self, job_id: str) -> tuple[int, np.ndarray] | None:
        """The step (and its latent) an interrupted job can continue from, if one was kept."""
        with self.gallery._lock:
            row = self.gallery.conn.execute(
                "SELECT resume_step, resume_latent FROM jobs WHERE id = ?", (job_id,)
            ).fetchone()
        if row is None or row[0] is None or row[1] is None:
            return None
        latent = latent_from(row[1])
        return (int(row[0]), latent) if latent is not None else None

    def keep_step(self, claim: Claim, step: int, latent: np.ndarray) -> bool:
        """Keep a running job's step latent, so a run interrupted later continues from it."""
        with self.gallery._tx() as conn:
            cur = conn.execute(
                "UPDATE jobs SET resume_step = ?, resume_latent = ? WHERE id = ? AND lease_token = ?",
                (int(step), latent_bytes(latent), claim.job.id, claim.token),
            )
        return cur.rowcount == 1

    # -- what people do to the queue ---------------------------------------------------------------------
    def cancel(self, job_id: str) -> Job:
        """A waiting job is cancelled at once; a running one is asked to stop (its runner stops it
        within a step and marks it cancelled)."""
        job = self.get(job_id)
        now = time.time()
        with self.gallery._tx() as conn:
            if job.state in ("waiting", "failed"):
                conn.execute(
                    "UPDATE jobs SET state = 'cancelled', updated_at = ?, finished_at = ? WHERE id = ? "
                    "AND state IN ('waiting', 'failed')",
                    (now, now, job.id),
                )
            elif job.state == "running":
                conn.execute("UPDATE jobs SET cancel_asked = 1, updated_at = ? WHERE id = ?", (now, job.id))
            else:
                raise QueueError(f"job {job.id[:8]} is {job.state}; there is nothing to cancel")
        return self.get(job.id)

    def retry(self, job_id: str) -> Job:
        """A failed or cancelled job waits again, at the end of the queue, with its attempts reset."""
        job = self.get(job_id)
        if job.state not in ("failed", "cancelled"):
            raise QueueError(
                f"job {job.id[:8]} is {job.state}; only failed or cancelled jobs can be retried",
                "`studio queue list --all` shows each job's state.",
            )
        now = time.time()
        with self.gallery._tx() as conn:
            (last,) = conn.execute("SELECT coalesce(max(position), 0) FROM jobs").fetchone()
            conn.execute(
                "UPDATE jobs SET state = 'waiting', attempts = 0, error = '', hint = '', position = ?, "
                "updated_at = ?, finished_at = NULL, cancel_asked = 0 WHERE id = ?",
                (float(last) + 1.0, now, job.id),
            )
            self._settle(conn, job.id, job.request_json, now)
        return self.get(job.id)

    def move(self, job_id: str, delta: int) -> None:
        """Move a waiting job `delta` places earlier (negative) or later among the waiting jobs."""
        waiting = [j.id for j in self.jobs(("waiting",))]
        job = self.get(job_id)
        if job.id not in waiting:
            raise QueueError(f"job {job.id[:8]} is {job.state}; only waiting jobs can be moved")
        order = [i for i in waiting if i != job.id]
        index = max(0, min(len(order), waiting.index(job.id) + delta))
        order.insert(index, job.id)
        self.reorder(order)

    def reorder(self, ids: list[str]) -> None:
        """Give the waiting jobs `ids` the run order of the list (others keep theirs after them)."""
        with self.gallery._tx() as conn:
            rest = [
                r[0]
                for r in conn.execute("SELECT id FROM jobs WHERE state = 'waiting' ORDER BY position, seq").fetchall()
                if r[0] not in ids
            ]
            for n, jid in enumerate([*ids, *rest]):
                conn.execute("UPDATE jobs SET position = ? WHERE id = ? AND state = 'waiting'", (float(n + 1), jid))

    def update_request(self, job_id: str, request: GenerationRequest) -> Job:
        """Change a waiting job's recipe."""
        job = self.get(job_id)
        with self.gallery._tx() as conn:
            cur = conn.execute(
                "UPDATE jobs SET request_json = ?, updated_at = ? WHERE id = ? AND state = 'waiting'",
                (request.to_json(), time.time(), job.id),
            )
            if cur.rowcount != 1:
                raise QueueError(f"job {job.id[:8]} is {job.state}; only a waiting job's recipe can be changed")
        return self.get(job.id)

    def clear(self, finished: bool = False) -> int:
        """Cancel every waiting job and dismiss the failed ones (a running job is left to its runner).
        With `finished`, also forget done and cancelled jobs (their images stay in the gallery).
        Returns how many jobs were cleared."""
        now = time.time()
        with self.gallery._tx() as conn:
            n = conn.execute(
                "UPDATE jobs SET state = 'cancelled', updated_at = ?, finished_at = ? "
                "WHERE state IN ('waiting', 'failed')",
                (now, now),
            ).rowcount
            if finished:
                n += conn.execute("DELETE FROM jobs WHERE state IN ('done', 'cancelled')").rowcount
        return n

    def prune(self, keep: int = KEEP_FINISHED) -> int:
        """Forget all but the newest `keep` done and cancelled jobs (the queue's disk stays bounded)."""
        with self.gallery._tx() as conn:
            return conn.execute(
                "DELETE FROM jobs WHERE state IN ('done', 'cancelled') AND seq NOT IN (SELECT seq FROM jobs "
                "WHERE state IN ('done', 'cancelled') ORDER BY updated_at DESC, seq DESC LIMIT ?)",
                (int(keep),),
            ).rowcount
