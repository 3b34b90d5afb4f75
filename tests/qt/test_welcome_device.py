"""First run (the welcome page and its four choices, remembered), recommended settings when a
model is chosen, and the Device dialog (device, dtype, attention, memory, preset to the engine)."""

from __future__ import annotations

import json
from pathlib import Path

from PySide6.QtWidgets import QFileDialog

from studio.core import settings as core_settings

TIMEOUT = 60_000


def test_first_run_shows_the_welcome_page_and_the_choice_is_remembered(qtbot, make_window, fake_engine):
    w = make_window(engine_factory=fake_engine)
    assert w.model_setup.welcome_if_first_run() and w.model_setup.welcome_shown
    assert not w.canvas.isVisible() and w.model_setup.welcome.isVisible()
    w.prompt.steps.setValue(50)
    w.model_setup.welcome.buttons["demo"].click()
    assert not w.model_setup.welcome_shown and w.canvas.isVisible()
    p = w.prompt
    assert p.model_name() == "demo"
    # the demo model's (its card): CFG 7 on the first half of the steps
    assert (p.steps.value(), p.guidance.value(), p.width_.value(), p.height_.value()) == (20, 7.0, 128, 128)
    assert p.fields()["guidance_end"] == 0.5
    w.close()
    w2 = make_window(engine_factory=fake_engine)
    assert not w2.model_setup.welcome_if_first_run() and not w2.model_setup.welcome_shown
    assert w2.prompt.model_name() == "demo"


def test_an_existing_user_and_an_explicit_model_skip_the_welcome(qtbot, make_window, fake_engine):
    w = make_window(engine_factory=fake_engine)
    w.controller.generate()  # a request was queued before: not a first run any more
    w.close()
    w2 = make_window(engine_factory=fake_engine)
    assert not w2.model_setup.is_first_run()


def test_welcome_import_links_a_checkpoint_into_the_library(qtbot, make_window, fake_engine, tiny_models, monkeypatch):
    from studio.core.paths import models_dir

    ckpt = tiny_models("sd15", "single-file")
    w = make_window(engine_factory=fake_engine)
    w.model_setup.welcome_if_first_run()
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(ckpt), ""))
    w.model_setup.welcome.import_menu.actions()[0].trigger()
    linked = models_dir() / ckpt.name
    assert linked.is_symlink() and linked.resolve() == ckpt.resolve()
    assert w.prompt.model_name() == str(linked) and not w.model_setup.welcome_shown
    assert w.prompt.steps.value() == 25 and w.prompt.width_.value() == 512  # SD 1.x recommendations
    assert w.settings.value("welcome/choice") == "import"


def test_welcome_folder_adds_an_extra_folder_and_lists_its_checkpoints(
    qtbot, make_window, fake_engine, tiny_models, monkeypatch
):
    ckpt = tiny_models("sd15", "single-file")
    w = make_window(engine_factory=fake_engine)
    w.model_setup.welcome_if_first_run()
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *a, **k: str(ckpt.parent))
    w.model_setup.welcome.buttons["folder"].click()
    assert core_settings.load().model_folders == [str(ckpt.parent.resolve())]
    d = w.model_setup.models_dialog
    assert d is not None and d.isVisible() and d.kind.currentData() == "checkpoint"
    qtbot.waitUntil(lambda: not d.busy and d.model.row_of(str(ckpt)) >= 0, timeout=TIMEOUT)
    assert not w.model_setup.welcome_shown


def test_generate_from_the_welcome_page_shows_the_run(qtbot, make_window, fake_engine):
    w = make_window(engine_factory=fake_engine)
    w.model_setup.welcome_if_first_run()
    with qtbot.waitSignal(w.controller.runFinished, timeout=TIMEOUT):
        w.prompt.generate_button.click()
    assert not w.model_setup.welcome_shown and w.canvas.isVisible()


def test_welcome_download_opens_the_download_tab(qtbot, make_window, fake_engine):
    w = make_window(engine_factory=fake_engine)
    w.model_setup.welcome_if_first_run()
    w.model_setup.welcome.buttons["download"].click()
    d = w.model_setup.models_dialog
    assert d.isVisible() and d.tabs.currentWidget() is d.download
    qtbot.waitUntil(lambda: not d.busy, timeout=TIMEOUT)


