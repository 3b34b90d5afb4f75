"""A writer SIGKILLed at random points while saving 200 images leaves `gallery check` clean."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from studio.core.gallery import Gallery
from studio.core.metadata import read_metadata

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")

REPO = Path(__file__).resolve().parents[2]

WRITER = textwrap.dedent(
    """
    import sys
    import numpy as np
    from studio.core.gallery import Gallery
    from studio.core.request import GenerationRequest

    lib, start = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(start)
    with Gallery(lib) as g:
        print("ready", flush=True)
        for n in range(start, start + 200):
            req = GenerationRequest.create(prompt=f"crash test image {n}", seed=n)
            g.add_image(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8), req)
            print("saved", n, flush=True)
    print("done", flush=True)
    """
)


def test_sigkill_while_saving_leaves_check_clean(tmp_path):
    lib = tmp_path / "lib"
    env = {**os.environ, "STUDIO_HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO)}
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    killed = 0
    for run in range(4):
        proc = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(lib), str(run * 1000)],
            stdout=subprocess.PIPE, env=env, text=True,
        )  # fmt: skip
        assert proc.stdout.readline().strip() == "ready"
        # Kill points counted in saves, not seconds, so a fast machine cannot outrun them: after a
        # random number of finished saves, wait a random fraction of a save, then SIGKILL.
        for _ in range(rng.randrange(1, 180)):
            proc.stdout.readline()
        time.sleep(rng.uniform(0.0, 0.02))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed += 1
        proc.wait(timeout=30)
    assert killed >= 3, f"writers finished before being killed (seed {seed})"

    with Gallery(lib) as g:  # opening finishes or drops the interrupted saves
        report = g.check()
        assert report.clean, f"{report.summary()} (seed {seed})"
        items = g.query()
        assert items, f"nothing was saved before the kills (seed {seed})"
        # No half-written image anywhere: every file in the library reads back whole.
        files = [p for p in lib.rglob("*.png") if ".thumbs" not in p.parts]
        assert len(files) == len(items)
        for item in items:
            assert read_metadata(item.path).request.prompt == item.prompt
        assert not list(lib.rglob("*.tmp"))
