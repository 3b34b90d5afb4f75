"""The real window on the tiny SD1.5 pipeline: generate, previews, scrub, cancel, errors, branch, restart.

Runs are kept short (2–4 steps at 64×64) so the whole file stays fast on a 2-core CPU.
"""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from studio.qt.common.images import from_qimage, to_qimage

RUN_TIMEOUT_MS = 90_000


def run_and_wait(qtbot, window, trigger=None):
    """Trigger a generation and wait for its end; returns (run_id, status, steps seen for it, in order)."""
    seen: list[tuple[str, int]] = []
    window.controller.stepReceived.connect(lambda rid, step: seen.append((rid, step)))
    with qtbot.waitSignal(window.controller.runFinished, timeout=RUN_TIMEOUT_MS) as blocker:
        trigger() if trigger else window.controller.generate()
    run_id, status = blocker.args
    return run_id, status, [s for rid, s in seen if rid == run_id]


def same_pixels(qimage, array) -> bool:
    return qimage is not None and np.array_equal(from_qimage(qimage), from_qimage(to_qimage(array)))


def press_ctrl_enter(qtbot, window):
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window, timeout=5000)
    qtbot.keyClick(window.prompt.prompt, Qt.Key.Key_Return, Qt.KeyboardModifier.ControlModifier)


def test_type_prompt_generate_previews_in_order_then_scrub(qtbot, make_window, fill_request, tiny_sd15):
    w = make_window()
    fill_request(w, tiny_sd15, prompt="", steps=4)
    w.prompt.prompt.setFocus()
    qtbot.keyClicks(w.prompt.prompt, "a lighthouse at dusk")

    run_id, status, steps = run_and_wait(qtbot, w, lambda: press_ctrl_enter(qtbot, w))
    assert status == "done"
    assert steps == [1, 2, 3, 4]  # one preview per step, in order
    assert w.prompt.prompt.toPlainText() == "a lighthouse at dusk"  # Ctrl+Enter generated, typed no newline
    rec = w.history.get(run_id)
    assert rec.request.prompt == "a lighthouse at dusk"
    assert rec.kept_steps() == [1, 2, 3, 4]
    assert all(rec.steps[s].image is not None and rec.steps[s].latent is not None for s in steps)
    assert rec.images and rec.images[0].shape == (64, 64, 3)
    assert same_pixels(w.canvas.image(), rec.images[0])  # the finished image lands on the canvas
    assert w.progress.bar.format().startswith("Done")
    assert "float32" in w.progress.device.text() and w.progress.memory.text()

    # scrubbing: the strip, the slider and the canvas agree on step k
    for k in (2, 3, 1):
        assert w.strip.select_step(k)
        assert w.strip.selected_step() == k
        assert same_pixels(w.canvas.image(), rec.steps[k].image), f"canvas does not show step {k}"
        assert f"step {k}/4" in w.canvas.caption
        assert w.strip.step_label.text() == f"Step {k} / 4"
    w.strip.slider.setValue(3)
    assert w.strip.selected_step() == 3 and same_pixels(w.canvas.image(), rec.steps[3].image)
    assert not np.array_equal(rec.steps[1].image, rec.steps[3].image)
    w.strip.slider.setValue(4)  # the last step of a finished run shows its final image
    assert same_pixels(w.canvas.image(), rec.images[0])


