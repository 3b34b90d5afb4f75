"""The session's step history: every step of every run, kept for scrubbing and branching.

Plain Python + numpy (no Qt, no torch) so it can be tested on its own. Each run keeps, per step,
the small preview image and the latent (both numpy, on the CPU). A memory budget bounds the total;
when it is exceeded the oldest steps of the oldest runs are dropped first, and the run that is
being generated right now is never touched (its steps are what the user is watching).
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np

from studio.core.hires import total_steps
from studio.core.request import GenerationRequest
from studio.core.results import StepPreview

DEFAULT_BUDGET_MB = 512


@dataclass
class KeptStep:
    step: int
    total: int
    timestep: float
    image: np.ndarray | None
    latent: np.ndarray | None
    elapsed_s: float
    decoder: str = ""  # what drew the image ("x0 · preview decoder" …), for the canvas label

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.image, self.latent) if a is not None)


@dataclass
class RunRecord:
    run_id: str
    number: int  # 1, 2, 3… in this session, for people
    request: GenerationRequest
    status: str = "queued"  # queued | loading | running | done | cancelled | failed
    steps: dict[int, KeptStep] = field(default_factory=dict)
    evicted: int = 0  # steps dropped to stay within the budget
    images: list[np.ndarray] = field(default_factory=list)
    gallery_ids: list[str] = field(default_factory=list)
    error: str = ""
    restored: bool = False  # brought back from a gallery image's kept steps (studio.session.kept_runs)

    @property
    def parent_id(self) -> str | None:
        return self.request.branch.parent_id if self.request.branch else None

    @property
    def branch_step(self) -> int | None:
        return self.request.branch.step if self.request.branch else None

    @property
    def first_step(self) -> int:
        """The first step this run makes itself (k+1 for a branch from step k)."""
        return (self.branch_step or 0) + 1

    @property
    def total(self) -> int:
        """The steps the run makes in all, as the engine counts them once it has sent one (an upscale
        counts tiles); the request's (both passes of a hires fix) before that."""
        if self.steps:
            return self.steps[max(self.steps)].total
        return total_steps(self.request)

    @property
    def finished(self) -> bool:
        return self.status in ("done", "cancelled", "failed")

    def kept_steps(self) -> list[int]:
        return sorted(self.steps)

    def nbytes(self) -> int:
        return sum(s.nbytes for s in self.steps.values()) + sum(i.nbytes for i in self.images)


class StepHistory:
    """Runs in creation order, with a byte budget and oldest-first eviction."""

    def __init__(self, budget_mb: float = DEFAULT_BUDGET_MB) -> None:
        self.budget_bytes = int(budget_mb * 1024 * 1024)
        self.runs: OrderedDict[str, RunRecord] = OrderedDict()
        self.current_id: str | None = None  # the run being generated; never evicted
        self._bytes = 0
        self._counter = 0

    # -- runs -----------------------------------------------------------------------------------------
    def add_run(self, run_id: str, request: GenerationRequest) -> RunRecord:
        self._counter += 1
        rec = RunRecord(run_id, self._counter, request)
        self.runs[run_id] = rec
        return rec

    def get(self, run_id: str | None) -> RunRecord | None:
        return self.runs.get(run_id) if run_id else None

    def remove_run(self, run_id: str) -> None:
        rec = self.runs.pop(run_id, None)
        if rec is not None:
            self._bytes -= rec.nbytes()

    def __len__(self) -> int:
        return len(self.runs)

    def children_of(self, run_id: str) -> list[RunRecord]:
        return [r for r in self.runs.values() if r.parent_id == run_id]

    # -- steps ----------------------------------------------------------------------------------------
    def add_step(self, run_id: str, preview: StepPreview) -> KeptStep | None:
        rec = self.runs.get(run_id)
        if rec is None:
            return None
        kept = KeptStep(
            preview.step,
            preview.total,
            preview.timestep,
            _own(preview.image),
            _own(preview.latent),
            preview.elapsed_s,
            preview.decoder,
        )
        old = rec.steps.pop(kept.step, None)
        if old is not None:
            self._bytes -= old.nbytes
        rec.steps[kept.step] = kept
        self._bytes += kept.nbytes
        self._evict()
        return kept

    def set_images(self, run_id: str, images: list[np.ndarray]) -> None:
        rec = self.runs.get(run_id)
        if rec is None:
            return
        self._bytes -= sum(i.nbytes for i in rec.images)
        rec.images = list(images)
        self._bytes += sum(i.nbytes for i in rec.images)
        self._evict()

    def step(self, run_id: str, step: int) -> KeptStep | None:
        rec = self.runs.get(run_id)
        return rec.steps.get(step) if rec else None

    @property
    def used_bytes(self) -> int:
        return self._bytes

    def _evict(self) -> None:
        if self._bytes <= self.budget_bytes:
            return
        for rec in self.runs.values():  # oldest run first
            if rec.run_id == self.current_id:
                continue
            for step in sorted(rec.steps):  # oldest step first
                if self._bytes <= self.budget_bytes:
                    return
                self._bytes -= rec.steps.pop(step).nbytes
                rec.evicted += 1
            if self._bytes <= self.budget_bytes:
                return


def _own(a: np.ndarray | None) -> np.ndarray | None:
    """A compact copy we own (the engine may reuse its buffers)."""
    if a is None:
        return None
    return np.ascontiguousarray(a).copy()


def resolve_step(history: StepHistory, run_id: str, step: int) -> KeptStep | None:
    """Step `step` as seen from run `run_id`: a branch's steps up to its branch point are its parent's."""
    seen = set()
    rec = history.get(run_id)
    while rec is not None and rec.run_id not in seen:
        seen.add(rec.run_id)
        if rec.branch_step is None or step > rec.branch_step:
            return rec.steps.get(step)
        rec = history.get(rec.parent_id)
    return None
