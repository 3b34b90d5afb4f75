"""The window and the durable queue: the Resume / Review / Clear prompt after a crash, the Queue panel
as a view of the store (pause, edit a waiting job, retry a failed one), one runner per library, and
the crash dialog and Help ▸ Open log folder."""

from __future__ import annotations

import logging
import threading

import pytest
from PySide6.QtWidgets import QApplication

from studio.core.queue import JobStore, RunnerId, RunnerLock
from studio.core.request import GenerationRequest


def req(seed: int, prompt: str = "a queued red circle") -> GenerationRequest:
    return GenerationRequest.create(model="demo", prompt=prompt, seed=seed, steps=3, width=64, height=64)


def seed_queue(library, waiting=(1, 2), running=(3,)) -> list[str]:
    """Jobs as a crash leaves them: some waiting, some running under a runner that is gone."""
    ghost = RunnerId("the studio window", RunnerId.here("x").host, 0, 0.0)
    ids = []
    with JobStore.open(library) as store:
        for seed in running:
            ids.append(store.add(req(seed)).id)
            store.claim(ghost)
        for seed in waiting:
            ids.append(store.add(req(seed)).id)
    return ids


@pytest.fixture
def queue_window(make_window, studio_home, qtbot, fake_engine):
    def make(**kw):
        kw.setdefault("engine_factory", fake_engine)
        kw.setdefault("durable_queue", True)
        w = make_window(**kw)
        qtbot.waitUntil(lambda: w.bridge.device is not None, timeout=30_000)  # the engine thread is up
        return w

    return make


def library(studio_home):
    return studio_home / "library"


def gallery_seeds(studio_home) -> list[int]:
    with JobStore.open(library(studio_home)) as store:
        return sorted(i.seed for i in store.gallery.query())


def test_after_a_crash_the_window_offers_the_jobs_and_resume_runs_them(queue_window, studio_home, qtbot):
    seed_queue(library(studio_home))
    w = queue_window()
    qtbot.waitUntil(lambda: w.queue_setup.prompt_box is not None, timeout=10_000)
    box = w.queue_setup.prompt_box
    assert box.isVisible() and "3 jobs were waiting (1 was running)" in box.text()
    assert {b.text() for b in box.buttons()} == {"Resume", "Review", "Clear"}
    assert w.bridge.paused and not w.bridge.pending  # nothing from before runs until asked
    w.queue_setup.buttons["resume"].click()
    qtbot.waitUntil(lambda: gallery_seeds(studio_home) == [1, 2, 3], timeout=60_000)
    qtbot.waitUntil(lambda: not w.bridge.busy, timeout=30_000)
    with JobStore.open(library(studio_home)) as store:
        assert store.jobs() == [] and store.gallery.check().clean
    assert not w.bridge.paused and w.queue_setup.prompt_box is None
    assert {rec.request.seed for rec in w.history.runs.values()} == {1, 2, 3}  # each in the run history too


def test_review_pauses_the_queue_to_edit_a_waiting_job_first(queue_window, studio_home, qtbot, monkeypatch):
    seed_queue(library(studio_home), waiting=(5, 6), running=())
    w = queue_window()
    qtbot.waitUntil(lambda: w.queue_setup.prompt_box is not None, timeout=10_000)
    assert "2 jobs were waiting" in w.queue_setup.prompt_box.text()
    assert "running" not in w.queue_setup.prompt_box.text()
    w.queue_setup.buttons["review"].click()
    assert w.bridge.paused and len(w.bridge.pending) == 2 and w.queue_dock.isVisible()
    assert w.queue.pause.text() == "Resume" and "Paused" in w.queue.state.text()
    first = w.bridge.pending[0].job_id
    w.queue.list.setCurrentRow(0)
    assert w.queue.edit.isEnabled()

    from studio.qt.generate import queue_setup

    def edit(dialog):
        dialog.prompt.setPlainText("a green star, edited while it waited")
        dialog.seed.setText("50")
        dialog.accept()
        return queue_setup.QDialog.DialogCode.Accepted

    monkeypatch.setattr(queue_setup.JobEditDialog, "exec", edit)
    w.queue.edit.click()
    with JobStore.open(library(studio_home)) as store:
        edited = store.get(first).request
    assert (edited.prompt, edited.seed) == ("a green star, edited while it waited", 50)
    assert w.history.get(first).request.seed == 50
    w.queue.pause.click()  # Resume
    qtbot.waitUntil(lambda: gallery_seeds(studio_home) == [6, 50], timeout=60_000)


def test_clear_cancels_what_waited(queue_window, studio_home, qtbot):
    ids = seed_queue(library(studio_home))
    w = queue_window()
    qtbot.waitUntil(lambda: w.queue_setup.prompt_box is not None, timeout=10_000)
    w.queue_setup.buttons["clear"].click()
    assert not w.bridge.paused and not w.bridge.busy
    with JobStore.open(library(studio_home)) as store:
        assert {store.get(i).state for i in ids} == {"cancelled"} and store.jobs() == []