def test_scrub_during_run_then_branch_from_step_k(qtbot, make_window, fill_request, tiny_sd15):
    w = make_window()
    fill_request(w, tiny_sd15, steps=4, seed=3)
    with qtbot.waitSignal(w.controller.stepReceived, timeout=RUN_TIMEOUT_MS, check_params_cb=lambda rid, s: s >= 2):
        (parent_id,) = w.controller.generate()
    assert w.strip.select_step(1)  # scrub back while it runs
    assert not w.strip.branch.isEnabled()  # a running run cannot be branched from yet
    with qtbot.waitSignal(w.controller.runFinished, timeout=RUN_TIMEOUT_MS):
        pass
    parent = w.history.get(parent_id)
    assert parent.status == "done" and parent.kept_steps() == [1, 2, 3, 4]
    assert w.strip.selected_step() == 1  # new steps did not pull the view away from the user's choice
    assert same_pixels(w.canvas.image(), parent.steps[1].image)

    assert w.strip.select_step(2)
    assert w.strip.branch.isEnabled()
    w.prompt.prompt.setPlainText("a green square on a yellow background")
    w.prompt.guidance.setValue(4.5)
    w.prompt.seed.setValue(99)
    child_id, status, steps = run_and_wait(
        qtbot, w, lambda: qtbot.mouseClick(w.strip.branch, Qt.MouseButton.LeftButton)
    )
    assert status == "done"
    assert steps == [3, 4]  # N − k = 2 steps, numbered on from the branch point
    child = w.history.get(child_id)
    assert child.parent_id == parent_id and child.branch_step == 2
    assert child.request.branch.parent_id == parent_id and child.request.branch.step == 2
    assert child.request.prompt == "a green square on a yellow background"
    assert child.request.guidance_scale == 4.5 and child.request.seed == 99
    assert child.kept_steps() == [3, 4]
    assert not np.array_equal(child.images[0], parent.images[0])
    # the strip shows the parent's first k steps (inherited), then the branch's own
    assert w.strip.run_id == child_id and w.strip.kept_steps() == [1, 2, 3, 4]
    assert w.strip.select_step(1)
    assert same_pixels(w.canvas.image(), parent.steps[1].image)
    assert "branch @ 2" in w.strip.runs.currentText()


def test_cancel_stops_within_one_step_and_next_run_works(qtbot, make_window, fill_request, tiny_sd15):
    w = make_window()
    fill_request(w, tiny_sd15, steps=25)
    with qtbot.waitSignal(w.controller.stepReceived, timeout=RUN_TIMEOUT_MS, check_params_cb=lambda rid, s: s >= 2):
        (run_id,) = w.controller.generate()
    finished = []
    w.bridge.jobFinished.connect(lambda jid, result, items: finished.append(result))
    w.activateWindow()
    with qtbot.waitSignal(w.controller.runFinished, timeout=RUN_TIMEOUT_MS) as blocker:
        qtbot.keyClick(w.prompt.prompt, Qt.Key.Key_Escape)  # Esc cancels
    assert blocker.args == [run_id, "cancelled"]
    result = finished[0]
    asked_at = result.extra["cancel_requested_at_step"]
    assert result.steps_done - asked_at <= 1, (asked_at, result.steps_done)
    assert result.steps_done < 25
    rec = w.history.get(run_id)
    assert rec.status == "cancelled" and max(rec.kept_steps()) == result.steps_done
    assert w.messages.isVisible() and w.messages.kind == "info"
    w.strip.select_step(1)
    assert w.strip.branch.isEnabled()  # a cancelled run's steps can be branched from

    fill_request(w, tiny_sd15, steps=2)
    run_id2, status, steps = run_and_wait(qtbot, w)
    assert status == "done" and steps == [1, 2]


def test_engine_error_is_shown_non_modal_and_window_stays_usable(qtbot, make_window, fill_request, tiny_sd15, tmp_path):
    w = make_window()
    fill_request(w, tmp_path / "no-such-model", steps=3)
    run_id, status, steps = run_and_wait(qtbot, w)
    assert status == "failed" and steps == []
    assert w.messages.isVisible() and w.messages.kind == "error"
    assert "no-such-model" in w.messages.message or "not found" in w.messages.message.lower()
    assert w.messages.action.isVisible()  # offers what to do
    assert QApplication.activeModalWidget() is None
    assert w.history.get(run_id).status == "failed"
    assert w.prompt.generate_button.isEnabled()

    fill_request(w, tiny_sd15, steps=2)
    run_id, status, steps = run_and_wait(qtbot, w)
    assert status == "done" and steps == [1, 2]
    assert not w.messages.isVisible()


