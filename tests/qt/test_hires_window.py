"""Hires fix in the window: the Prompt panel's section (its note, its request field, Recreate), and a run
whose Steps strip spans both passes, scrubbed, with Branch from here only on the first pass."""

from __future__ import annotations

import numpy as np

from studio.core.request import GenerationRequest
from studio.qt.common.images import from_qimage
from studio.qt.generate.prompt_panel import PromptPanel
from studio.testing import save_tiny_upscaler

RUN_TIMEOUT_MS = 90_000


def test_prompt_panel_hires_section(qtbot, tmp_path):
    p = PromptPanel()
    qtbot.addWidget(p)
    p.show()
    h = p.hires
    assert not h.enabled.isChecked() and not h.body.isVisible()
    assert p.build_requests()[0].hires is None
    p.set_size(64, 96)
    p.steps.setValue(10)
    h.enabled.setChecked(True)
    assert h.body.isVisible()
    h.scale.setValue(1.5)
    h.strength.setValue(0.5)
    assert h.note.text() == "64×96 → 96×144; 15 steps in all (10 + 5)"
    req = p.build_requests()[0]
    assert (req.hires.scale, req.hires.strength, req.hires.steps, req.hires.upscaler) == (1.5, 0.5, 0, "latent")
    up = save_tiny_upscaler(tmp_path / "4x-Tiny.safetensors", "compact", 4)
    h.find_upscalers = lambda: [str(up)]
    h.upscaler.showPopup()
    h.upscaler.hidePopup()
    assert [h.upscaler.itemText(i) for i in range(h.upscaler.count())] == ["Latent", "Lanczos", "4x-Tiny"]
    h.upscaler.setCurrentIndex(2)
    req = p.build_requests()[0]
    assert req.hires.upscaler == str(up) and len(req.hires.upscaler_sha256) == 64

    # Recreate: the section follows the recipe, on or off
    p.set_request(GenerationRequest.create(width=64, height=64, hires={"scale": 3, "steps": 7, "upscaler": "lanczos"}))
    assert h.enabled.isChecked() and h.scale.value() == 3 and h.steps.value() == 7
    assert h.upscaler.currentData() == "lanczos"
    p.set_request(GenerationRequest.create())
    assert not h.enabled.isChecked() and p.build_requests()[0].hires is None


def test_hires_run_spans_both_passes_in_the_strip(qtbot, make_window, fill_request, tiny_sd15):
    w = make_window()
    fill_request(w, tiny_sd15, steps=4, seed=3)
    w.prompt.hires.enabled.setChecked(True)
    w.prompt.hires.strength.setValue(0.5)
    seen = []
    w.controller.stepReceived.connect(lambda rid, s: seen.append(s))
    with qtbot.waitSignal(w.controller.runFinished, timeout=RUN_TIMEOUT_MS) as blocker:
        w.controller.generate()
    run_id, status = blocker.args
    assert status == "done" and seen == [1, 2, 3, 4, 5, 6]
    rec = w.history.get(run_id)
    assert rec.total == 6 and rec.kept_steps() == [1, 2, 3, 4, 5, 6]
    assert rec.images[0].shape == (128, 128, 3) and np.array_equal(from_qimage(w.canvas.image()), rec.images[0])
    assert w.strip.step_label.text() == "Step 6 / 6"
    assert rec.steps[5].latent.shape[-1] == 2 * rec.steps[4].latent.shape[-1]  # the second pass is larger
    assert w.strip.select_step(5)
    assert "step 5/6" in w.canvas.caption and not w.strip.branch.isEnabled()
    assert "second pass" in w.strip.branch.toolTip()
    assert w.strip.select_step(2) and w.strip.branch.isEnabled()
    with qtbot.waitSignal(w.controller.runFinished, timeout=RUN_TIMEOUT_MS) as blocker:
        w.strip._branch()
    child = w.history.get(blocker.args[0])
    assert child.request.hires is not None and child.request.branch.step == 2
    assert child.kept_steps() == [3, 4, 5, 6] and child.images[0].shape == (128, 128, 3)
