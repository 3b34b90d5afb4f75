"""The Device dialog's speed settings reach the engine through each run's recipe: "Fast path" (the
device's recommended parts) and "Draft speed" (step caching); the GPU to run on is remembered."""

from __future__ import annotations

from studio.core import settings as core_settings
from studio.core.request import FastPath

TIMEOUT = 60_000


def recording_engine(got: list):
    """An engine factory whose engine records every request it runs."""

    def factory():
        from studio.engine.engine import Engine

        engine = Engine(device="cpu")
        orig = engine.generate

        def generate(request, *args, **kwargs):
            got.append(request)
            return orig(request, *args, **kwargs)

        engine.generate = generate
        return engine

    return factory


def run_and_wait(qtbot, window, trigger):
    with qtbot.waitSignal(window.controller.runFinished, timeout=TIMEOUT) as blocker:
        trigger()
    return blocker.args


def test_speed_settings_go_into_the_recipe(qtbot, make_window, fill_request, tiny_sd15, tmp_path):
    got: list = []
    w = make_window(engine_factory=recording_engine(got))
    qtbot.waitUntil(lambda: w.bridge.device is not None, timeout=TIMEOUT)
    fill_request(w, tiny_sd15, steps=3, size=64, seed=5)
    run_and_wait(qtbot, w, w.controller.generate)
    assert got[-1].fast == FastPath()  # nothing ticked: what diffusers does by itself

    w.model_setup.device_action.trigger()
    d = w.model_setup.device_dialog
    assert "fused attention projections" in d.fast_note.text()  # what "Fast path" means on this CPU
    assert [d.device_choice.itemData(i) for i in range(d.device_choice.count())][-1] == "cpu"
    d.fast_path.setChecked(True)
    d.draft.setChecked(True)
    d.device_choice.setCurrentIndex(d.device_choice.findData("cpu"))
    saved = core_settings.load()
    assert (saved.fast_path, saved.draft, saved.device) == (True, True, "cpu")
    d.grab().save(str(tmp_path / "device-dialog.png"))
    run_id, status = run_and_wait(qtbot, w, w.controller.generate)
    assert status == "done"
    assert got[-1].fast == FastPath(fused_qkv=True, draft=True)
    assert w.controller.history.get(run_id).request.fast == got[-1].fast  # the run's recipe says so

    d.fast_path.setChecked(False)
    d.draft.setChecked(False)
    run_and_wait(qtbot, w, w.controller.generate)
    assert got[-1].fast == FastPath()
