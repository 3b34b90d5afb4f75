"""FLUX.1 and SD 3 LoRAs through the LoRA plugin, in the formats users have (kohya, BFL/ComfyUI,
diffusers): weight 0 gives the base model's pixels, weight 1 changes them, the formats agree."""

from __future__ import annotations

import numpy as np
import pytest

from studio.core.catalogue import identify_file
from studio.core.request import GenerationRequest, LoraRef
from studio.engine.plugins import PluginFailed


def _req(model, loras=(), **kw) -> GenerationRequest:
    return GenerationRequest.create(
        model=str(model),
        prompt="a red circle",
        steps=3,
        guidance_scale=3.5,
        width=64,
        height=64,
        scheduler="Euler",
        seed=5,
        loras=loras,
        **kw,
    )


@pytest.mark.parametrize("arch", ["flux-dev", "sd35-medium"])
def test_lora_formats_weight_zero_and_one(engine, tiny_flow, tmp_path, arch):
    from studio.testing_flow import save_tiny_flow_lora

    model = tiny_flow(arch).model
    base = engine.generate(_req(model)).images[0]
    at_one = {}
    for fmt in ("kohya", "bfl", "diffusers"):
        path = save_tiny_flow_lora(tmp_path / f"{arch}-{fmt}.safetensors", arch, fmt)
        assert identify_file(path).arch == ("flux" if arch.startswith("flux") else "sd3")
        ref = LoraRef(name=path.stem, path=str(path), weight=1.0)
        one = engine.generate(_req(model, (ref,)))
        zero = engine.generate(_req(model, (ref.model_copy(update={"weight": 0.0}),))).images[0]
        assert np.array_equal(zero, base)
        assert not np.array_equal(one.images[0], base)
        assert one.extra["loras"][0]["name"] == path.stem
        at_one[fmt] = one.images[0]
    assert np.array_equal(at_one["kohya"], at_one["bfl"]) and np.array_equal(at_one["bfl"], at_one["diffusers"])
    assert np.array_equal(engine.generate(_req(model)).images[0], base)  # no LoRA asked: off again


def test_flux_lora_on_sd3_is_refused(engine, tiny_flow, tmp_path):
    from studio.testing_flow import save_tiny_flow_lora

    path = save_tiny_flow_lora(tmp_path / "flux.safetensors", "flux-dev", "kohya")
    with pytest.raises(PluginFailed, match="another"):
        engine.generate(_req(tiny_flow("sd3-medium").model, (LoraRef(name="flux", path=str(path)),)))
