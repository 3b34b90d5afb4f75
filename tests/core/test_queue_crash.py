"""A queue run SIGKILLed again and again at random points — counted in saves and steps, not
seconds — loses nothing and makes nothing twice: every job ends done with exactly its images."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from studio.core.queue import JobStore
from studio.core.request import GenerationRequest

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
POINTS = ("job:claimed", "job:step", "job:generated", "save:pending", "save:written", "save:landed", "job:done")

RUNNER = textwrap.dedent(
    """
    import sys
    from fake_engine import FakeEngine
    from studio.core.queue import JobStore, QueueRunner, RunnerId

    with JobStore.open(sys.argv[1]) as store:
        outcomes = QueueRunner(store, FakeEngine(), runner=RunnerId.here("crash test"), keep_every_s=0.0).run()
    print("finished", len(outcomes), flush=True)
    """
)


def test_sigkill_at_random_points_of_a_queue_run_loses_and_duplicates_nothing(tmp_path):
    lib = tmp_path / "lib"
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    expected: dict[str, list[int]] = {}
    with JobStore.open(lib) as store:
        for n in range(16):
            batch = 1 + n % 3
            r = GenerationRequest.create(prompt=f"crash job {n}", seed=100 * n, steps=6, batch_size=batch)
            expected[store.add(r, max_attempts=1000).id] = [100 * n + i for i in range(batch)]
    env = {**os.environ, "STUDIO_HOME": str(tmp_path / "home"), "PYTHONPATH": os.pathsep.join([str(REPO), str(HERE)])}
    kills, finished = [], False
    for _ in range(40):
        point = f"{rng.choice(POINTS)}:{rng.randrange(1, 7)}"
        proc = subprocess.run(
            [sys.executable, "-c", RUNNER, str(lib)],
            env={**env, "STUDIO_KILL_AT": point},
            capture_output=True,
            text=True,
            timeout=120,
        )
        if proc.returncode == -signal.SIGKILL:
            kills.append(point)
            continue
        assert proc.returncode == 0, f"{proc.stderr[-2000:]} (seed {seed})"
        finished = True
        break
    assert finished, f"the queue never finished (seed {seed}, kills {kills})"
    assert len(kills) >= 3, f"too few kills to mean anything: {kills} (seed {seed})"

    with JobStore.open(lib) as store:
        assert store.jobs() == [], f"jobs left undone (seed {seed}, kills {kills})"
        items = store.gallery.query()
        by_job: dict[str, list] = {}
        for item in items:
            by_job.setdefault(item.run_id, []).append(item)
        for job_id, seeds in expected.items():
            got = sorted(i.seed for i in by_job.get(job_id, []))
            assert got == seeds, f"job {job_id[:8]}: seeds {got}, wanted {seeds} (seed {seed}, kills {kills})"
            job = store.get(job_id)
            assert job.state == "done" and set(job.gallery_ids) == {i.id for i in by_job[job_id]}
        report = store.gallery.check()
        assert report.clean, f"{report.summary()} (seed {seed}, kills {kills})"
        files = [p for p in lib.rglob("*.png") if ".thumbs" not in p.parts]
        assert len(files) == len(items) == sum(len(s) for s in expected.values())
        assert not list(lib.rglob("*.tmp"))
