"""The engine bridge and the step history, without torch: queue, cancel, throttling, memory budget."""

from __future__ import annotations

import time

import numpy as np

from studio.core.request import GenerationRequest
from studio.core.results import StepPreview
from studio.qt.generate.engine_worker import EngineBridge, Job
from studio.session.step_history import StepHistory, resolve_step

TIMEOUT = 30_000


def req(**kw):
    kw.setdefault("steps", 5)
    return GenerationRequest.create(model="fake", prompt="x", width=64, height=64, **kw)


def preview(step, total=5, size=8, latent_kb=4):
    return StepPreview(
        step, total, 0.0, np.zeros((size, size, 3), np.uint8), np.zeros(latent_kb * 256, np.float32), "latent2rgb", 0.0
    )


def test_mailbox_notifies_once_until_drained():
    job = Job(req())
    assert job.post(preview(1)) is True
    assert job.post(preview(2)) is False  # already one notification waiting
    assert [p.step for p in job.take()] == [1, 2]
    assert job.post(preview(3)) is True


def test_many_fast_steps_arrive_all_in_order_but_coalesced(qtbot, fake_engine):
    engine = fake_engine()
    bridge = EngineBridge(lambda: engine, record=False)
    got: list[int] = []
    times: list[float] = []
    bridge.stepsReady.connect(lambda jid, steps: (got.extend(p.step for p in steps), times.append(time.perf_counter())))
    try:
        with qtbot.waitSignal(bridge.jobFinished, timeout=TIMEOUT) as blocker:
            bridge.submit(req(steps=400))
        assert blocker.args[1].status == "done"
        assert got == list(range(1, 401))  # every step kept, in order …
        assert bridge.deliveries < 400  # … in fewer GUI deliveries than steps …
        # … and never more often than the screen refreshes (the last one, at the end of the run, may come sooner)
        gaps = [(b - a) * 1000 for a, b in zip(times, times[1:-1])]
        assert all(g >= bridge.min_interval_ms * 0.9 for g in gaps), (bridge.min_interval_ms, min(gaps, default=None))
    finally:
        assert bridge.shutdown()


def test_queue_reorder_remove_cancel_one_cancel_all(qtbot, fake_engine):
    engine = fake_engine(step_s=0.02)
    bridge = EngineBridge(lambda: engine, record=False)
    try:
        qtbot.waitUntil(lambda: bridge.device is not None, timeout=TIMEOUT)
        a, b, c, d = (bridge.submit(req(steps=200, seed=i)) for i in range(4))
        assert bridge.current is a and [j.job_id for j in bridge.pending] == [b.job_id, c.job_id, d.job_id]
        bridge.move(d.job_id, -2)
        assert [j.job_id for j in bridge.pending] == [d.job_id, b.job_id, c.job_id]
        removed = []
        bridge.jobRemoved.connect(removed.append)
        bridge.remove(b.job_id)
        assert removed == [b.job_id] and b.state == "cancelled"
        finished = []
        bridge.jobFinished.connect(lambda jid, r, items: finished.append((jid, r.status)))
        qtbot.waitUntil(lambda: a.last_posted >= 1, timeout=TIMEOUT)
        with qtbot.waitSignal(bridge.jobFinished, timeout=TIMEOUT):
            bridge.cancel(a.job_id)  # the running one: stops, then d runs next
        assert finished[0] == (a.job_id, "cancelled")
        qtbot.waitUntil(lambda: bridge.current is d and d.last_posted >= 1, timeout=TIMEOUT)
        bridge.cancel_all()
        qtbot.waitUntil(lambda: not bridge.busy, timeout=TIMEOUT)
        assert [s for _, s in finished] == ["cancelled", "cancelled"]
        assert [r.seed for r in engine.runs] == [0, 3]  # b was removed, c cancelled before it started
    finally:
        assert bridge.shutdown()


def test_queue_panel_buttons(qtbot, fake_engine):
    from studio.qt.generate.queue_panel import QueuePanel

    engine = fake_engine(step_s=0.02)
    bridge = EngineBridge(lambda: engine, record=False)
    panel = QueuePanel(bridge)
    qtbot.addWidget(panel)
    try:
        qtbot.waitUntil(lambda: bridge.device is not None, timeout=TIMEOUT)
        jobs = [bridge.submit(req(steps=300, seed=i)) for i in range(3)]
        assert panel.list.count() == 3
        panel.list.setCurrentRow(2)
        assert panel.up.isEnabled() and not panel.down.isEnabled()
        panel.up.click()
        assert [j.job_id for j in bridge.pending] == [jobs[2].job_id, jobs[1].job_id]
        panel.cancel_all.click()
        qtbot.waitUntil(lambda: not bridge.busy, timeout=TIMEOUT)
        assert panel.list.count() == 0 and panel.empty.isVisibleTo(panel)
    finally:
        assert bridge.shutdown()


