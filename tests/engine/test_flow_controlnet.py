"""FLUX.1 ControlNet (diffusers' FluxControlNetModel, and Union) through the ControlNet plugin."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from studio.core.request import ControlNetRef, GenerationRequest, ImageRef
from studio.engine.plugins import PluginFailed


@pytest.fixture(scope="module")
def control_image(tmp_path_factory):
    path = tmp_path_factory.mktemp("flux-cn") / "edges.png"
    img = np.zeros((64, 64, 3), np.uint8)
    img[16:48, 16:48] = 255
    Image.fromarray(img).save(path)
    return ImageRef(path=str(path))


def _req(model, units=()) -> GenerationRequest:
    return GenerationRequest.create(
        model=str(model),
        prompt="a red square",
        steps=3,
        guidance_scale=3.5,
        width=64,
        height=64,
        scheduler="Euler",
        seed=2,
        controlnets=units,
    )


@pytest.mark.parametrize("union", [False, True])
def test_flux_controlnet_steers_and_weight_zero_is_base(engine, tiny_flow, tmp_path, control_image, union):
    from studio.testing_flow import save_tiny_flux_controlnet

    cn = save_tiny_flux_controlnet(tmp_path / ("union" if union else "cn"), union=union)
    model = tiny_flow("flux-dev").model
    base = engine.generate(_req(model)).images[0]
    unit = ControlNetRef(model=str(cn), image=control_image, preprocessor="canny" if union else "none", weight=1.0)
    steered = engine.generate(_req(model, (unit,)))
    assert steered.status == "done" and not np.array_equal(steered.images[0], base)
    assert steered.extra["controlnets"][0]["model"] == cn.name
    zero = engine.generate(_req(model, (unit.model_copy(update={"weight": 0.0}),))).images[0]
    assert np.abs(zero.astype(int) - base).max() <= 1


def test_sd_controlnet_on_flux_is_refused(engine, tiny_flow, tiny_models, tmp_path, control_image):
    from studio.testing import save_tiny_controlnet

    sd_cn = save_tiny_controlnet(tmp_path / "sd-cn", "sd15")
    with pytest.raises(PluginFailed, match="not made for this FLUX"):
        engine.generate(_req(tiny_flow("flux-dev").model, (ControlNetRef(model=str(sd_cn), image=control_image),)))
