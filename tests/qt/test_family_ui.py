"""The Prompt panel follows the chosen model's family: FLUX has no negative prompt (the box is
disabled and says why) and a "Guidance" slider; flow models offer only their schedulers and count
T5 tokens too; a transformer-only file gets its text encoders (and VAE) from ComfyUI's folders."""

from __future__ import annotations

import pytest

from studio.core.request import GenerationRequest


@pytest.fixture
def panel(qtbot):
    from studio.qt.generate.prompt_panel import PromptPanel

    p = PromptPanel()
    qtbot.addWidget(p)
    p.show()
    return p


def test_flux_dev_panel(panel, tiny_flow):
    panel.set_model(str(tiny_flow("flux-dev").model))
    panel.negative.setPlainText("blurry")
    fam = panel.family
    assert not panel.negative.isEnabled() and fam.negative_note.isVisible()
    assert "no negative prompt" in fam.negative_note.text() and "distilled" in fam.negative_note.text()
    assert fam.guidance_row_label.text() == "Guidance" and panel.guidance.isEnabled()
    assert not panel.guidance_end.isEnabled() and not panel.rescale.isEnabled()
    assert [panel.scheduler.itemText(i) for i in range(panel.scheduler.count())] == [
        "Euler",
        "Euler a",
        "Heun",
        "DPM++ 2M",
    ]
    panel.prompt.setPlainText("a red circle at the top left")
    panel.update_token_counts()
    assert panel.prompt_tokens.text().endswith("T5 7/511") and "CLIP" in panel.prompt_tokens.text()
    req = panel.build_requests()[0]
    assert req.negative_prompt == ""  # not sent to a model that does not read it


def test_schnell_and_sd3_panels(panel, tiny_flow):
    panel.set_model(str(tiny_flow("flux-schnell").model))
    assert not panel.guidance.isEnabled() and "step-distilled" in panel.family.negative_note.text()
    panel.set_model(str(tiny_flow("sd35-medium").model))
    assert panel.negative.isEnabled() and not panel.family.negative_note.isVisible()
    assert panel.family.guidance_row_label.text() == "CFG scale" and panel.guidance_end.isEnabled()
    panel.prompt.setPlainText("a cat")
    panel.update_token_counts()
    assert "T5" in panel.prompt_tokens.text() and panel.prompt_tokens.text().endswith("/255")
    panel.set_model("demo")
    assert panel.scheduler.findText("Euler a") >= 0 and panel.negative.isEnabled()


def test_transformer_only_file_gets_its_encoders(panel, tiny_flow):
    files = tiny_flow("flux-dev", "gguf")
    panel.set_model(str(files.model))
    fam = panel.family
    assert fam.encoders_row.isVisible()
    assert sorted(fam.encoders) == sorted(str(p.resolve()) for p in files.encoders)
    assert "clip_l.safetensors" in fam.encoders_label.text() and "ae.safetensors" in fam.encoders_label.text()
    req: GenerationRequest = panel.build_requests()[0]
    assert sorted(req.text_encoders) == sorted(fam.encoders) and req.vae == str(files.vae.resolve())
    panel.set_model(str(tiny_flow("flux-dev").model))  # a folder carries its own
    assert not fam.encoders_row.isVisible() and panel.build_requests()[0].text_encoders == ()
