"""Every error a user can cause gives one typed error with a sentence a person understands."""

import shutil

import pytest
import torch
from safetensors.torch import save_file

from studio.core.errors import (
    CorruptModel,
    InvalidRequest,
    ModelNotFound,
    NotADiffusionModel,
    OutOfMemory,
    PickleRefused,
    PromptTooLong,
    StudioError,
)
from studio.core.request import GenerationRequest
from studio.engine.engine import Engine


def _req(model, **kw):
    return GenerationRequest.create(model=str(model), prompt="x", steps=2, width=64, height=64, **kw)


@pytest.fixture()
def eng():
    return Engine(device="cpu")


def test_missing_file(eng, tmp_path):
    with pytest.raises(ModelNotFound, match="not found"):
        eng.generate(_req(tmp_path / "nope.safetensors"))


def test_truncated_checkpoint(eng, tiny_models, tmp_path):
    src = tiny_models("sd15", "single-file")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    with pytest.raises(CorruptModel, match="truncated"):
        eng.generate(_req(cut))


@pytest.mark.parametrize("payload", [b"", b"\x00" * 4, b"garbage" * 100, (2**40).to_bytes(8, "little") + b"{}"])
def test_garbage_file(eng, tmp_path, payload):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(payload)
    with pytest.raises(CorruptModel) as err:
        eng.generate(_req(bad))
    assert "bad.safetensors" in err.value.message


def test_a_lora_is_not_a_checkpoint(eng, tmp_path):
    lora = tmp_path / "style.safetensors"
    save_file({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(4, 32)}, str(lora))
    with pytest.raises(NotADiffusionModel, match="is a LoRA"):
        eng.generate(_req(lora))


def test_pickled_checkpoint_refused(eng, tmp_path):
    ckpt = tmp_path / "old.ckpt"
    torch.save({"state_dict": {}}, ckpt)
    with pytest.raises(PickleRefused, match="can run code"):
        eng.generate(_req(ckpt))


def test_folder_with_only_pickled_weights_refused(eng, tiny_sd15, tmp_path):
    folder = tmp_path / "pickled"
    shutil.copytree(tiny_sd15, folder)
    for f in (folder / "unet").glob("*.safetensors"):
        f.rename(f.with_suffix(".bin"))
    with pytest.raises(PickleRefused):
        eng.generate(_req(folder))


def test_folder_that_is_not_a_model(eng, tmp_path):
    with pytest.raises(NotADiffusionModel, match="model_index.json"):
        eng.generate(_req(tmp_path))


def test_corrupt_component_names_the_component(eng, tiny_sd15, tmp_path):
    folder = tmp_path / "broken"
    shutil.copytree(tiny_sd15, folder)
    (folder / "vae" / "config.json").write_text("{not json")
    with pytest.raises(CorruptModel, match="VAE"):
        eng.generate(_req(folder))


def test_prompt_too_long(eng, tiny_sd15):
    with pytest.raises(PromptTooLong, match="at most 75"):
        eng.generate(_req(tiny_sd15).replace(prompt="cat " * 80))


def test_out_of_memory_is_reported_and_engine_recovers(eng, tiny_sd15, monkeypatch):
    lm = eng.load(str(tiny_sd15))
    real_forward = lm.pipe.unet.forward

    def boom(*a, **k):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(lm.pipe.unet, "forward", boom)
    with pytest.raises(OutOfMemory) as err:
        eng.generate(_req(tiny_sd15))
    assert "Out of memory" in err.value.message and err.value.hint
    monkeypatch.setattr(lm.pipe.unet, "forward", real_forward)
    assert eng.generate(_req(tiny_sd15)).status == "done"


def test_taesd_preview_without_a_model_is_explained(eng, tiny_sd15):
    with pytest.raises(InvalidRequest, match="TAESD"):
        eng.generate(_req(tiny_sd15, preview="taesd"))


def test_all_errors_are_studio_errors():
    for cls in (CorruptModel, ModelNotFound, NotADiffusionModel, OutOfMemory, PickleRefused, PromptTooLong):
        assert issubclass(cls, StudioError)
