"""IP-Adapter plugin on tiny random weights in the released layout (image_proj.*, ip_adapter.N.to_k_ip …)
and a tiny CLIPVisionModelWithProjection: weight 0 gives the base image, weight 1 another; the shared
UNet is put back after every run; several images, start/end, plus adapters, SDXL, hires fix; refusals
with one message; the images round-trip through the recipe by SHA-256."""

import re

import numpy as np
import pytest
from PIL import Image

from studio.core.errors import StudioError
from studio.core.hashing import sha256_file
from studio.core.metadata import read_metadata, write_png
from studio.core.request import GenerationRequest
from studio.testing import save_tiny_clip_vision, save_tiny_ip_adapter


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    d = tmp_path_factory.mktemp("ip")
    refs = []
    for i, colour in enumerate(((220, 30, 30), (30, 200, 60))):
        img = np.zeros((40, 56, 3), np.uint8) + np.array(colour, np.uint8)
        img[10:30, 10 + 10 * i : 30 + 10 * i] = 255 - np.array(colour)
        Image.fromarray(img).save(d / f"ref{i}.png")
        refs.append(d / f"ref{i}.png")
    return {
        "plain": save_tiny_ip_adapter(d / "ip-adapter_sd15.safetensors", "sd15", "plain"),
        "plus": save_tiny_ip_adapter(d / "ip-adapter-plus_sd15.safetensors", "sd15", "plus"),
        "xl": save_tiny_ip_adapter(d / "ip-adapter_sdxl.safetensors", "sdxl", "plain"),
        "encoder": save_tiny_clip_vision(d / "image_encoder"),
        "encoder_file": save_tiny_clip_vision(d / "clip_vision.safetensors", "single-file"),
        "wide_encoder": save_tiny_clip_vision(d / "wide_encoder", projection_dim=32),
        "refs": refs,
    }


def _req(model, **kw):
    fields = dict(model=str(model), prompt="a red circle", steps=3, width=64, height=64, seed=2, scheduler="Euler")
    return GenerationRequest.create(**{**fields, **kw})


def _units(kit, adapter="plain", weight=1.0, images=((0, 1.0),), encoder="encoder", **kw):
    imgs = [{"path": str(kit["refs"][i]), "sha256": sha256_file(kit["refs"][i]), "weight": w} for i, w in images]
    unit = {"model": str(kit[adapter]), "encoder": str(kit[encoder]), "images": imgs, "weight": weight, **kw}
    return {"ip_adapter": {"units": [unit]}}


def _diff(a, b) -> float:
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


def test_weight_0_is_the_base_image_weight_1_differs_and_the_unet_is_put_back(engine, tiny_sd15, kit):
    base = _req(tiny_sd15, guidance_end=0.5)  # guidance stops halfway: the fast path halves the batch
    plain = engine.generate(base).images[0]
    unet = engine.load(str(tiny_sd15)).pipe.unet
    before = {k: type(v) for k, v in unet.attn_processors.items()}
    zero = engine.generate(base.replace(plugins=_units(kit, weight=0.0)))
    assert np.array_equal(zero.images[0], plain)
    one = engine.generate(base.replace(plugins=_units(kit, weight=1.0)))
    assert _diff(one.images[0], plain) > 2
    assert one.extra["ip_adapters"][0]["images"][0]["sha256"] == sha256_file(kit["refs"][0])
    assert {k: type(v) for k, v in unet.attn_processors.items()} == before and unet.encoder_hid_proj is None
    assert not unet._forward_pre_hooks and np.array_equal(engine.generate(base).images[0], plain)
    same = engine.generate(base.replace(plugins=_units(kit, weight=1.0, encoder="encoder_file")))
    assert np.array_equal(same.images[0], one.images[0])  # the encoder as one file = as a folder


def test_images_weights_start_end_and_plus(engine, tiny_sd15, kit):
    base = _req(tiny_sd15, steps=4)
    outs = {
        "one": engine.generate(base.replace(plugins=_units(kit))).images[0],
        "two": engine.generate(base.replace(plugins=_units(kit, images=((0, 1.0), (1, 1.0))))).images[0],
        "two_half": engine.generate(base.replace(plugins=_units(kit, images=((0, 1.0), (1, 0.5))))).images[0],
        "late": engine.generate(base.replace(plugins=_units(kit, start=0.5, end=1.0))).images[0],
        "plus": engine.generate(base.replace(plugins=_units(kit, "plus"))).images[0],
        "base": engine.generate(base).images[0],
    }
    names = list(outs)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert _diff(outs[a], outs[b]) > 0.5, (a, b)
    none = engine.generate(base.replace(plugins=_units(kit, start=0.0, end=0.2))).images[0]  # acts on no step
    assert np.array_equal(none, outs["base"])


