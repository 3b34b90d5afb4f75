"""ControlNet plugin on tiny models, and the offline preprocessors (HED with its real weights)."""

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

from studio.cli import main
from studio.core.request import ControlNetRef, GenerationRequest, ImageRef
from studio.engine.plugins import PluginFailed
from studio.testing import save_tiny_controlnet


@pytest.fixture(scope="module")
def cn(tmp_path_factory):
    d = tmp_path_factory.mktemp("controlnet")
    img = np.zeros((64, 64, 3), np.uint8)
    img[16:48, 16:48] = 255
    Image.fromarray(img).save(d / "control.png")
    m = np.zeros((64, 64), np.uint8)
    m[20:40, 20:40] = 255
    Image.fromarray(m).save(d / "mask.png")
    return {
        "folder": save_tiny_controlnet(d / "cn-folder", seed=0),
        "file": save_tiny_controlnet(d / "cn.safetensors", fmt="single-file", seed=1),
        "xl": save_tiny_controlnet(d / "cn-xl", arch="sdxl"),
        "control": d / "control.png",
        "mask": d / "mask.png",
    }


def _unit(cn, model="folder", **kw):
    return ControlNetRef(
        model=str(cn[model]), image=ImageRef(path=str(cn["control"])), **{"preprocessor": "canny", **kw}
    )


def _req(model, **kw):
    return GenerationRequest.create(
        **{**dict(model=str(model), prompt="a cat", steps=4, width=64, height=64, seed=1, scheduler="Euler"), **kw}
    )


def test_weight_zero_is_the_base_and_units_steer(engine, tiny_sd15, cn):
    base = engine.generate(_req(tiny_sd15)).images[0]
    zero = engine.generate(_req(tiny_sd15, controlnets=(_unit(cn, weight=0.0),))).images[0]
    one = engine.generate(_req(tiny_sd15, controlnets=(_unit(cn),))).images[0]
    assert np.array_equal(zero, base) and not np.array_equal(one, base)
    assert np.array_equal(engine.generate(_req(tiny_sd15)).images[0], base)  # no unit: the plain pipeline again


def test_multi_controlnet_with_start_end_in_every_mode(engine, tiny_sd15, cn):
    units = (_unit(cn), _unit(cn, "file", preprocessor="hed", weight=0.7, start=0.25, end=0.75))
    single = engine.generate(_req(tiny_sd15, controlnets=units[:1])).images[0]
    multi = engine.generate(_req(tiny_sd15, controlnets=units))
    assert multi.status == "done" and not np.array_equal(multi.images[0], single)
    assert [u["preprocessor"] for u in multi.extra["controlnets"]] == ["canny", "hed"]
    init = ImageRef(path=str(cn["control"]))
    for extra in (dict(init_image=init, strength=0.6), dict(init_image=init, mask=ImageRef(path=str(cn["mask"])))):
        assert engine.generate(_req(tiny_sd15, controlnets=units, **extra)).images[0].shape == (64, 64, 3)


def test_inpainting_checkpoint_with_controlnet(engine, tiny_models, cn):
    res = engine.generate(
        _req(
            tiny_models("sd15-inpaint"),
            controlnets=(_unit(cn),),
            init_image=ImageRef(path=str(cn["control"])),
            mask=ImageRef(path=str(cn["mask"])),
        )
    )
    assert res.status == "done"


def test_bad_units_are_refused_clearly(engine, tiny_sd15, cn, tmp_path):
    with pytest.raises(PluginFailed, match="another model architecture"):
        engine.generate(_req(tiny_sd15, controlnets=(_unit(cn, "xl"),)))
    with pytest.raises(PluginFailed, match="not found"):
        engine.generate(
            _req(
                tiny_sd15,
                controlnets=(ControlNetRef(model=str(tmp_path / "none"), image=ImageRef(path=str(cn["control"]))),),
            )
        )
    with pytest.raises(PluginFailed, match="end"):
        engine.generate(_req(tiny_sd15, controlnets=(_unit(cn, start=0.5, end=0.5),)))
    with pytest.raises(PluginFailed, match="unknown preprocessor"):
        engine.generate(_req(tiny_sd15, controlnets=(_unit(cn, preprocessor="depth-from-the-hub"),)))
    assert engine.generate(_req(tiny_sd15)).status == "done"


