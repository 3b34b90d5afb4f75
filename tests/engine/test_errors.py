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


def test_prompt_too_long(eng, tiny_sd15, monkeypatch):
    """Past 75 tokens a CLIP prompt is read in further chunks (A1111's way); a pipeline the studio calls
    with the text itself (no prompt embeddings it can build) keeps the encoder's hard limit, said in
    one line."""
    assert eng.generate(_req(tiny_sd15).replace(prompt="cat " * 80)).status == "done"
    import studio.engine.prompt_encoder as encoder_mod

    monkeypatch.setattr(encoder_mod, "towers", lambda pipe: None)
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


def test_out_of_memory_falls_back_to_a_lower_preset_when_allowed(tiny_sd15, monkeypatch):
    eng = Engine(device="cpu", preset="fast", auto_fallback=True)
    lm = eng.load(str(tiny_sd15))
    real_forward = lm.pipe.unet.forward
    calls = {"n": 0}

    def once(*a, **k):
        calls["n"] += 1
        if calls["n"] == 1:
            raise torch.OutOfMemoryError("CUDA out of memory")
        return real_forward(*a, **k)

    monkeypatch.setattr(lm.pipe.unet, "forward", once)
    res = eng.generate(_req(tiny_sd15))
    assert res.status == "done" and eng.preset == "balanced"
    assert "switched to “balanced”" in res.extra["notice"]
    assert lm.pipe.vae.use_slicing and lm.pipe.vae.use_tiling


def test_out_of_memory_names_the_next_preset_when_not_allowed(tiny_sd15, monkeypatch):
    eng = Engine(device="cpu", preset="balanced")
    lm = eng.load(str(tiny_sd15))
    monkeypatch.setattr(lm.pipe.unet, "forward", lambda *a, **k: (_ for _ in ()).throw(torch.OutOfMemoryError("oom")))
    with pytest.raises(OutOfMemory) as err:
        eng.generate(_req(tiny_sd15))
    assert "low memory" in err.value.hint and eng.preset == "balanced"


@pytest.mark.parametrize(
    "preset, slicing, vae_slicing, tiling",
    [("fast", False, False, False), ("balanced", False, True, True), ("low memory", True, True, True)],
)
def test_presets_map_to_pipeline_options(tiny_sd15, preset, slicing, vae_slicing, tiling):
    eng = Engine(device="cpu", preset=preset)
    assert eng.generate(_req(tiny_sd15)).extra["preset"] == preset
    pipe = eng.load(str(tiny_sd15)).pipe
    procs = {type(p).__name__ for p in pipe.unet.attn_processors.values()}
    assert ("SlicedAttnProcessor" in procs) == slicing
    assert pipe.vae.use_slicing == vae_slicing and pipe.vae.use_tiling == tiling


def test_auto_preset_from_device_memory():
    from studio.engine.devices import DeviceInfo
    from studio.engine.memory import auto_preset

    gpu = DeviceInfo("cuda", "float16", "GPU")
    assert auto_preset(gpu, 24 * 1024) == "fast"
    assert auto_preset(gpu, 8 * 1024) == "balanced"
    assert auto_preset(gpu, 4 * 1024) == "low memory"
    assert auto_preset(DeviceInfo("cpu", "float32", "CPU"), None) == "fast"