def test_batch_count_and_seed_roll(qtbot, make_window, fill_request, fake_engine):
    w = make_window(engine_factory=lambda: fake_engine(step_s=0.01))
    fill_request(w, "fake", steps=3)
    w.prompt.seed_lock.setChecked(False)
    w.prompt.batch.setValue(3)
    with qtbot.waitSignal(w.controller.runFinished, timeout=RUN_TIMEOUT_MS):
        ids = w.controller.generate()
    assert len(ids) == 3
    seeds = [w.history.get(i).request.seed for i in ids]
    assert seeds[1] == (seeds[0] + 1) % 2**32 and seeds[2] == (seeds[0] + 2) % 2**32
    assert seeds[0] == w.prompt.seed.value()
    qtbot.waitUntil(lambda: not w.bridge.busy, timeout=RUN_TIMEOUT_MS)
    assert [w.history.get(i).status for i in ids] == ["done"] * 3
    w.prompt.width_.setValue(100)
    assert w.prompt.fields()["width"] == 96  # sizes are kept to multiples of 8


def test_settings_survive_a_restart(qtbot, make_window, fill_request, tiny_sd15):
    w = make_window()
    w._model_chosen(str(tiny_sd15))  # puts the model's recommended settings in; the user changes them after
    fill_request(w, tiny_sd15, prompt="a quiet harbour, morning fog", steps=13, size=64, seed=1234)
    w.prompt.negative.setPlainText("text, watermark")
    w.prompt.guidance.setValue(9.5)
    w.prompt.guidance_end.setValue(0.6)
    w.prompt.scheduler.setCurrentText("DDIM")
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
    assert f["steps"] == 13 and f["seed"] == 1234 and f["guidance_scale"] == 9.5 and f["guidance_end"] == 0.6
    assert f["scheduler"] == "DDIM" and f["width"] == 64 and f["model"] == str(tiny_sd15)
    assert w2.prompt.seed_lock.isChecked()
    assert str(tiny_sd15) in [w2.prompt.model.itemData(i) for i in range(w2.prompt.model.count())]
    # the offscreen screen is 800 px wide, narrower than the window's minimum: only the height round-trips exactly
    assert abs(w2.size().height() - before.height()) <= 30
    assert w2.queue_dock.isHidden()
    assert w2.settings.path.is_file() and w2.settings.path.parent.name == "config"


def test_demo_model_missing_is_said_without_a_dialog(qtbot, make_window, monkeypatch, tmp_path):
    import studio.qt.app.main_window as mw

    monkeypatch.setattr(mw, "demo_model_dir", lambda: tmp_path / "no-demo")
    w = make_window()
    assert w.prompt.model_name() == "demo"
    assert w.messages.isVisible() and "demo model" in w.messages.message
    assert w.messages.action.text().startswith("Choose model")
    assert QApplication.activeModalWidget() is None
    assert w.isVisible() and w.prompt.generate_button.isEnabled()


