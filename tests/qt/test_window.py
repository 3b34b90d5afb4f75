"""The real window on the tiny SD1.5 pipeline: generate, previews, scrub, cancel, errors, branch, restart."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from studio.qt.images import from_qimage, to_qimage

RUN_TIMEOUT_MS = 90_000


def run_and_wait(qtbot, window, trigger=None):
    """Trigger a generation and wait for its end; returns (run_id, status, steps seen in order)."""
    seen: list[tuple[str, int]] = []
    window.controller.stepReceived.connect(lambda rid, step: seen.append((rid, step)))
    with qtbot.waitSignal(window.controller.runFinished, timeout=RUN_TIMEOUT_MS) as blocker:
        ids = trigger() if trigger else window.controller.generate()
    run_id, status = blocker.args
    assert not ids or run_id in (ids if isinstance(ids, list) else [ids])
    return run_id, status, [s for rid, s in seen if rid == run_id]


def same_pixels(qimage, array) -> bool:
    return qimage is not None and np.array_equal(from_qimage(qimage), from_qimage(to_qimage(array)))


def test_type_prompt_generate_previews_in_order(qtbot, make_window, fill_request, tiny_sd15):
    w = make_window()
    fill_request(w, tiny_sd15, prompt="", steps=4)
    w.prompt.prompt.setFocus()
    qtbot.keyClicks(w.prompt.prompt, "a lighthouse at dusk")
    assert w.prompt.fields()["prompt"] == "a lighthouse at dusk"

    def press_ctrl_enter():
        w.activateWindow()
        qtbot.keyClick(w.prompt.prompt, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
        return None

    if not w.generate_action.shortcuts():
        pytest.fail("Generate has no shortcut")
    run_id, status, steps = run_and_wait(qtbot, w, lambda: (w.generate_action.trigger(), None)[1])
    assert status == "done"
    assert steps == [1, 2, 3, 4]  # one preview per step, in order
    rec = w.history.get(run_id)
    assert rec.request.prompt == "a lighthouse at dusk"
    assert rec.kept_steps() == [1, 2, 3, 4]
    assert all(rec.steps[s].image is not None and rec.steps[s].latent is not None for s in steps)
    assert rec.images and rec.images[0].shape == (64, 64, 3)
    assert same_pixels(w.canvas.image(), rec.images[0])  # the finished image lands on the canvas
    assert "4/4" in w.progress.bar.format() or "Done" in w.progress.bar.format()
    assert "float32" in w.progress.device.text()
    assert "Ctrl+Enter" in w.prompt.prompt.toolTip()
    # the prompt text box does not swallow Ctrl+Enter: it reaches the window's Generate shortcut
    assert not w.prompt.prompt.toPlainText().endswith("\n")
    assert press_ctrl_enter is not None


def test_ctrl_enter_generates_and_esc_cancels(qtbot, make_window, fill_request, tiny_sd15):
    w = make_window()
    fill_request(w, tiny_sd15, steps=30)
    w.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is w, timeout=5000)
    started = []
    w.controller.runStarted.connect(started.append)
    with qtbot.waitSignal(w.controller.stepReceived, timeout=RUN_TIMEOUT_MS):
        qtbot.keyClick(w.prompt.prompt, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)
    assert len(started) == 1
    assert w.prompt.prompt.toPlainText() == "a red circle on a blue background"  # no newline typed
    with qtbot.waitSignal(w.controller.runFinished, timeout=RUN_TIMEOUT_MS) as blocker:
        qtbot.keyClick(w.prompt.prompt, Qt.Key.Key_Escape)
    assert blocker.args[1] == "cancelled"


def test_scrub_shows_that_steps_preview(qtbot, make_window, fill_request, tiny_sd15):
    w = make_window()
    fill_request(w, tiny_sd15, steps=4)
    run_id, status, _ = run_and_wait(qtbot, w)
    assert status == "done"
    rec = w.history.get(run_id)
    for k in (2, 3, 1):
        assert w.strip.select_step(k)
        assert w.strip.selected_step() == k
        assert same_pixels(w.canvas.image(), rec.steps[k].image), f"canvas does not show step {k}"
        assert f"step {k}/4" in w.canvas.caption
        assert w.strip.step_label.text() == f"Step {k} / 4"
    w.strip.slider.setValue(3)  # the slider scrubs too
    assert same_pixels(w.canvas.image(), rec.steps[3].image)
    assert not np.array_equal(rec.steps[1].image, rec.steps[3].image)
    w.strip.slider.setValue(4)  # the last step of a finished run is its final image
    assert same_pixels(w.canvas.image(), rec.images[0])


def test_scrub_during_run_stays_on_chosen_step(qtbot, make_window, fill_request, tiny_sd15):
    w = make_window()
    fill_request(w, tiny_sd15, steps=4)
    with qtbot.waitSignal(w.controller.stepReceived, timeout=RUN_TIMEOUT_MS, check_params_cb=lambda rid, s: s >= 2):
        ids = w.controller.generate()
    assert w.strip.select_step(1)
    with qtbot.waitSignal(w.controller.runFinished, timeout=RUN_TIMEOUT_MS):
        pass
    rec = w.history.get(ids[0])
    assert rec.kept_steps() == [1, 2, 3, 4]
    assert w.strip.selected_step() == 1  # new steps did not pull the view away from the user's choice
    assert same_pixels(w.canvas.image(), rec.steps[1].image)


def test_cancel_stops_within_one_step_and_next_run_works(qtbot, make_window, fill_request, tiny_sd15):
    w = make_window()
    fill_request(w, tiny_sd15, steps=25)
    with qtbot.waitSignal(w.controller.stepReceived, timeout=RUN_TIMEOUT_MS, check_params_cb=lambda rid, s: s >= 2):
        ids = w.controller.generate()
    job = w.bridge.current
    assert job is not None and job.job_id == ids[0]
    finished = []
    w.bridge.jobFinished.connect(lambda jid, result, items: finished.append(result))
    with qtbot.waitSignal(w.controller.runFinished, timeout=RUN_TIMEOUT_MS) as blocker:
        w.cancel_action.trigger()
    assert blocker.args == [ids[0], "cancelled"]
    result = finished[0]
    asked_at = result.extra["cancel_requested_at_step"]
    assert result.steps_done - asked_at <= 1, (asked_at, result.steps_done)
    assert result.steps_done < 25
    rec = w.history.get(ids[0])
    assert rec.status == "cancelled" and max(rec.kept_steps()) == result.steps_done
    assert w.messages.isVisible() and w.messages.kind == "info"

    fill_request(w, tiny_sd15, steps=3)
    run_id, status, steps = run_and_wait(qtbot, w)
    assert status == "done" and steps == [1, 2, 3]


def test_engine_error_is_shown_non_modal_and_window_stays_usable(qtbot, make_window, fill_request, tiny_sd15, tmp_path):
    w = make_window()
    fill_request(w, tmp_path / "no-such-model", steps=3)
    run_id, status, steps = run_and_wait(qtbot, w)
    assert status == "failed" and steps == []
    assert w.messages.isVisible() and w.messages.kind == "error"
    assert w.messages.message  # says what happened …
    assert w.messages.action.isVisible()  # … and offers what to do
    assert QApplication.activeModalWidget() is None
    assert w.history.get(run_id).status == "failed"

    fill_request(w, tiny_sd15, steps=3)
    run_id, status, steps = run_and_wait(qtbot, w)
    assert status == "done" and steps == [1, 2, 3]
    assert not w.messages.isVisible() or w.messages.kind != "error"


def test_invalid_settings_are_reported_without_queueing(qtbot, make_window, fill_request, tiny_sd15):
    w = make_window()
    fill_request(w, tiny_sd15)
    w.prompt.width_.setValue(100)  # not a multiple of 8: rounded to 96 when read
    assert w.prompt.fields()["width"] == 96
    w.prompt.steps.setValue(3)
    w.prompt.seed_lock.setChecked(False)
    before = w.prompt.seed.value()
    w.prompt.batch.setValue(2)
    ids = w.controller.generate()
    assert len(ids) == 2 and len(w.bridge.jobs()) == 2
    reqs = [w.history.get(i).request for i in ids]
    assert reqs[1].seed == (reqs[0].seed + 1) % 2**32
    assert reqs[0].seed == w.prompt.seed.value() and (w.prompt.seed.value() != before or before == reqs[0].seed)
    w.bridge.cancel_all()
    qtbot.waitUntil(lambda: not w.bridge.busy, timeout=RUN_TIMEOUT_MS)


def test_branch_from_step_k_runs_remaining_steps_and_records_parent(qtbot, make_window, fill_request, tiny_sd15):
    w = make_window()
    fill_request(w, tiny_sd15, steps=4, seed=3)
    parent_id, status, _ = run_and_wait(qtbot, w)
    assert status == "done"
    parent = w.history.get(parent_id)
    assert w.strip.select_step(2)
    assert w.strip.branch.isEnabled()
    w.prompt.prompt.setPlainText("a green square on a yellow background")
    w.prompt.guidance.setValue(4.5)
    w.prompt.seed.setValue(99)

    child_id, status, steps = run_and_wait(qtbot, w, lambda: qtbot.mouseClick(w.strip.branch, Qt.MouseButton.LeftButton))
    assert status == "done"
    assert steps == [3, 4]  # N - k = 2 steps, numbered on from the branch point
    child = w.history.get(child_id)
    assert child.parent_id == parent_id and child.branch_step == 2
    assert child.request.branch.parent_id == parent_id and child.request.branch.step == 2
    assert child.request.prompt == "a green square on a yellow background"
    assert child.request.guidance_scale == 4.5 and child.request.seed == 99
    assert child.kept_steps() == [3, 4]
    assert not np.array_equal(child.images[0], parent.images[0])
    # the strip shows the parent's first k steps (inherited) then the branch's own
    assert w.strip.run_id == child_id and w.strip.kept_steps() == [1, 2, 3, 4]
    assert w.strip.select_step(1)
    assert same_pixels(w.canvas.image(), parent.steps[1].image)
    assert "branch @ 2" in w.strip.runs.currentText()


def test_branch_needs_a_finished_run(qtbot, make_window, fill_request, tiny_sd15):
    w = make_window()
    fill_request(w, tiny_sd15, steps=20)
    with qtbot.waitSignal(w.controller.stepReceived, timeout=RUN_TIMEOUT_MS, check_params_cb=lambda rid, s: s >= 1):
        w.controller.generate()
    w.strip.select_step(1)
    assert not w.strip.branch.isEnabled()  # a running run cannot be branched from yet
    with qtbot.waitSignal(w.controller.runFinished, timeout=RUN_TIMEOUT_MS):
        w.controller.cancel_current()
    w.strip.select_step(1)
    assert w.strip.branch.isEnabled()  # a cancelled one can


def test_settings_survive_a_restart(qtbot, make_window, fill_request, tiny_sd15):
    w = make_window()
    fill_request(w, tiny_sd15, prompt="a quiet harbour, morning fog", steps=13, size=64, seed=1234)
    w.prompt.negative.setPlainText("text, watermark")
    w.prompt.guidance.setValue(9.5)
    w.prompt.scheduler.setCurrentText("DDIM")
    w._model_chosen(str(tiny_sd15))
    w.queue_dock.hide()
    w.resize(w.minimumSizeHint().width() + 40, 700)
    qtbot.wait(10)
    before = w.size()
    w.close()
    assert not w.bridge.engine_thread.isRunning()

    w2 = make_window()
    f = w2.prompt.fields()
    assert f["prompt"] == "a quiet harbour, morning fog"
    assert f["negative_prompt"] == "text, watermark"
    assert f["steps"] == 13 and f["seed"] == 1234 and f["guidance_scale"] == 9.5
    assert f["scheduler"] == "DDIM" and f["width"] == 64 and f["model"] == str(tiny_sd15)
    assert w2.prompt.seed_lock.isChecked()
    assert str(tiny_sd15) in [w2.prompt.model.itemText(i) for i in range(w2.prompt.model.count())]
    # the offscreen screen is 800 px wide, narrower than the window's minimum: only the height round-trips exactly
    assert abs(w2.size().height() - before.height()) <= 30
    assert w2.queue_dock.isHidden()
    assert w2.settings.path.parent == w2.settings.path.parent.parent / "config"


def test_demo_model_missing_is_said_without_a_dialog(qtbot, make_window, fill_request, monkeypatch, tmp_path):
    import studio.qt.main_window as mw

    monkeypatch.setattr(mw, "demo_model_dir", lambda: tmp_path / "no-demo")
    w = make_window()
    assert w.prompt.model_name() == "demo"
    assert w.messages.isVisible() and "demo model" in w.messages.message
    assert w.messages.action.text().startswith("Choose model")
    assert QApplication.activeModalWidget() is None
