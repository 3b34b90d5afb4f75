"""`studio --smoke-test`: headless check of an installation (the packaged build runs it).

Checks that the studio's own plugins are found (through their entry points), generates with the
bundled demo model into a temporary library and checks the image and its provenance: the recipe
read back from the file equals the request, the C2PA manifest validates, the gallery holds the row
and the image's kept steps; the step previews are drawn by the demo model's shipped preview decoder.
Exit 0, or 1 with the reason.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from typing import Any


def run() -> int:
    t0 = time.perf_counter()
    previous = os.environ.get("STUDIO_HOME")
    try:
        return _run(t0)
    finally:
        if previous is None:
            os.environ.pop("STUDIO_HOME", None)
        else:
            os.environ["STUDIO_HOME"] = previous


def _run(t0: float) -> int:
    with tempfile.TemporaryDirectory(prefix="studio-smoke-") as home:
        os.environ["STUDIO_HOME"] = home
        try:
            import numpy as np

            from studio.core.gallery import Gallery, record_result
            from studio.core.metadata import read_metadata
            from studio.core.metadata.provenance import verify_file
            from studio.core.paths import demo_model_dir
            from studio.core.request import GenerationRequest
            from studio.engine.engine import Engine
            from studio.engine.tiny_decoders import OWN_FOLDER  # the demo model's preview decoder, shipped in it

            engine = Engine()
            problems = []
            for name in ("lora", "controlnet"):  # found through their entry points, as installed plugins are
                rec = engine.plugins.records.get(name)
                if rec is None or rec.status != "enabled":
                    problems.append(f"the {name} plugin is {rec.status + ': ' + rec.error if rec else 'not found'}")
            lm = engine.load("demo")
            size = int(lm.pipe.unet.config.sample_size) * 8
            request = GenerationRequest.create(
                model="demo",
                prompt="a red circle on a blue background",
                steps=8,
                width=size,
                height=size,
                seed=7,
                guidance_scale=4.0,
            )
            steps: list[Any] = []
            result = engine.generate(request, on_step=steps.append)
            if result.status != "done" or len(result.images) != 1:
                problems.append(f"generation ended {result.status!r}")
            if len(steps) != request.steps:
                problems.append(f"{len(steps)} step previews for {request.steps} steps")
            elif (demo_model_dir() / OWN_FOLDER).is_dir() and steps[0].decoder != "x0 · preview decoder":
                problems.append(f"the step previews are drawn by {steps[0].decoder!r}, not the preview decoder")
            image = result.images[0] if result.images else np.zeros((1, 1, 3), np.uint8)
            if image.shape != (size, size, 3) or image.std() < 1.0:
                problems.append(f"image is blank or the wrong size {image.shape}")
            items = record_result(result, steps=steps)
            meta = read_metadata(items[0].path)
            if meta.request != request:
                problems.append("the recipe read back from the file differs from the request")
            status = verify_file(items[0].path)
            if not status.valid:
                problems.append(f"C2PA manifest is {status.state}: {status.detail}")
            with Gallery() as gallery:
                if len(gallery.search("circle")) != 1:
                    problems.append("the gallery does not find the image")
                kept = gallery.kept_steps(items[0].id)
                if kept is None or sorted(kept.steps) != list(range(1, request.steps + 1)):
                    problems.append("the image's steps were not kept with it")
                problems += _queue_round_trip(gallery, engine, request)
        except Exception as exc:  # noqa: BLE001 — the smoke test reports, never crashes
            problems = [f"{exc.__class__.__name__}: {exc}"]
        if problems:
            print("smoke test FAILED: " + "; ".join(problems), file=sys.stderr)
            return 1
        print(
            f"smoke test passed: {size}×{size}, {request.steps} steps on {result.device}/{result.dtype}, "
            f"provenance valid, {time.perf_counter() - t0:.1f} s"
        )
        return 0


def _queue_round_trip(gallery, engine, request) -> list[str]:
    """A job through the durable queue: added, claimed under the runner lock, landed, done."""
    from studio.core.queue import JobStore, QueueRunner, RunnerId, RunnerLock

    store = JobStore(gallery)
    job = store.add(request.replace(seed=8), source="smoke test")
    with RunnerLock(gallery.root, "smoke test"):
        outcomes = QueueRunner(store, engine, runner=RunnerId.here("smoke test")).run()
    if [o.status for o in outcomes] != ["done"] or store.get(job.id).state != "done":
        return [f"the queued job ended {[o.status for o in outcomes]} ({store.get(job.id).error})"]
    if store.jobs() or not gallery.check().clean:
        return ["the queue or the gallery is not clean after the queued job"]
    return []