def test_choosing_a_turbo_model_sets_steps_and_cfg(qtbot, make_window, fake_engine, tmp_path, tiny_sd15):
    turbo = tmp_path / "sdxl-turbo-mini"
    (turbo / "unet").mkdir(parents=True)
    (turbo / "model_index.json").write_text(
        json.dumps({"_class_name": "StableDiffusionXLPipeline", "text_encoder": ["transformers", "CLIPTextModel"]})
    )
    (turbo / "unet" / "config.json").write_text(json.dumps({"cross_attention_dim": 2048, "in_channels": 4}))
    (turbo / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"")
    w = make_window(engine_factory=fake_engine)
    p = w.prompt
    p.steps.setValue(30)
    p.guidance.setValue(7.5)
    w._model_chosen(str(turbo))
    assert (p.steps.value(), p.guidance.value(), p.width_.value()) == (4, 0.0, 512)
    assert p.build_requests()[0].steps == 4
    p.guidance.setValue(1.0)  # the user's change stands
    assert p.fields()["guidance_scale"] == 1.0
    w._model_chosen(str(tiny_sd15))  # another model: its own recommendations
    assert (p.steps.value(), p.guidance.value(), p.scheduler.currentText(), p.schedule.currentText()) == (
        25,
        7.0,
        "DPM++ 2M",
        "Karras",
    )


def test_device_dialog_shows_memory_and_the_preset_reaches_the_engine(qtbot, make_window):
    w = make_window()  # the real CPU engine
    qtbot.waitUntil(lambda: w.bridge.device is not None, timeout=TIMEOUT)
    w.model_setup.device_action.trigger()
    d = w.model_setup.device_dialog
    assert d.isVisible()
    qtbot.waitUntil(lambda: "MB" in d.labels["memory"].text() or "GB" in d.labels["memory"].text(), timeout=TIMEOUT)
    assert "cpu" in d.labels["device"].text() and d.labels["dtype"].text() == "float32"
    assert "SDPA" in d.labels["attention"].text() and d.labels["peak"].text() != "—"
    assert "float32" in w.progress.device.text() and "Memory" in w.progress.memory.text()
    d.preset.setCurrentIndex(d.preset.findData("low memory"))
    qtbot.waitUntil(lambda: (w.bridge.device or {}).get("preset") == "low memory", timeout=TIMEOUT)
    assert w.bridge.worker.engine.preset == "low memory"
    assert "sliced" in d.labels["attention"].text() and "low memory" in w.progress.device.text()
    assert core_settings.load().memory_preset == "low memory"
    d.fallback.setChecked(True)
    qtbot.waitUntil(lambda: w.bridge.worker.engine.auto_fallback, timeout=TIMEOUT)
    d.close()
    w.close()
    w2 = make_window()  # a restart: the saved preset is handed to the new engine
    qtbot.waitUntil(lambda: (w2.bridge.device or {}).get("preset") == "low memory", timeout=TIMEOUT)
    assert w2.bridge.worker.engine.auto_fallback


def test_studio_run_module_opens_on_welcome_only_without_a_model(monkeypatch, qtbot, themed_app, studio_home):
    """run_app(): no --model and fresh settings → the welcome page; --model given → straight to the studio."""
    import argparse

    import studio.qt.app.app as app_mod
    from studio.qt.app.main_window import MainWindow

    seen = {}

    class Probe(MainWindow):
        def show(self):
            seen["welcome"] = self.model_setup.welcome_shown
            seen["model"] = self.prompt.model_name()
            super().show()

    monkeypatch.setattr("studio.qt.app.main_window.MainWindow", Probe)
    monkeypatch.setattr(themed_app, "exec", lambda: 0)
    monkeypatch.setattr(app_mod, "_quit_on_signals", lambda app: None)
    assert app_mod.run_app(argparse.Namespace(model=None)) == 0
    assert seen["welcome"] is True
    assert app_mod.run_app(argparse.Namespace(model=str(Path("/tmp/some-model")))) == 0
    assert seen["welcome"] is False and seen["model"] == "/tmp/some-model"
