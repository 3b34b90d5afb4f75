"""Plugins in the window: LoRA / ControlNet docks feed the request, the engine shares the window's
plugin host, the manager and About open, Recreate puts a recipe's LoRAs back."""

import numpy as np
from PIL import Image

from studio.core.request import GenerationRequest, LoraRef
from studio.testing import save_tiny_lora

RUN_TIMEOUT_MS = 180_000


def test_plugin_docks_feed_requests_and_the_engine(qtbot, make_window, fill_request, tiny_sd15, tmp_path):
    from studio_plugins.lora.files import read_lora

    lora = save_tiny_lora(tmp_path / "loras" / "style.safetensors", "sd15", "kohya")
    w = make_window(engine_factory=None)
    docks = w.plugin_docks
    assert docks.lora_dock is not None and docks.cn_dock is not None
    assert w.plugin_host.records["lora"].status == "enabled"
    docks.lora_panel.add_folder(tmp_path / "loras")
    docks.lora_panel.add_file(read_lora(lora), 0.7)
    fill_request(w, tiny_sd15, steps=2)
    req = w.prompt.build_requests()[0]
    assert req.loras and req.loras[0].weight == 0.7 and req.loras[0].path == str(lora)

    with qtbot.waitSignal(w.controller.runFinished, timeout=RUN_TIMEOUT_MS) as blocker:
        w.controller.generate()
    assert blocker.args[1] == "done"
    engine = w.bridge.worker.engine
    assert engine.plugins is w.plugin_host  # the manager's switches are what the engine uses
    w.plugin_host.set_enabled("lora", False)
    assert engine.plugins.get("lora") is None

    docks.load_request(GenerationRequest.create(loras=(LoraRef(name="style", path=str(lora), weight=-0.5),)))
    assert docks.lora_panel.loras()[0].weight == -0.5


def test_control_image_from_the_edit_canvas_and_dialogs(qtbot, make_window, tmp_path):
    w = make_window(engine_factory=None)
    docks = w.plugin_docks
    docks.control_from_canvas()  # empty canvas: a message, nothing else
    assert w.messages.isVisible() and "empty" in w.messages.text.text().lower()
    img = np.zeros((64, 64, 3), np.uint8)
    img[16:48, 16:48] = 255
    Image.fromarray(img).save(tmp_path / "in.png")
    w.edit.canvas.load_image(str(tmp_path / "in.png"))
    qtbot.waitUntil(w.edit.has_image, timeout=5000)
    docks.control_from_canvas()
    unit = docks.cn_panel.unit(0)
    assert unit.image_ref is not None
    assert np.array_equal(np.asarray(Image.open(unit.image_ref.path).convert("RGB")), img)  # the canvas pixels
    docks.cn_panel.wait_idle(20_000)
    docks.open_manager()
    docks.open_about()
    assert len(docks._dialogs) == 2 and all(d.isVisible() for d in docks._dialogs)
    for d in docks._dialogs:
        d.close()


def test_third_party_panel_is_docked_and_a_broken_one_is_disabled(qtbot, make_window, monkeypatch):
    from PySide6.QtWidgets import QLabel

    from studio.plugin_api import PluginManifest
    from studio.qt.plugins import docks as plugin_docks

    class WithPanel:
        manifest = PluginManifest(name="sketchy", version="1", title="Sketchy", contributes=("panel",))

        def panel(self):
            return QLabel("hello from a plugin")

    class BrokenPanel:
        manifest = PluginManifest(name="broken-panel", version="1", contributes=("panel",))

        def panel(self):
            raise RuntimeError("no widgets today")

    real = plugin_docks.discover_plugins

    def discover():
        host = real()
        host.add(WithPanel(), source="entry point")
        host.add(BrokenPanel(), source="entry point")
        return host

    monkeypatch.setattr("studio.qt.app.main_window.discover_plugins", discover)
    w = make_window()
    titles = [d.windowTitle() for d in w.plugin_docks.extra_docks]
    assert titles == ["Sketchy"]
    assert w.plugin_host.records["broken-panel"].status == "failed"
    assert "no widgets today" in w.plugin_host.records["broken-panel"].error
