"""The demo-adapter trainer writes files the studio's own plugins load and run (a few steps only)."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from studio.dev import scenes

MODEL = Path(__file__).resolve().parents[2] / "resources" / "demo-model"

pytestmark = pytest.mark.skipif(not (MODEL / "model_index.json").is_file(), reason="resources/demo-model is not there")


def _train(kind: str, tmp_path: Path, out: Path, steps: int = 2) -> Path:
    from studio.dev import train_adapters

    args = [
        "--model",
        str(MODEL),
        "--out",
        str(out),
        "--work",
        str(tmp_path / "work"),
        "--steps",
        str(steps),
        "--batch",
        "2",
        "--ckpt-every",
        "1",
        "--threads",
        "1",
    ]
    assert train_adapters.main([kind, *args]) == 0
    return out


def test_positionless_captions_name_colours_but_no_place():
    scene = scenes.sample_scene(random.Random(5))
    from studio.dev.train_adapters import caption_without_position

    cap = caption_without_position(scene, random.Random(1))
    assert scene.background in cap
    assert all(o.colour in cap and o.shape in cap for o in scene.objects)
    assert not any(p in cap for p in ("left", "right", "top", "bottom", "center"))


def test_canny_map_is_what_the_plugin_gives():
    from studio.dev.train_adapters import canny_map
    from studio_plugins.controlnet.preprocessors import canny

    image = scenes.render(scenes.sample_scene(random.Random(2)))
    assert np.array_equal(canny_map(image), canny(np.asarray(image)))
    assert canny_map(image).max() == 255


def test_lora_trains_resumes_and_loads_through_the_plugin(tmp_path, engine):
    from studio.core.request import GenerationRequest, LoraRef

    out = _train("lora", tmp_path, tmp_path / "striped.safetensors")
    from safetensors import safe_open

    with safe_open(str(out), "pt") as f:
        keys = list(f.keys())
        assert keys and all(k.split(".")[0] in ("unet", "text_encoder") and ".lora" in k for k in keys)
        assert any(k.startswith("text_encoder.") for k in keys)
        assert {str(f.get_slice(k).get_dtype()) for k in keys} == {"F16"}
    _train("lora", tmp_path, out, steps=3)  # resumes from the checkpoint in --work
    import json

    lines = [json.loads(x) for x in (tmp_path / "work" / "lora" / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in lines] == [1, 2, 3]  # went on from step 2, did not start again
    req = GenerationRequest(
        model=str(MODEL),
        prompt="a red circle",
        steps=2,
        seed=1,
        preview="none",
        width=128,
        height=128,
        loras=(LoraRef(name="striped", path=str(out)),),
    )
    res = engine.generate(req)
    assert res.images[0].shape == (128, 128, 3)


def test_controlnet_trains_and_loads_through_the_plugin(tmp_path, engine):
    from studio.core.request import ControlNetRef, GenerationRequest, ImageRef

    out = _train("controlnet", tmp_path, tmp_path / "cn")
    assert (out / "config.json").is_file() and (out / "diffusion_pytorch_model.safetensors").is_file()
    control = tmp_path / "control.png"
    scenes.render(scenes.sample_scene(random.Random(9))).save(control)
    req = GenerationRequest(
        model=str(MODEL),
        prompt="a red circle",
        steps=2,
        seed=1,
        preview="none",
        width=128,
        height=128,
        controlnets=(ControlNetRef(model=str(out), image=ImageRef(path=str(control)), preprocessor="canny"),),
    )
    res = engine.generate(req)
    assert res.images[0].shape == (128, 128, 3)