def test_sdxl_and_hires_fix(engine, tiny_models, kit):
    xl = tiny_models("sdxl", "diffusers")
    base = _req(xl)
    plain = engine.generate(base).images[0]
    assert np.array_equal(engine.generate(base.replace(plugins=_units(kit, "xl", weight=0.0))).images[0], plain)
    assert _diff(engine.generate(base.replace(plugins=_units(kit, "xl"))).images[0], plain) > 1
    hires = base.replace(hires={"scale": 1.5, "strength": 0.5}, plugins=_units(kit, "xl"))
    out = engine.generate(hires)
    assert out.images[0].shape == (96, 96, 3) and _diff(out.images[0][:64, :64], plain) > 1
    assert engine.load(str(xl)).pipe.unet.encoder_hid_proj is None


@pytest.mark.parametrize(
    "change,words",
    [
        (lambda k: _units(k, "xl"), "was made for a 192-wide model (17 cross-attention layers); this model has 16"),
        (
            lambda k: _units(k, encoder="wide_encoder"),
            "takes 48-wide image features; the encoder wide_encoder gives 32",
        ),
        (lambda k: _units(k, start=0.6, end=0.4), "start (0.6) must be before end (0.4)"),
        (lambda k: _units(k, weight=3.0), "weights go from 0 to 2"),
        (
            lambda k: {
                "ip_adapter": {"units": [{"model": str(k["plain"]), "encoder": str(k["encoder"]), "images": []}]}
            },
            "has no reference image",
        ),
        (
            lambda k: {"ip_adapter": {"units": [{**_units(k)["ip_adapter"]["units"][0], "model": "/no/ip.bin"}]}},
            "pickled",
        ),
        (
            lambda k: {
                "ip_adapter": {"units": [{**_units(k)["ip_adapter"]["units"][0], "encoder": str(k["refs"][0])}]}
            },
            "cannot be read",
        ),
    ],
)
def test_refusals_are_one_message(engine, tiny_sd15, kit, change, words):
    with pytest.raises(StudioError, match=re.escape(words)):
        engine.generate(_req(tiny_sd15).replace(plugins=change(kit)))
    assert engine.load(str(tiny_sd15)).pipe.unet.encoder_hid_proj is None  # nothing left behind
    assert engine.plugins.records["ip_adapter"].enabled


def test_the_images_round_trip_through_the_recipe(tmp_path, kit):
    req = _req("demo", plugins=_units(kit, images=((0, 1.0), (1, 0.5)), start=0.1, end=0.9))
    assert GenerationRequest.from_json(req.to_json()) == req
    path = write_png(
        tmp_path / "i.png",
        np.zeros((64, 64, 3), np.uint8),
        req,
        {"sign": False, "plugin_parameters": {"IP-Adapter 0": "Model: ip-adapter_sd15, Weight: 1"}},
    )
    meta = read_metadata(path)
    assert meta.request == req
    images = meta.request.plugins["ip_adapter"]["units"][0]["images"]
    assert [i["sha256"] for i in images] == [sha256_file(p) for p in kit["refs"]] and images[1]["weight"] == 0.5
    assert 'IP-Adapter 0: "Model: ip-adapter_sd15, Weight: 1"' in meta.raw["parameters"]
    from studio_plugins.ip_adapter import IPAdapterPlugin

    assert IPAdapterPlugin().parameters(req) == {
        "IP-Adapter 0": "Model: ip-adapter_sd15, Encoder: image_encoder, Weight: 1, Images: 2, "
        "Guidance Start: 0.1, Guidance End: 0.9"
    }


def test_models_scan_lists_ip_adapters_and_image_encoders(kit):
    from studio.core.catalogue import scan

    found = {e.path.rsplit("/", 1)[1]: e for e in scan(kit["plain"].parent)}
    assert (found["ip-adapter_sd15.safetensors"].kind, found["ip-adapter_sd15.safetensors"].arch) == ("IP-Adapter", "")
    assert found["ip-adapter-plus_sd15.safetensors"].variant == "plus"
    assert found["image_encoder"].kind == "image encoder" and found["clip_vision.safetensors"].kind == "image encoder"


def test_flow_models_leave_the_plugin_enabled_and_refuse_units(engine, tiny_flow, kit):
    """FLUX has a transformer, no UNet: a run without units does not disturb the plugin (its finish has
    nothing to undo); with units, one message."""
    model = tiny_flow("flux-dev").model
    flux = GenerationRequest.create(model=str(model), prompt="a red circle", steps=2, width=64, height=64, seed=1)
    engine.generate(flux)
    assert engine.plugins.records["ip_adapter"].enabled
    with pytest.raises(StudioError, match="IP-Adapters work with SD 1.x and SDXL models"):
        engine.generate(flux.replace(plugins=_units(kit)))
    assert engine.plugins.records["ip_adapter"].enabled