def test_history_budget_evicts_oldest_first_never_the_current_run():
    h = StepHistory(budget_mb=0.1)  # ~100 KB; each step below is ~4 KB latent + 192 B image
    h.add_run("old", req())
    h.add_run("mid", req())
    h.add_run("cur", req(steps=40))
    for s in range(1, 6):
        h.add_step("old", preview(s))
        h.add_step("mid", preview(s))
    h.current_id = "cur"
    for s in range(1, 41):
        h.add_step("cur", preview(s, total=40, latent_kb=4))
    assert h.used_bytes <= h.budget_bytes or h.get("old").steps == {} and h.get("mid").steps == {}
    assert h.get("cur").kept_steps() == list(range(1, 41))  # the running run is never trimmed
    assert h.get("old").steps == {} and h.get("old").evicted == 5  # oldest run went first
    assert h.get("mid").evicted >= 1


def test_branch_steps_resolve_to_parent_up_to_the_branch_point():
    h = StepHistory()
    h.add_run("p", req(steps=4))
    for s in range(1, 5):
        h.add_step("p", preview(s, total=4))
    child = req(steps=4).replace(branch={"parent_id": "p", "step": 2})
    h.add_run("c", child)
    for s in (3, 4):
        h.add_step("c", preview(s, total=4))
    assert resolve_step(h, "c", 1) is h.get("p").steps[1]
    assert resolve_step(h, "c", 3) is h.get("c").steps[3]
    assert h.get("c").first_step == 3 and h.children_of("p")[0].run_id == "c"


def test_token_counter_uses_the_clip_window(qtbot):
    from studio.engine.clip_vocab import build_clip_tokenizer
    from studio.qt.generate.prompt_panel import TOKEN_LIMIT, PromptPanel

    panel = PromptPanel()
    qtbot.addWidget(panel)
    panel.set_tokenizer(build_clip_tokenizer())
    panel.prompt.setPlainText("a red fox in the snow")
    panel.update_token_counts()
    assert panel.prompt_tokens.text() == f"6/{TOKEN_LIMIT}"
    assert panel.prompt_tokens.property("state") == "ok"
    panel.prompt.setPlainText("cat " * 83)  # past 75 tokens: a second chunk, as A1111 shows it
    panel.update_token_counts()
    assert panel.prompt_tokens.text() == "83/150" and panel.prompt_tokens.property("state") == "chunks"
    panel.prompt.setPlainText("a (red:1.3) fox BREAK in the [snow] <lora:ink:0.5>")  # syntax is not counted
    panel.update_token_counts()
    assert panel.prompt_tokens.text() == "78/150"  # BREAK fills the first chunk


def test_token_counter_counts_embedding_vectors(qtbot):
    from studio.core.prompts.chunks import TokenCounter
    from studio.engine.clip_vocab import build_clip_tokenizer
    from studio.qt.generate.prompt_panel import PromptPanel

    panel = PromptPanel()
    qtbot.addWidget(panel)
    panel.set_tokenizer(TokenCounter.from_tokenizer(build_clip_tokenizer(), {"easynegative": 8}))
    panel.negative.setPlainText("easynegative, blurry")
    panel.update_token_counts()
    assert panel.negative_tokens.text() == "10/75"  # 8 vectors, a comma, a word


def test_guidance_snaps_to_half_steps_and_size_to_multiples_of_8(qtbot):
    from studio.qt.generate.prompt_panel import PromptPanel

    panel = PromptPanel()
    qtbot.addWidget(panel)
    panel.guidance.setValue(7.3)
    assert panel.fields()["guidance_scale"] == 7.5
    panel.guidance.setValue(30)
    assert panel.fields()["guidance_scale"] == 30.0
    panel.set_size(516, 770)
    f = panel.fields()
    assert f["width"] % 8 == 0 and f["height"] % 8 == 0
    panel.size_preset.setCurrentIndex(4)
    panel.size_preset.activated.emit(4)
    assert (panel.fields()["width"], panel.fields()["height"]) == (512, 768)
    for w in (
        panel.prompt,
        panel.steps,
        panel.guidance,
        panel.seed,
        panel.dice,
        panel.seed_lock,
        panel.width_,
        panel.scheduler,
        panel.batch,
        panel.rescale,
        panel.preview,
        panel.model,
        panel.generate_button,
    ):
        assert w.toolTip(), f"{w} has no tooltip"


def test_the_thread_guard_sees_a_running_qthread(_no_thread_left_running, thread_guard):
    from PySide6.QtCore import QThread

    t = QThread()
    t.setObjectName("left-running")
    t.start()
    assert t in _no_thread_left_running  # started threads are tracked …
    assert thread_guard(_no_thread_left_running) == ["left-running"]  # … and one left running is named
    t.quit()
    assert t.wait(5000)
    assert thread_guard(_no_thread_left_running) == []
