"""SD 2.x single files: ε or v. Shapes cannot tell 768-v from 512-base and 512-inpainting; the file's
metadata, an A1111 .yaml, its name or its 9 input channels can, else the UNet is asked (A1111's
test); the user can override it (Models dialog, --prediction) and the recipe records that."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from studio.cli import main
from studio.core.checkpoint import identify, sd2_prediction_from_name
from studio.core.request import GenerationRequest
from studio.engine import prediction
from studio.engine.engine import Engine


@pytest.fixture(scope="module")
def sd2_tensors():
    from studio.engine.ldm import pipeline_to_ldm
    from studio.testing import tiny_pipeline

    return {k: v.detach().contiguous().clone() for k, v in pipeline_to_ldm(tiny_pipeline("sd2")).items()}


def _write(path, tensors, meta=None, in_channels=None):
    from safetensors.torch import save_file

    tensors = dict(tensors)
    if in_channels:
        w = tensors["model.diffusion_model.input_blocks.0.0.weight"]
        tensors["model.diffusion_model.input_blocks.0.0.weight"] = torch.zeros(w.shape[0], in_channels, *w.shape[2:])
    save_file(tensors, str(path), metadata=meta or {"format": "pt"})
    return path


@pytest.mark.parametrize(
    ("name", "meta", "yaml", "channels", "expected"),
    [
        ("v2-1_768-ema-pruned.safetensors", None, None, None, ("v_prediction", "name")),
        ("768-v-ema.safetensors", None, None, None, ("v_prediction", "name")),
        ("v2-1_512-ema-pruned.safetensors", None, None, None, ("epsilon", "name")),
        ("512-base-ema.safetensors", None, None, None, ("epsilon", "name")),
        ("model.safetensors", None, None, 9, ("epsilon", "shape")),  # 512-inpainting
        ("model.safetensors", {"modelspec.prediction_type": "v"}, None, None, ("v_prediction", "file")),
        ("model.safetensors", {"modelspec.prediction_type": "epsilon"}, None, None, ("epsilon", "file")),
        ("model.safetensors", None, 'model:\n  params:\n    parameterization: "v"\n    unet_config: {}\n', None,
         ("v_prediction", "file")),
        ("model.safetensors", None, "model:\n  params:\n    unet_config: {}\n", None, ("epsilon", "file")),
        ("my-finetune.safetensors", None, None, None, ("v_prediction", "default")),
    ],
)  # fmt: skip
def test_what_the_file_says(tmp_path, sd2_tensors, name, meta, yaml, channels, expected):
    path = _write(tmp_path / name, sd2_tensors, {"format": "pt", **(meta or {})}, channels)
    if yaml:
        path.with_suffix(".yaml").write_text(yaml)
    info = identify(path)
    assert info.arch == "sd2" and (info.prediction_type, info.prediction_source) == expected


def test_names_that_say_nothing():
    assert sd2_prediction_from_name("illuminati_v11.safetensors") is None
    assert sd2_prediction_from_name("x-1768.safetensors") is None


class _FakeUnet:
    """Answers like an ε model (its input back) or a v model (far below its input) at t = 999."""

    def __init__(self, v: bool):
        self.v = v
        self.device, self.dtype = torch.device("cpu"), torch.float32
        self.config = SimpleNamespace(cross_attention_dim=16, in_channels=4)

    def __call__(self, x, t, encoder_hidden_states):
        assert int(t[0]) == 999 and encoder_hidden_states.shape == (1, 2, 16)
        return SimpleNamespace(sample=(-x - 1.5) if self.v else x + 0.01)


def test_the_unet_is_asked_as_a1111_asks_it():
    assert prediction.probe_is_v(_FakeUnet(True)) and not prediction.probe_is_v(_FakeUnet(False))
    from diffusers import EulerDiscreteScheduler

    pipe = SimpleNamespace(unet=_FakeUnet(False), scheduler=EulerDiscreteScheduler(prediction_type="v_prediction"))
    assert prediction.settle(pipe, "default") == ("epsilon", "probe")
    assert pipe.scheduler.config.prediction_type == "epsilon"
    assert prediction.settle(pipe, "name") == ("epsilon", "name")  # what the file says is not second-guessed


def test_a_file_that_says_nothing_is_probed_when_loaded(tmp_path, sd2_tensors, monkeypatch):
    path = _write(tmp_path / "finetune.safetensors", sd2_tensors)
    for answer, expected in ((False, "epsilon"), (True, "v_prediction")):
        monkeypatch.setattr(prediction, "probe_is_v", lambda unet, a=answer: a)
        lm = Engine(device="cpu").load(str(path))
        assert lm.extra["prediction"] == (expected, "probe")
        assert lm.base_scheduler_config["prediction_type"] == expected


def test_the_recipes_prediction_type_overrides_and_is_recorded(tmp_path, tiny_models):
    path = tiny_models("sd2", "single-file")  # says v in its metadata
    eng = Engine(device="cpu")
    base = dict(model=str(path), prompt="a red circle", steps=3, width=64, height=64, seed=2, preview="none")
    v = eng.generate(GenerationRequest.create(**base))
    eps = eng.generate(GenerationRequest.create(**base, prediction_type="epsilon"))
    assert (v.extra["prediction_type"], eps.extra["prediction_type"]) == ("v_prediction", "epsilon")
    assert not np.array_equal(v.images[0], eps.images[0])
    assert json.loads(eps.request.to_json())["prediction_type"] == "epsilon"
    assert eng.load(str(path)).base_scheduler_config["prediction_type"] == "v_prediction"  # the model is unchanged
    out = tmp_path / "cli.png"
    args = ["generate", "--model", str(path), "--prompt", "a red circle", "--steps", "3", "--size", "64x64",
            "--seed", "2", "--prediction", "epsilon", "--no-gallery", "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    from studio.core.metadata import read_metadata

    assert read_metadata(out).request.prediction_type == "epsilon"