def test_studio_run_opens_the_window_and_quits_cleanly_on_ctrl_c(tmp_path):
    """`studio run` in its own process (run_app owns the event loop there): opens, then Ctrl+C saves and exits 0."""
    import os
    import signal
    import subprocess
    import sys
    import threading
    import time

    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", STUDIO_HOME=str(tmp_path / "home"))
    proc = subprocess.Popen([sys.executable, "-m", "studio", "run"], env=env, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    opened = threading.Event()

    log = tmp_path / "home" / "logs" / "studio.log"  # the window logs to the user log folder

    def read():
        for line in proc.stderr:
            lines.append(line)

    def watch():
        while proc.poll() is None and not opened.is_set():
            if log.is_file() and "window open" in log.read_text(errors="replace"):
                opened.set()
            time.sleep(0.1)

    threading.Thread(target=read, daemon=True).start()
    threading.Thread(target=watch, daemon=True).start()
    try:
        assert opened.wait(90), "".join(lines)[-3000:]
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 0, "".join(lines)[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert (tmp_path / "home" / "config" / "window.ini").is_file()  # settings saved on the way out
    assert not any("Traceback" in line for line in lines), "".join(lines)[-3000:]


def test_choosing_a_bad_model_says_so_at_once(qtbot, make_window, tmp_path):
    w = make_window()
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"this is not a checkpoint")
    qtbot.waitUntil(lambda: w.bridge.device is not None, timeout=RUN_TIMEOUT_MS)
    with qtbot.waitSignal(w.bridge.modelFailed, timeout=RUN_TIMEOUT_MS):
        w._model_chosen(str(bad))
    assert w.messages.isVisible() and w.messages.kind == "error" and w.messages.message
    assert QApplication.activeModalWidget() is None
    assert not w.bridge.busy


def test_closing_during_a_run_stops_the_engine_thread(qtbot, make_window, fill_request, fake_engine):
    w = make_window(engine_factory=lambda: fake_engine(step_s=0.05))
    fill_request(w, "fake", steps=400)
    with qtbot.waitSignal(w.controller.stepReceived, timeout=RUN_TIMEOUT_MS):
        w.controller.generate()
    w.controller.generate()  # and one waiting
    w.close()
    assert not w.bridge.engine_thread.isRunning()
    assert not w.bridge.pending


def test_gallery_recreate_loads_the_recipe(qtbot, make_window):
    from studio.core.request import GenerationRequest

    w = make_window(with_gallery=True)
    if w.gallery is None:
        import pytest

        pytest.skip("no gallery panel in this checkout")
    assert w.gallery_dock is not None and not w.gallery_dock.isHidden()
    req = GenerationRequest.create(
        prompt="a red kite over dunes", seed=42, steps=9, scheduler="DDIM", width=768, height=512, guidance_end=0.35
    )
    w.gallery.recreateRequested.emit(req)
    f = w.prompt.fields()
    assert (f["prompt"], f["seed"], f["steps"], f["scheduler"], f["width"], f["height"], f["guidance_end"]) == (
        "a red kite over dunes",
        42,
        9,
        "DDIM",
        768,
        512,
        0.35,
    )
    assert w.prompt.seed_lock.isChecked()
    w.gallery.useAsInputRequested.emit("/tmp/no-such-dir/some.png")  # a missing file: said, nothing changes
    assert w.messages.isVisible() and w.messages.kind == "warning"
    assert not w.edit.has_image()
    assert QApplication.activeModalWidget() is None


def test_gallery_recreate_keeps_the_recorded_vae_and_says_when_it_is_missing(qtbot, make_window, fake_engine, tmp_path):
    from studio.core.request import GenerationRequest

    engine = fake_engine()
    w = make_window(engine_factory=lambda: engine, with_gallery=True)
    if w.gallery is None:
        import pytest

        pytest.skip("no gallery panel in this checkout")
    default_vae, recorded_vae = tmp_path / "default-vae.safetensors", tmp_path / "recorded-vae.safetensors"
    default_vae.write_bytes(b"x")
    recorded_vae.write_bytes(b"x")
    w.model_setup.arch_of = lambda _model: "sd1"  # no real model needed: a default VAE is set for "sd1"
    w.model_setup.settings.set_default("vae", "sd1", default_vae)
    model = str(tmp_path / "some-model")

    def recreate(vae: str) -> None:
        req = GenerationRequest.create(model=model, prompt="a red kite", seed=3, steps=2, width=64, height=64, vae=vae)
        w.gallery.recreateRequested.emit(req)

    recreate(str(recorded_vae))
    assert w.prompt.build_requests()[0].vae == str(recorded_vae)
    assert w.prompt.vae_note.isVisible() and recorded_vae.name in w.prompt.vae_note.text()
    assert not w.messages.isVisible()
    with qtbot.waitSignal(w.controller.runFinished, timeout=RUN_TIMEOUT_MS):
        w.prompt.generate_button.click()  # what Generate sends carries the recipe's VAE
    assert engine.runs[-1].vae == str(recorded_vae)
    qtbot.waitUntil(lambda: not w.bridge.busy, timeout=RUN_TIMEOUT_MS)

    recreate("")  # made with the model's own VAE: the default VAE must not replace it
    assert w.prompt.build_requests()[0].vae == ""
    assert w.prompt.vae_note.isVisible()

    w._model_chosen(str(tmp_path / "another-model"))  # the recipe's VAE goes with its model
    assert w.prompt.build_requests()[0].vae == str(default_vae)
    assert not w.prompt.vae_note.isVisible()

    missing = str(tmp_path / "gone" / "lost-vae.safetensors")
    recreate(missing)  # not on this computer: said, and never silently swapped for the default
    assert w.messages.isVisible() and w.messages.kind == "warning" and "lost-vae.safetensors" in w.messages.message
    assert w.prompt.build_requests()[0].vae == missing
    w.prompt.vae_default.click()  # the user chooses the default instead
    assert w.prompt.build_requests()[0].vae == str(default_vae)
    assert not w.messages.isVisible() and not w.prompt.vae_note.isVisible()


def test_model_box_shows_a_short_name_and_keeps_the_path(qtbot, make_window, fake_engine, tmp_path, monkeypatch):
    demo = tmp_path / "resources" / "demo-model"
    demo.mkdir(parents=True)
    monkeypatch.setenv("STUDIO_DEMO_MODEL", str(demo))
    w = make_window(engine_factory=fake_engine)
    p = w.prompt
    assert p.model.currentText() == "Demo model (bundled)" and p.model_name() == "demo"
    assert str(demo) in p.model.toolTip()

    p.set_model(str(demo))  # the bundled model by its folder: the same human name, not "urces/demo-model"
    assert p.model.currentText() == "Demo model (bundled)" and p.model_name() == str(demo)
    assert p.model.lineEdit().cursorPosition() == 0  # a name too long for the box shows its start
    p.model.setCurrentIndex(p.model.findText("Demo model (bundled)"))
    assert p.model.lineEdit().cursorPosition() == 0
    ckpt = tmp_path / "checkpoints" / "dreamy-v2.1.safetensors"
    p.set_model(str(ckpt))
    assert p.model.currentText() == "dreamy-v2.1" and p.model_name() == str(ckpt)
    assert str(ckpt) in p.model.toolTip()
    folder = tmp_path / "models" / "sd-1.5-inpainting"
    w._model_chosen(str(folder))  # a folder keeps its whole name (its dots are no suffix)
    assert p.model.currentText() == "sd-1.5-inpainting" and p.model_name() == str(folder)
    assert p.build_requests()[0].model == str(folder)  # the request carries the path, not the name
    other = tmp_path / "elsewhere" / "dreamy-v2.1.safetensors"
    p.set_model(str(other))  # the same name twice: where each one is tells them apart
    assert p.model.currentText() == "dreamy-v2.1 (elsewhere)" and p.model_name() == str(other)
    p.set_recent_models([str(folder), str(ckpt)])
    assert p.model_name() == str(other)
    labels = [p.model.itemText(i) for i in range(p.model.count())]
    assert "Demo model (bundled)" in labels and "sd-1.5-inpainting" in labels and "dreamy-v2.1" in labels
    p.model.setEditText(str(tmp_path / "typed"))  # a path typed into the box is used as typed
    assert p.model_name() == str(tmp_path / "typed")


def test_branch_keeps_the_parent_recipe_and_changes_only_the_branch_fields(qtbot, make_window, fake_engine, tmp_path):
    from studio.core.request import BranchRef, ControlNetRef, GenerationRequest, ImageRef, LoraRef
    from studio.qt.generate.controller import BRANCH_FIELDS

    engine = fake_engine()
    w = make_window(engine_factory=lambda: engine)
    default_vae, parent_vae = tmp_path / "default-vae.safetensors", tmp_path / "parent-vae.safetensors"
    for f in (default_vae, parent_vae):
        f.write_bytes(b"x")
    w.model_setup.arch_of = lambda _model: "sd1"  # a default VAE is set for "sd1": Generate would add it
    w.model_setup.settings.set_default("vae", "sd1", default_vae)
    parent = GenerationRequest.create(
        model=str(tmp_path / "some-model"),
        prompt="a red kite",
        negative_prompt="blurry",
        seed=3,
        steps=4,
        width=64,
        height=64,
        scheduler="Euler",
        clip_skip=2,
        vae=str(parent_vae),
        loras=(LoraRef(name="ink", path=str(tmp_path / "ink.safetensors"), weight=0.7),),
        controlnets=(
            ControlNetRef(
                model=str(tmp_path / "cn"), image=ImageRef(path=str(tmp_path / "edges.png")), weight=0.5, end=0.8
            ),
        ),
        plugins={"controlnet": {"guess_mode": True}},
    )
    with qtbot.waitSignal(w.controller.runFinished, timeout=RUN_TIMEOUT_MS) as blocker:
        parent_id = w.controller._submit(parent)
    assert blocker.args == [parent_id, "done"]

    # the panels now say something else: another model's settings, no LoRA, no ControlNet, the default VAE
    w.prompt.set_request(
        GenerationRequest.create(
            model="demo",
            prompt="a blue kite",
            negative_prompt="",
            seed=99,
            steps=9,
            width=128,
            height=96,
            guidance_scale=4.5,
            scheduler="DDIM",
        )
    )
    w.prompt.seed_lock.setChecked(True)
    if w.plugin_docks.lora_panel is not None:
        w.plugin_docks.lora_panel.set_loras(())
    if w.plugin_docks.cn_panel is not None:
        w.plugin_docks.cn_panel.set_units((), guess_mode=False)
    assert w.prompt.build_requests()[0].vae == str(default_vae)

    w.strip.show_run(parent_id, follow=False)
    assert w.strip.select_step(2) and w.strip.branch.isEnabled()
    with qtbot.waitSignal(w.controller.runFinished, timeout=RUN_TIMEOUT_MS) as blocker:
        qtbot.mouseClick(w.strip.branch, Qt.MouseButton.LeftButton)
    child_id, status = blocker.args
    assert status == "done" and child_id != parent_id
    child = engine.runs[-1]
    panel = w.prompt.fields()
    # the whole parent recipe (VAE, clip skip, LoRA, ControlNet, plugin parameters, model, size, steps) …
    assert child == parent.replace(
        **{k: panel[k] for k in BRANCH_FIELDS}, branch=BranchRef(parent_id=parent_id, step=2)
    )
    assert child.vae == str(parent_vae) and child.loras == parent.loras and child.controlnets == parent.controlnets
    assert child.plugins == parent.plugins and child.clip_skip == 2
    assert (child.model, child.width, child.height, child.steps) == (parent.model, 64, 64, 4)
    # … and only what branching changes, from the Prompt panel
    assert (child.prompt, child.seed, child.guidance_scale, child.scheduler) == ("a blue kite", 99, 4.5, "DDIM")
    assert child.negative_prompt == ""


def test_missing_recorded_vae_that_is_also_the_default_offers_what_the_window_shows(
    qtbot, make_window, fake_engine, tmp_path
):
    from studio.core import settings as core_settings
    from studio.core.request import GenerationRequest

    w = make_window(engine_factory=fake_engine)
    missing = str(tmp_path / "gone" / "shared-vae.safetensors")
    w.model_setup.arch_of = lambda _model: "sd1"
    s = core_settings.load()
    s.set_default("vae", "sd1", missing)  # the recipe's VAE is the default VAE too, and neither is here
    core_settings.save(s)
    w.model_setup.reload_settings()
    opened: list[int] = []
    w.model_setup.open_models = lambda tab=0: opened.append(tab)

    w._recreate(GenerationRequest.create(model=str(tmp_path / "m"), prompt="a kite", width=64, height=64, vae=missing))
    assert w.messages.isVisible() and w.messages.kind == "warning" and "shared-vae.safetensors" in w.messages.message
    assert not w.prompt.vae_default.isVisible()  # "Use default" would give the same missing file: not shown …
    assert "Use default" not in w.messages.hint  # … and not offered
    assert w.messages.action.isVisible()  # what is offered exists: the defaults, in the Models dialog
    w.messages.action.click()
    assert opened == [1]

    s.set_default("vae", "sd1", None)  # the user clears the default in the Models dialog
    core_settings.save(s)
    w.model_setup.reload_settings()
    assert w.prompt.vae_default.isVisible()  # now the recipe's VAE differs from the default: "Use default" shows
    assert w.messages.isVisible() and "Use default" in w.messages.hint and "model's own VAE" in w.messages.hint
    assert not w.messages.action.isVisible()
    w.prompt.vae_default.click()
    assert w.prompt.build_requests()[0].vae == "" and not w.messages.isVisible()