def test_the_window_keeps_its_queue_when_it_closes(queue_window, studio_home, qtbot, fake_engine):
    """Closing the window loses nothing: the running job is given back, the waiting ones stay."""
    w = queue_window(engine_factory=lambda: fake_engine(step_s=0.05))
    w.controller.queue_request(req(6).replace(steps=400))
    qtbot.waitUntil(lambda: w.bridge.current is not None and w.bridge.current.last_posted > 0, timeout=30_000)
    w.bridge.set_paused(True)
    for seed in (7, 8):
        w.controller.queue_request(req(seed))
    with JobStore.open(library(studio_home)) as store:  # in the database before anything more runs
        assert [(j.state, j.request.seed) for j in store.jobs()] == [("running", 6), ("waiting", 7), ("waiting", 8)]
    w.shutdown()
    with JobStore.open(library(studio_home)) as store:
        assert [(j.state, j.request.seed, j.attempts) for j in store.jobs()] == [
            ("waiting", 6, 0), ("waiting", 7, 0), ("waiting", 8, 0)
        ]  # fmt: skip
    again = queue_window()
    qtbot.waitUntil(lambda: again.queue_setup.prompt_box is not None, timeout=10_000)
    assert "3 jobs were waiting (1 was running)" in again.queue_setup.prompt_box.text()
    again.queue_setup.buttons["resume"].click()
    qtbot.waitUntil(lambda: gallery_seeds(studio_home) == [6, 7, 8], timeout=60_000)


def test_a_failed_job_stays_listed_and_retry_runs_it(queue_window, studio_home, qtbot):
    w = queue_window()

    def fail_once(request, **kw):
        if request.seed == 9 and not getattr(fail_once, "done", False):
            fail_once.done = True
            from studio.core.errors import InvalidRequest

            raise InvalidRequest("the fake engine refuses seed 9 once")
        return type(w.bridge.worker.engine).generate(w.bridge.worker.engine, request, **kw)

    w.bridge.worker.engine.generate = fail_once
    job_id = w.controller.queue_request(req(9))
    qtbot.waitUntil(lambda: w.queue.list.count() == 1 and "failed" in w.queue.list.item(0).text(), timeout=30_000)
    w.queue.list.setCurrentRow(0)
    assert w.queue.retry.isEnabled() and "refuses seed 9" in w.queue.list.item(0).text()
    w.queue.retry.click()
    qtbot.waitUntil(lambda: gallery_seeds(studio_home) == [9], timeout=30_000)
    with JobStore.open(library(studio_home)) as store:
        assert store.get(job_id).state == "done"


def test_another_runner_has_the_queue_and_the_window_waits_for_it(queue_window, studio_home, qtbot):
    lib = library(studio_home)
    lib.mkdir(parents=True, exist_ok=True)
    other = RunnerLock(lib, "studio queue run")
    other.acquire()
    try:
        w = queue_window()
        qtbot.waitUntil(lambda: "studio queue run" in w.queue.state.text(), timeout=10_000)
        w.controller.queue_request(req(12))
        qtbot.wait(300)
        assert w.bridge.current is None and len(w.bridge.pending) == 1  # it waits: the lock is not the window's
    finally:
        other.release()
    qtbot.waitUntil(lambda: gallery_seeds(studio_home) == [12], timeout=30_000)  # taken over once free
    assert "studio queue run" not in w.queue.state.text()


def test_an_uncaught_error_opens_the_crash_dialog_and_copies_a_report(queue_window, studio_home, qtbot):
    from studio.core import logs

    logs.setup()
    w = queue_window()
    w.prompt.prompt.setPlainText("a very private prompt")
    logging.getLogger("studio.test").warning("drawing 'a very private prompt'")  # now in the log's tail
    t = threading.Thread(target=lambda: 1 / 0, name="worker-x")
    t.start()
    t.join()
    qtbot.waitUntil(lambda: w.crash_reporter.dialog is not None and w.crash_reporter.dialog.isVisible(), timeout=5000)
    dlg = w.crash_reporter.dialog
    assert "ZeroDivisionError" in dlg.summary.text()
    text = dlg.copy_report()
    assert QApplication.clipboard().text() == text
    assert "ZeroDivisionError" in text and "python:" in text and "very private" not in text
    assert logs.HIDDEN in text
    dlg.include_prompts.setChecked(True)
    assert "a very private prompt" in dlg.report.toPlainText()
    dlg.close()


def test_help_opens_the_log_folder(queue_window, studio_home, monkeypatch):
    from studio.qt.common import crash_dialog

    opened = []
    monkeypatch.setattr(crash_dialog.QDesktopServices, "openUrl", lambda url: opened.append(url.toLocalFile()) or True)
    w = queue_window()
    w.log_folder_action.trigger()
    assert opened == [str(studio_home / "logs")]
