"""Scanning identifies kinds and architectures from headers and configs alone."""

import json
import shutil

import torch
from safetensors.torch import save_file

from studio.cli import main
from studio.core.catalogue import scan


def _tensor_file(path, tensors):
    save_file({k: torch.zeros(*shape, dtype=torch.float16) for k, shape in tensors.items()}, str(path))


def test_scan_a_mixed_folder(tiny_models, tmp_path, capsys):
    lib = tmp_path / "models"
    (lib / "Stable-diffusion").mkdir(parents=True)
    (lib / "Lora").mkdir()
    for arch in ("sd15", "sd15-inpaint", "sdxl"):
        shutil.copytree(tiny_models(arch, "diffusers"), lib / "diffusers" / arch)
        shutil.copy(tiny_models(arch, "single-file"), lib / "Stable-diffusion" / f"{arch}.safetensors")
    shutil.copy(tiny_models("sd2", "single-file"), lib / "Stable-diffusion" / "sd2-turbo.safetensors")
    _tensor_file(
        lib / "Lora" / "style.safetensors",
        {
            "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": (4, 768),
            "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_up.weight": (320, 4),
        },
    )
    _tensor_file(
        lib / "Lora" / "xl.safetensors", {"lora_te2_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": (4, 1280)}
    )
    _tensor_file(
        lib / "vae.safetensors",
        {"encoder.down.0.block.0.conv1.weight": (8, 8, 3, 3), "decoder.up.0.block.0.conv1.weight": (8, 8, 3, 3)},
    )
    _tensor_file(
        lib / "taesd.safetensors", {"encoder.layers.0.weight": (8, 3, 3, 3), "decoder.layers.0.weight": (8, 4, 3, 3)}
    )
    _tensor_file(
        lib / "cn.safetensors", {"control_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight": (320, 768)}
    )
    (lib / "broken.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json")
    torch.save({}, lib / "old.ckpt")
    (lib / "notes.txt").write_text("ignored: not a model suffix")

    found = {e.path.split("/models/")[1]: e for e in scan(lib)}
    expect = {
        "diffusers/sd15": ("checkpoint", "sd1"),
        "diffusers/sd15-inpaint": ("inpaint checkpoint", "sd1"),
        "diffusers/sdxl": ("checkpoint", "sdxl"),
        "Stable-diffusion/sd15.safetensors": ("checkpoint", "sd1"),
        "Stable-diffusion/sd15-inpaint.safetensors": ("inpaint checkpoint", "sd1"),
        "Stable-diffusion/sdxl.safetensors": ("checkpoint", "sdxl"),
        "Stable-diffusion/sd2-turbo.safetensors": ("checkpoint", "sd2"),
        "Lora/style.safetensors": ("LoRA", "sd1"),
        "Lora/xl.safetensors": ("LoRA", "sdxl"),
        "vae.safetensors": ("VAE", ""),
        "taesd.safetensors": ("tiny autoencoder", ""),
        "cn.safetensors": ("ControlNet", "sd1"),
    }
    for name, (kind, arch) in expect.items():
        assert (found[name].kind, found[name].arch) == (kind, arch), name
        assert found[name].usable, name
    assert "Turbo" in found["Stable-diffusion/sd2-turbo.safetensors"].variant
    assert "v-prediction" in found["Stable-diffusion/sd2-turbo.safetensors"].variant
    assert found["Stable-diffusion/sd15.safetensors"].precision == "fp32"
    assert not found["broken.safetensors"].usable and "safetensors" in found["broken.safetensors"].reason
    assert not found["old.ckpt"].usable and "pickled" in found["old.ckpt"].reason
    assert "notes.txt" not in " ".join(found)

    assert main(["models", "scan", str(lib), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == len(found)
    assert main(["models", "info", str(lib / "Lora" / "style.safetensors")]) == 0
    assert "LoRA sd1" in capsys.readouterr().out
    assert main(["models", "info", str(tmp_path / "missing")]) == 2
