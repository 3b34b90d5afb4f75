"""An engine stand-in for queue tests: numpy only, deterministic pixels per seed, real step callbacks.

`generate()` takes `Engine.generate`'s arguments, calls `on_step` once per step with a latent
(so a runner can keep steps), honours `cancel` between steps and continues a branch from its
latent, and returns a `GenerationResult` whose images depend only on the seeds (and, for a
branch, on the step it started from, as a real resumed run's would).
"""

from __future__ import annotations

import threading
import time

import numpy as np

from studio.core.errors import InvalidRequest
from studio.core.results import GenerationResult, StepPreview


class FakeEngine:
    def __init__(self, step_s: float = 0.0, fail_on: str = "", crash_on: str = "") -> None:
        self.step_s = step_s
        self.fail_on = fail_on  # a prompt containing this raises a user error (InvalidRequest)
        self.crash_on = crash_on  # … or an unexpected exception
        self.calls: list[dict] = []

    def generate(self, request, on_step=None, cancel=None, on_progress=None, branch_latent=None):
        self.calls.append({"seed": request.seed, "branch": request.branch, "latent": branch_latent is not None})
        if self.fail_on and self.fail_on in request.prompt:
            raise InvalidRequest(f"the fake engine refuses {request.prompt!r}")
        if self.crash_on and self.crash_on in request.prompt:
            raise RuntimeError("the fake engine broke")
        start = request.branch.step if request.branch is not None else 0
        if start and branch_latent is None:
            raise InvalidRequest("a branch needs its latent")
        latent = (
            np.asarray(branch_latent, dtype=np.float32)
            if branch_latent is not None
            else np.zeros((request.batch_size, 4, 2, 2), np.float32)
        )
        status, step = "done", start
        for step in range(start + 1, request.steps + 1):
            if cancel is not None and cancel.is_set():
                status = "cancelled"
                break
            if self.step_s:
                time.sleep(self.step_s)
            latent = latent + 1.0
            if on_step is not None:
                on_step(
                    StepPreview(
                        step=step,
                        total=request.steps,
                        timestep=float(step),
                        image=None,
                        latent=latent.copy(),
                        mode="none",
                    )
                )
        seeds = [(request.seed + i) % 2**32 for i in range(request.batch_size)]
        images = []
        if status == "done":
            for s in seeds:
                rng = np.random.default_rng([s, start])
                images.append(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
        return GenerationResult(
            request=request,
            images=images,
            seeds=seeds,
            status=status,
            steps_done=step if status == "cancelled" else request.steps,
            total_steps=request.steps,
            model_name="fake",
            branch_start=start,
        )


def cancel_after(event: threading.Event, seconds: float) -> threading.Timer:
    timer = threading.Timer(seconds, event.set)
    timer.start()
    return timer