def test_hed_edges_lie_on_the_photo_edges():
    from studio_plugins.controlnet.hed import hed_edges

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:160, 0:224]
    photo = np.stack([40 + xx * 0.3, 60 + yy * 0.2, 80 + 0 * xx], -1)  # a smooth gradient …
    photo[40:120, 60:170] = [220, 180, 60]  # … with one object on it …
    photo = (photo + rng.normal(0, 4, photo.shape)).clip(0, 255).astype(np.uint8)  # … and sensor noise
    edges = hed_edges(photo)[..., 0]
    truth = np.zeros(edges.shape, bool)
    truth[40, 60:170] = truth[119, 60:170] = truth[40:120, 60] = truth[40:120, 169] = True
    near = sliding_window_view(np.pad(truth, 3), (7, 7)).max(axis=(-1, -2))
    strongest = edges >= np.quantile(edges, 0.97)
    assert (strongest & near).sum() / strongest.sum() > 0.9
    assert edges[near].mean() > 4 * edges[~near].mean()


def test_cli_controlnet_and_preprocess(tiny_sd15, cn, tmp_path, capsys):
    out = tmp_path / "c.png"
    assert (
        main(
            [
                "generate",
                "--model",
                str(tiny_sd15),
                "--prompt",
                "x",
                "--steps",
                "2",
                "--size",
                "64x64",
                "--no-gallery",
                "--controlnet",
                f"{cn['folder']}:{cn['control']}:canny:1.0:0.0:0.8",
                "--guess-mode",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert main(["preprocess", "canny", str(cn["control"]), "--out", str(tmp_path / "edges.png")]) == 0
    edges = np.asarray(Image.open(tmp_path / "edges.png"))
    assert (
        edges[14:18, 30].max() == 255 and edges[:10, :10].max() == 0 and edges[24:40, 24:40].max() == 0
    )  # the square's border, not its surroundings
    assert main(["preprocess", "--list", "x"]) == 0 and "hed" in capsys.readouterr().out
    assert (
        main(
            [
                "generate",
                "--model",
                str(tiny_sd15),
                "--prompt",
                "x",
                "--no-gallery",
                "--controlnet",
                "m:img",
                "--out",
                str(out),
            ]
        )
        == 2
    )


def test_controlnet_aux_detectors_are_offered_and_explain_missing_weights(monkeypatch):
    """With controlnet-aux installed (faked here: the lean install has no torchvision), its offline
    detectors run and the hub-weight ones say clearly that their weights are missing."""
    import sys
    import types

    from PIL import Image as PILImage

    from studio.plugin_api import PluginError
    from studio_plugins.controlnet import preprocessors

    fake = types.ModuleType("controlnet_aux")

    class Shuffle:
        def __call__(self, img):
            return PILImage.fromarray(np.asarray(img)[::-1].copy())

    class NeedsHub:
        @classmethod
        def from_pretrained(cls, repo):
            raise OSError(f"cannot reach the hub for {repo}")

    fake.ContentShuffleDetector = fake.LineartStandardDetector = Shuffle
    for cls_name in preprocessors.HUB_DETECTORS.values():
        setattr(fake, cls_name, NeedsHub)
    monkeypatch.setitem(sys.modules, "controlnet_aux", fake)
    procs = preprocessors.available()
    assert {"shuffle", "lineart_standard", "openpose", "depth_midas"} <= set(procs)
    img = np.zeros((8, 8, 3), np.uint8)
    img[0] = 255
    assert procs["shuffle"](img)[-1].min() == 255
    with pytest.raises(PluginError, match="needs its weights from the Hugging Face Hub"):
        procs["openpose"](img)
