"""The IP-Adapter panel: units with adapter, encoder, weighted reference images and start/end become the
recipe's plugins["ip_adapter"] (images by SHA-256); Recreate puts them back; the window docks it and a
run with it reaches the engine and the gallery's recipe."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from studio.core.hashing import sha256_file
from studio.core.request import GenerationRequest
from studio.testing import save_tiny_clip_vision, save_tiny_ip_adapter

pytestmark = pytest.mark.usefixtures("themed_app", "studio_home")
RUN_TIMEOUT_MS = 90_000


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    d = tmp_path_factory.mktemp("ipkit")
    refs = []
    for i in range(2):
        Image.fromarray(np.full((24, 24, 3), 60 + 120 * i, np.uint8)).save(d / f"ref{i}.png")
        refs.append(d / f"ref{i}.png")
    (d / "not-an-image.png").write_text("no")
    return {
        "adapter": save_tiny_ip_adapter(d / "ip-adapter_sd15.safetensors"),
        "encoder": save_tiny_clip_vision(d / "image_encoder"),
        "refs": refs,
        "bad": d / "not-an-image.png",
    }


def test_panel_units_round_trip(qtbot, kit):
    from studio_plugins.ip_adapter.panel import IPAdapterPanel

    p = IPAdapterPanel()
    qtbot.addWidget(p)
    assert p.units() == []  # an empty unit is not a unit
    u = p.unit_widgets[0]
    u.model.setCurrentText(str(kit["adapter"]))
    u.encoder.setCurrentText(str(kit["encoder"]))
    assert p.units() == []  # still no image
    assert p.add_image(str(kit["refs"][0])) and p.add_image(str(kit["refs"][1]))
    assert not p.add_image(str(kit["bad"])) and "not an image this studio can read" in u.problem.text()
    u.references[1].weight.setValue(0.5)
    u.weight.setValue(0.8)
    u.range.setValue((0.1, 0.9))
    (unit,) = p.units()
    assert unit["model"] == str(kit["adapter"]) and unit["model_sha256"] == sha256_file(kit["adapter"])
    assert [(i["sha256"], i["weight"]) for i in unit["images"]] == [
        (sha256_file(r), w) for r, w in zip(kit["refs"], (1.0, 0.5))
    ]
    assert (unit["weight"], unit["start"], unit["end"]) == (0.8, 0.1, 0.9)
    second = p.add_unit()
    second.enabled.setChecked(False)
    assert len(p.units()) == 1
    fresh = IPAdapterPanel()
    qtbot.addWidget(fresh)
    fresh.set_units([unit])
    assert fresh.units() == [unit]
    fresh.set_units([])
    assert fresh.units() == [] and len(fresh.unit_widgets) == 1
    p.find_models = lambda: {
        "IP-Adapter": [str(kit["adapter"]), "/lib/ip-adapter_sdxl.safetensors"],
        "image encoder": [],
    }
    fresh.find_models = p.find_models
    box = fresh.unit_widgets[0].model
    box.showPopup()
    box.hidePopup()
    assert [box.itemText(i) for i in range(box.count())] == [str(kit["adapter"]), "/lib/ip-adapter_sdxl.safetensors"]
    arr = np.full((16, 16, 3), 200, np.uint8)
    assert fresh.add_image_array(arr) and fresh.unit_widgets[0].references[0].path.endswith(".png")


def test_window_docks_it_and_a_run_carries_it(qtbot, make_window, fill_request, tiny_sd15, kit):
    w = make_window()
    docks = w.plugin_docks
    panel = docks.panels["ip_adapter"]  # delivered by the plugin's panel(host), as a third-party one
    assert docks.docks["ip_adapter"].windowTitle() == "IP-Adapter"
    assert list(docks.panels)[:3] == ["lora", "controlnet", "ip_adapter"]  # the manifests' order
    fill_request(w, tiny_sd15, steps=2, size=64)
    u = panel.unit_widgets[0]
    u.model.setCurrentText(str(kit["adapter"]))
    u.encoder.setCurrentText(str(kit["encoder"]))
    docks.run_action("Use Edit canvas as reference image")  # an empty canvas: said, nothing added
    assert w.messages.kind == "warning" and "Edit canvas is empty" in w.messages.message
    panel.add_image(str(kit["refs"][0]))
    with qtbot.waitSignal(w.controller.runFinished, timeout=RUN_TIMEOUT_MS) as blocker:
        (run_id,) = w.controller.generate()
    assert blocker.args[1] == "done"
    req = w.history.get(run_id).request
    images = req.plugins["ip_adapter"]["units"][0]["images"]
    assert images == [{"path": str(kit["refs"][0]), "sha256": sha256_file(kit["refs"][0]), "weight": 1.0}]
    # Recreate of a recipe without image prompts empties the panel; with them, fills it again
    w._recreate(GenerationRequest.create(prompt="x", width=64, height=64))
    assert panel.units() == []
    w._recreate(req)
    assert panel.units() == req.plugins["ip_adapter"]["units"]
