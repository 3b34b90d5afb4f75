"""The durable queue's store and runner, on a numpy stand-in engine (no torch): claims, leases,
attempts, landing an image and its job in one commit, cancel, retry, reorder, edit, resume."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from fake_engine import FakeEngine

from studio.core.gallery import Gallery
from studio.core.queue import JobStore, QueueBusy, QueueError, QueueRunner, RunnerId, RunnerLock
from studio.core.request import GenerationRequest


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))


@pytest.fixture
def store(tmp_path):
    with JobStore.open(tmp_path / "lib") as s:
        yield s


def req(seed: int, prompt: str = "a queued picture", **fields) -> GenerationRequest:
    return GenerationRequest.create(prompt=prompt, seed=seed, steps=fields.pop("steps", 4), **fields)


def dead_runner() -> RunnerId:
    """A runner on this machine whose process is gone (pid 0 never names a live runner)."""
    return RunnerId("a runner that died", RunnerId.here("x").host, 0, 0.0)


def test_jobs_run_in_order_and_each_image_lands_once(store):
    ids = [store.add(req(s)).id for s in (3, 1, 2)]
    engine = FakeEngine()
    outcomes = QueueRunner(store, engine).run()
    assert [o.job_id for o in outcomes] == ids and {o.status for o in outcomes} == {"done"}
    assert [c["seed"] for c in engine.calls] == [3, 1, 2]
    assert store.jobs() == []  # nothing left that is not done
    done = store.jobs(("done",))
    assert {j.id for j in done} == set(ids) and all(len(j.gallery_ids) == 1 for j in done)
    items = store.gallery.query()
    assert sorted(i.seed for i in items) == [1, 2, 3]
    assert {i.run_id for i in items} == set(ids)  # a job's images carry its id as their run
    assert store.gallery.check().clean


def test_a_batch_job_is_done_when_every_image_is_in(store):
    job = store.add(req(10, batch_size=3), out_path=str(store.root.parent / "out" / "b.png"))
    [outcome] = QueueRunner(store, FakeEngine()).run()
    assert outcome.status == "done" and [i.seed for i in outcome.items] == [10, 11, 12]
    assert store.get(job.id).state == "done" and len(store.get(job.id).gallery_ids) == 3
    assert sorted(p.name for p in (store.root.parent / "out").iterdir()) == ["b-1.png", "b-2.png", "b-3.png"]


def test_a_claim_is_atomic_across_connections(tmp_path):
    """Two stores on one library (two processes, in effect) never take the same job."""
    with JobStore.open(tmp_path / "lib") as a, JobStore.open(tmp_path / "lib") as b:
        for s in range(6):
            a.add(req(s))
        taken: list[str] = []
        lock = threading.Lock()

        def take(store: JobStore, name: str) -> None:
            me = RunnerId.here(name)
            while (claim := store.claim(me)) is not None:
                with lock:
                    taken.append(claim.job.id)

        threads = [threading.Thread(target=take, args=(s, n)) for s, n in ((a, "a"), (b, "b"))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(taken) == 6 and len(set(taken)) == 6


def test_a_dead_runners_job_waits_again_then_fails_after_its_attempts(store):
    job = store.add(req(1), max_attempts=2)
    ghost = dead_runner()
    assert store.claim(ghost).job.id == job.id
    [interrupted] = store.recover()
    assert interrupted.id == job.id and interrupted.state == "waiting" and interrupted.attempts == 1
    assert store.claim(ghost).job.attempts == 2
    [failed] = store.recover()
    assert failed.state == "failed" and "interrupted 2 times" in failed.error
    assert store.claim(RunnerId.here("next")) is None
    assert store.retry(job.id).state == "waiting" and store.get(job.id).attempts == 0


def test_an_expired_lease_is_taken_over_and_the_first_runners_image_is_not_kept_twice(store):
    """A runner elsewhere (alive as far as this machine can tell) that stopped renewing its lease
    loses the job; if it wakes up and saves anyway, its copy is dropped."""
    job = store.add(req(7))
    far = RunnerId("on another machine", "elsewhere.invalid", 4242, 1.0)
    first = store.claim(far, lease_s=0.05)
    time.sleep(0.1)
    second = store.claim(RunnerId.here("here"))
    assert second is not None and second.job.id == job.id and second.job.attempts == 2
    assert store.heartbeat(first) == (False, False)  # the first runner sees it lost the job
    img = np.full((8, 8, 3), 9, np.uint8)
    g = store.gallery
    a = g.add_image(img, job.request, info={"sign": False}, run_id=job.id, finalize=store.lander(job.id))
    b = g.add_image(img, job.request, info={"sign": False}, run_id=job.id, finalize=store.lander(job.id))
    assert a.id == b.id and len(g.query()) == 1 and g.check().clean
    assert store.get(job.id).state == "done"


def test_a_user_error_fails_the_job_and_the_queue_goes_on(store):
    bad = store.add(req(1, prompt="please refuse me"))
    broken = store.add(req(2, prompt="please break"))
    good = store.add(req(3))
    outcomes = QueueRunner(store, FakeEngine(fail_on="refuse", crash_on="break")).run()
    assert [o.status for o in outcomes] == ["failed", "failed", "done"]
    assert "refuses" in store.get(bad.id).error
    assert "RuntimeError" in store.get(broken.id).error and "log" in store.get(broken.id).hint
    assert {j.id for j in store.jobs()} == {bad.id, broken.id}  # failed jobs stay listed until retried
    assert store.get(good.id).state == "done"


def test_cancel_waiting_and_running_jobs(store):
    waiting = store.add(req(1))
    running = store.add(req(2, steps=200))
    assert store.cancel(waiting.id).state == "cancelled"
    runner = QueueRunner(store, FakeEngine(step_s=0.01), lease_s=0.3)
    claim = store.claim(RunnerId.here("t"))
    assert claim.job.id == running.id
    threading.Timer(0.2, lambda: store.cancel(running.id)).start()  # from elsewhere: the Queue panel
    outcome = runner.run_claimed(claim)
    assert outcome.status == "cancelled" and store.get(running.id).state == "cancelled"
    with pytest.raises(QueueError, match="nothing to cancel"):
        store.cancel(running.id)
    assert store.retry(running.id).state == "waiting"


def test_stopping_a_runner_gives_the_job_back_and_it_resumes_from_its_kept_step(store):
    """Ctrl+C twice: the running job goes back to waiting, uncounted, and continues from the last
    step the runner kept; the image is recorded as that run continued from that step."""
    job = store.add(req(5, steps=40))
    engine = FakeEngine(step_s=0.01)
    abandon = threading.Event()
    runner = QueueRunner(store, engine, keep_every_s=0.0)
    threading.Timer(0.15, abandon.set).start()
    [outcome] = runner.run(stop=threading.Event(), abandon=abandon)
    assert outcome.status == "requeued"
    back = store.get(job.id)
    assert back.state == "waiting" and back.attempts == 0 and back.resume_step is not None
    kept = back.resume_step
    assert 0 < kept < 40
    [outcome] = QueueRunner(store, engine).run()
    assert outcome.status == "done" and outcome.resumed_from == kept
    assert engine.calls[-1]["branch"].step == kept and engine.calls[-1]["latent"]
    [item] = store.gallery.query()
    assert item.branch_step == kept and item.branch_run == job.id and item.run_id == job.id
    assert store.gallery.parent(item.id) is None  # its "parent" run never made an image
    assert store.resume_point(job.id) is None  # the kept step is dropped once the job is done


def test_reorder_edit_and_clear(store):
    a, b, c = (store.add(req(s)) for s in (1, 2, 3))
    store.move(c.id, -2)
    assert [j.id for j in store.jobs()] == [c.id, a.id, b.id]
    store.reorder([b.id])
    assert [j.id for j in store.jobs()] == [b.id, c.id, a.id]
    edited = store.update_request(a.id, a.request.replace(prompt="changed while it waited", seed=99))
    assert edited.request.prompt == "changed while it waited" and edited.request.seed == 99
    claim = store.claim(RunnerId.here("t"))
    with pytest.raises(QueueError, match="waiting"):
        store.update_request(claim.job.id, claim.job.request.replace(seed=1))
    with pytest.raises(QueueError, match="waiting"):
        store.move(claim.job.id, 1)
    assert store.clear() == 2  # the two waiting ones; the running one is its runner's
    assert [j.state for j in store.jobs()] == ["running"]
    assert store.jobs(("cancelled",)) and store.clear(finished=True) >= 2
    assert store.jobs(("cancelled",)) == []


def test_ids_by_prefix_and_clear_errors(store):
    job = store.add(req(1))
    assert store.get(job.id[:6]).id == job.id
    with pytest.raises(QueueError, match="no queued job"):
        store.get("ffff0000")
    with pytest.raises(QueueError, match="only failed or cancelled"):
        store.retry(job.id)
    with pytest.raises(QueueError, match="at least 1"):
        store.add(req(1), max_attempts=0)


def test_a_branch_jobs_latent_is_kept_with_it(store):
    latent = np.arange(16, dtype=np.float32).reshape(1, 4, 2, 2)
    parent = store.gallery.add_image(np.zeros((8, 8, 3), np.uint8), req(1), info={"sign": False}, run_id="run-a")
    from studio.core.request import BranchRef

    job = store.add(req(1, branch=BranchRef(parent_id="run-a", step=2)), latent=latent, parent_id=parent.id)
    assert job.has_latent and np.array_equal(store.latent(job.id), latent)
    engine = FakeEngine()
    [outcome] = QueueRunner(store, engine).run()
    assert outcome.status == "done" and engine.calls[0]["latent"]
    assert store.gallery.parent(outcome.items[0].id).id == parent.id


def test_a_job_whose_image_landed_before_a_crash_is_not_run_again(store):
    """The runner died after the image's commit but before it could go on: the job is done."""
    job = store.add(req(4))
    store.claim(dead_runner())
    store.gallery.add_image(
        np.zeros((8, 8, 3), np.uint8), job.request, info={"sign": False}, run_id=job.id, finalize=store.lander(job.id)
    )
    engine = FakeEngine()
    assert QueueRunner(store, engine).run() == [] and engine.calls == []
    assert store.get(job.id).state == "done"


def test_pruning_keeps_the_newest_finished_jobs(store):
    for s in range(5):
        store.add(req(s))
    QueueRunner(store, FakeEngine()).run()
    assert store.prune(keep=2) == 3 and len(store.jobs(("done",))) == 2


def test_one_runner_lock_per_library(tmp_path):
    (tmp_path / "lib").mkdir()
    with (
        RunnerLock(tmp_path / "lib", "studio queue run"),
        pytest.raises(QueueBusy, match=r"studio queue run \(pid \d+"),
    ):
        RunnerLock(tmp_path / "lib", "the window").acquire()
    with RunnerLock(tmp_path / "lib", "the window") as lock:
        assert lock.held


def test_the_queue_shares_the_gallery_database(tmp_path):
    with Gallery(tmp_path / "lib") as g:
        store = JobStore(g)
        store.add(req(1))
        assert g.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert g.conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 1
