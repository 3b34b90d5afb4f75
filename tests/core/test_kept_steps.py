"""Steps that last: a gallery run's step previews and latents kept beside the gallery, its budget
(oldest first), trash, `gallery check` and the queue's resume point (studio.core.gallery.steps)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from studio.core import settings
from studio.core.gallery import Gallery, record_result
from studio.core.gallery.steps import Budget, StepStore
from studio.core.request import GenerationRequest
from studio.core.results import GenerationResult, StepPreview


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("STUDIO_LIBRARY", raising=False)


def steps_of(n: int, seed: int = 0, batch: int = 1) -> list[StepPreview]:
    rng = np.random.default_rng(seed)
    return [
        StepPreview(
            step=s,
            total=n,
            timestep=1000.0 - 50 * s,
            image=rng.integers(0, 256, (16, 16 * batch, 3), dtype=np.uint8),
            latent=rng.standard_normal((batch, 4, 8, 8)).astype(np.float32),
            mode="x0",
            elapsed_s=0.1 * s,
            decoder="x0 · preview decoder",
        )
        for s in range(1, n + 1)
    ]


def record(lib, prompt: str, n: int = 4, seed: int = 0, batch: int = 1, run_id: str | None = None):
    req = GenerationRequest.create(prompt=prompt, seed=seed, steps=n, batch_size=batch, width=64, height=64)
    images = [np.full((64, 64, 3), seed + i, np.uint8) for i in range(batch)]
    result = GenerationResult(request=req, images=images, seeds=[seed + i for i in range(batch)], total_steps=n)
    result.run_id = run_id or f"run-{prompt.replace(' ', '-')}"
    items = record_result(result, library=lib, steps=steps_of(n, seed, batch))
    return items, result.run_id


def test_a_recorded_run_keeps_its_steps_exactly(tmp_path):
    lib = tmp_path / "lib"
    items, run_id = record(lib, "a red kite", n=5, seed=3)
    made = steps_of(5, 3)
    with Gallery(lib) as g:
        kept = g.kept_steps(items[0].id)
        assert kept is not None and kept.run_id == run_id and kept.total == 5
        assert kept.request == items[0].request and sorted(kept.steps) == [1, 2, 3, 4, 5]
        for p in made:
            assert np.array_equal(kept.image(p.step), p.image)  # lossless: the same pixels as in the session
            assert kept.steps[p.step].decoder == "x0 · preview decoder"
            assert kept.steps[p.step].timestep == p.timestep
        for p in made[:-1]:  # the latents to branch from, bit for bit
            assert np.array_equal(kept.latent(p.step), p.latent) and kept.latent(p.step).dtype == np.float32
        assert kept.latent(5) is None  # the last step is the finished picture: nothing to branch from
        assert g.check().clean


def test_budget_drops_the_oldest_runs_latents_first(tmp_path, monkeypatch):
    lib = tmp_path / "lib"
    settings.update(steps_keep_images=3, steps_keep_gb=2.0)
    runs = []
    for i in range(5):
        runs.append(record(lib, f"run {i}", seed=i)[1])
        time.sleep(0.01)  # distinct creation times
    store = StepStore(lib)
    with_latents = [r for r in runs if store.get(r).latent_bytes]
    assert with_latents == runs[2:]  # the three newest keep their latents
    for r in runs[:2]:  # the older ones keep their previews
        kept = store.get(r)
        assert kept.latents_dropped and kept.latent(1) is None and kept.image(1) is not None
        assert not (store.folder(r) / "latents").exists()
    # A batch counts each of its images; a size limit applies too.
    batch = record(lib, "batch", seed=9, batch=2)[1]
    assert [r for r in runs if store.get(r).latent_bytes] == runs[4:]  # 2 + 1 images: run 3 went
    one_run = store.get(runs[4]).latent_bytes
    assert 1.8 * one_run < store.get(batch).latent_bytes < 2 * one_run  # its latents hold two images
    dropped = store.enforce(Budget(images=100, bytes=int(one_run * 2.5)))
    assert dropped == [runs[4]]  # the older, though smaller, goes first: the newest fit
    u = store.usage()
    assert u.runs == 6 and u.runs_with_latents == 1 and u.images_with_latents == 2
    assert u.latent_bytes == store.get(batch).latent_bytes and u.preview_bytes > 0


def test_trash_and_delete_remove_a_runs_steps(tmp_path):
    lib = tmp_path / "lib"
    (solo,), solo_run = record(lib, "solo")
    pair, pair_run = record(lib, "pair", seed=5, batch=2)
    with Gallery(lib) as g:
        g.trash(solo.id)
        assert g.steps.get(solo_run) is None and not g.steps.folder(solo_run).exists()
        g.trash(pair[0].id)  # the other image of the batch still shows the run's steps
        assert g.kept_steps(pair[1].id) is not None
        g.trash(pair[1].id)
        assert g.steps.get(pair_run) is None
        assert g.check().clean and g.empty_trash() == 3


def test_gallery_check_finds_and_repairs_missing_and_corrupt_step_files(tmp_path):
    lib = tmp_path / "lib"
    (item,), run_id = record(lib, "checked", n=4)
    record(lib, "other", n=3)
    store = StepStore(lib)
    folder = store.folder(run_id)
    (folder / "p0002.png").unlink()  # a missing preview
    latent = folder / "latents" / "l0003.npy"
    latent.write_bytes(latent.read_bytes()[:-8] + b"\0" * 8)  # a corrupt latent (same size, other bytes)
    orphan = store.folder("nobody-made-me")
    store.save_run("nobody-made-me", item.request, steps_of(2), total=2)
    with Gallery(lib) as g:
        report = g.check()
        assert not report.clean
        assert sorted(report.step_files) == [f"{run_id}/latents/l0003.npy", f"{run_id}/p0002.png"]
        assert report.step_orphans == ["nobody-made-me"]
        assert "bad kept step files" in report.summary()
        fixed = g.check(repair=True)
        assert any("l0003" in r for r in fixed.repaired) and not orphan.exists()
        assert g.check().clean
        kept = g.kept_steps(item.id)
        assert kept.image(2) is None and kept.latent(3) is None  # forgotten, not served wrong
        assert kept.image(3) is not None and kept.latent(2) is not None  # the rest stays


def test_cli_gallery_check_reports_step_files(tmp_path, capsys):
    from studio.cli import main

    lib = tmp_path / "lib"
    (item,), run_id = record(lib, "cli checked")
    (StepStore(lib).folder(run_id) / "p0001.png").unlink()
    assert main(["gallery", "--library", str(lib), "check", "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["step_files"] == [f"{run_id}/p0001.png"] and not out["clean"]
    assert main(["gallery", "--library", str(lib), "check", "--repair"]) in (0, 1)
    capsys.readouterr()
    assert main(["gallery", "--library", str(lib), "check"]) == 0
