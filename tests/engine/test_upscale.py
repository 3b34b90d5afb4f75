"""Upscaler models: architecture from the header, the nets against independent references, tiles that
blend without seams, `studio upscale` end to end (gallery kind and parent), refusals with one line."""

import json
import threading

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file, save_file

from studio.cli import main
from studio.core import upscalers
from studio.core.catalogue import scan
from studio.engine.devices import choose_device
from studio.engine.upscale import Upscalers, run_upscale, upscale_image
from studio.testing import save_tiny_upscaler, tiny_upscaler_state

CPU = choose_device("cpu", None)


def _image(h=40, w=56, seed=0):
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, w)[None, :, None] * np.ones((h, 1, 3))
    return (base * 0.7 + rng.random((h, w, 3)) * 70).clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("upscalers")
    out = {}
    for kind, scale in [
        ("compact", 4),
        ("compact", 2),
        ("rrdb", 4),
        ("rrdb", 2),
        ("rrdb", 1),
        ("esrgan", 4),
        ("esrgan", 1),
    ]:
        out[kind, scale] = save_tiny_upscaler(d / f"{kind}-x{scale}.safetensors", kind, scale)
    return out


@pytest.mark.parametrize(
    "kind,scale,arch",
    [
        ("compact", 4, "SRVGGNetCompact"),
        ("compact", 2, "SRVGGNetCompact"),
        ("rrdb", 4, "RRDBNet"),
        ("rrdb", 2, "RRDBNet"),
        ("rrdb", 1, "RRDBNet"),
        ("esrgan", 4, "RRDBNet"),
        ("esrgan", 1, "RRDBNet"),
    ],
)
def test_architecture_and_scale_from_the_header(files, kind, scale, arch):
    info = upscalers.read(files[kind, scale])
    assert (info.arch, info.scale, info.in_channels, info.out_channels) == (arch, scale, 3, 3)
    _, net = Upscalers().get(files[kind, scale], CPU)
    out = upscale_image(net, info, _image(), CPU, tile=0)
    assert out.shape == (40 * scale, 56 * scale, 3) and out.dtype == np.uint8


def test_released_compact_layout_full_size(tmp_path):
    """realesr-general-x4v3's layout: 64 features, 32 convs (body.0 … body.66), PReLU weights,
    fp16, saved under BasicSR's `params` prefix."""
    g = torch.Generator().manual_seed(1)
    state = {"params.body.0.weight": torch.randn(64, 3, 3, 3, generator=g) * 0.1, "params.body.0.bias": torch.zeros(64)}
    for i in range(1, 66, 2):
        state[f"params.body.{i}.weight"] = torch.full((64,), 0.25)
        if i + 1 < 66:
            state[f"params.body.{i + 1}.weight"] = torch.randn(64, 64, 3, 3, generator=g) * 0.02
            state[f"params.body.{i + 1}.bias"] = torch.zeros(64)
    state["params.body.66.weight"] = torch.randn(48, 64, 3, 3, generator=g) * 0.02
    state["params.body.66.bias"] = torch.zeros(48)
    path = tmp_path / "realesr-general-x4v3.safetensors"
    save_file({k: v.half().contiguous() for k, v in state.items()}, str(path))
    info = upscalers.read(path)
    assert (info.arch, info.scale, info.params["num_conv"], info.params["num_feat"]) == ("SRVGGNetCompact", 4, 32, 64)
    _, net = Upscalers().get(path, CPU)
    assert upscale_image(net, info, _image(16, 16), CPU).shape == (64, 64, 3)


def _compact_reference(state, x, scale):
    """SRVGGNetCompact written out with torch.nn.functional from the file's own names."""
    n = max(int(k.split(".")[1]) for k in state)
    out = x
    for i in range(0, n + 1):
        if f"body.{i}.bias" in state:
            out = F.conv2d(out, state[f"body.{i}.weight"], state[f"body.{i}.bias"], padding=1)
        else:
            out = F.prelu(out, state[f"body.{i}.weight"])
    return F.pixel_shuffle(out, scale) + F.interpolate(x, scale_factor=scale, mode="nearest")


def test_compact_net_matches_a_functional_reference(files):
    state = load_file(str(files["compact", 4]))
    info, net = Upscalers().get(files["compact", 4], CPU)
    x = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        assert torch.allclose(net(x), _compact_reference(state, x, 4), atol=1e-5)


def test_esrgan_and_real_esrgan_layouts_are_the_same_net(tmp_path):
    """The original ESRGAN keys renamed by hand onto Real-ESRGAN's give the same pixels."""
    old = tiny_upscaler_state("esrgan", 4, seed=3)
    new = {}
    for k, v in old.items():
        parts = k.split(".")
        if k.startswith("model.1.sub.") and "RDB" in k:
            new[f"body.{parts[3]}.rdb{parts[4][3]}.{parts[5]}.{parts[7]}"] = v
        elif k.startswith("model.1.sub."):
            new[f"conv_body.{parts[-1]}"] = v
        else:
            name = {"0": "conv_first", "3": "conv_up1", "6": "conv_up2", "8": "conv_hr", "10": "conv_last"}[parts[1]]
            new[f"{name}.{parts[-1]}"] = v
    save_file(old, str(tmp_path / "old.safetensors"))
    save_file(new, str(tmp_path / "new.safetensors"))
    cache, image = Upscalers(), _image()
    a = upscale_image(*cache.get(tmp_path / "old.safetensors", CPU)[::-1], image, CPU, tile=0)
    info, net = cache.get(tmp_path / "new.safetensors", CPU)
    assert info.layout == "real-esrgan"
    assert np.array_equal(a, upscale_image(net, info, image, CPU, tile=0))


@pytest.mark.parametrize("kind,scale", [("compact", 4), ("rrdb", 2), ("esrgan", 4)])
def test_tiled_equals_untiled(files, kind, scale):
    info, net = Upscalers().get(files[kind, scale], CPU)
    image = _image(150, 130, seed=2)
    whole = upscale_image(net, info, image, CPU, tile=0)
    seen = []
    tiled = upscale_image(net, info, image, CPU, tile=72, on_tile=lambda d, t, p: seen.append((d, t, p.shape)))
    assert len(seen) == 9 and seen[-1][:2] == (9, 9)  # 3 × 3 tiles, each reported with a preview
    diff = np.abs(whole.astype(int) - tiled.astype(int))
    assert diff.max() <= 3 and diff.mean() < 0.05, (diff.max(), diff.mean())


def test_scales_other_than_the_nets_own(files):
    info, net = Upscalers().get(files["compact", 2], CPU)
    image = _image(20, 30)
    assert upscale_image(net, info, image, CPU, scale=1.5).shape == (30, 45, 3)  # one pass, resized
    seen = []
    out = upscale_image(net, info, image, CPU, scale=3, on_tile=lambda d, t, p: seen.append((d, t)))
    assert out.shape == (60, 90, 3) and seen == [(1, 2), (2, 2)]  # ×2 twice, then down to ×3


def test_cancel_between_tiles(files, tmp_path):
    src = tmp_path / "src.png"
    Image.fromarray(_image(150, 150)).save(src)
    request = upscalers.upscale_request(src, files["compact", 4], tile=72)
    cancel = threading.Event()
    steps = []

    def on_step(p):
        steps.append(p.step)
        cancel.set()

    result = run_upscale(Upscalers(), CPU, request, on_step, cancel)
    assert result.cancelled and result.images == [] and steps == [1] and result.total_steps == 9


def test_cli_upscale_records_an_upscale_of_its_parent(files, tiny_sd15, tmp_path, capsys):
    lib, first = tmp_path / "lib", tmp_path / "gen.png"
    assert main(["generate", "--model", str(tiny_sd15), "--prompt", "a red circle", "--steps", "2",
                 "--size", "64x64", "--seed", "3", "--out", str(first), "--library", str(lib)]) == 0  # fmt: skip
    out = tmp_path / "big.png"
    rc = main(
        ["upscale", str(first), "--model", str(files["compact", 4]), "--out", str(out), "--library", str(lib), "--json"]
    )
    assert rc == 0
    summary = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert summary["size"] == [256, 256] and summary["upscaler"] == "Real-ESRGAN compact ×4"
    assert Image.open(out).size == (256, 256)
    text = Image.open(out).text["parameters"]
    assert "a red circle" in text and "Postprocess upscaler: compact-x4" in text and "Postprocess upscale by: 4" in text
    from studio.core.gallery import Gallery
    from studio.core.metadata import read_metadata

    with Gallery(lib) as g:
        items = g.query()
        up = next(i for i in items if i.kind == "upscale")
        parent = next(i for i in items if i.kind == "txt2img")
        assert up.parent_id == parent.id and (up.width, up.height) == (256, 256) and up.prompt == "a red circle"
        assert len(g.query(kind="upscale")) == 1
    req = read_metadata(out).request
    assert req.kind == "upscale" and req.upscale.scale == 4 and req.seed == 3 and req.model == str(tiny_sd15)
    assert "Upscaled ×4 to 256×256" in up.describe()


def test_cli_upscale_a_plain_photo_at_another_scale(files, tmp_path):
    src = tmp_path / "photo.jpg"
    Image.fromarray(_image(30, 50)).save(src)
    out = tmp_path / "o.png"
    assert (
        main(["upscale", str(src), "--model", str(files["rrdb", 2]), "--scale", "3", "--out", str(out), "--no-gallery"])
        == 0
    )
    assert Image.open(out).size == (150, 90)


def test_cli_refusals_are_one_line(files, tmp_path, capsys):
    src = tmp_path / "s.png"
    Image.fromarray(_image()).save(src)
    torch.save({"body.0.weight": torch.zeros(1)}, tmp_path / "model.pth")
    swinir = tmp_path / "swinir.safetensors"
    save_file({"conv_first.weight": torch.zeros(8, 3, 3, 3), "patch_embed.norm.weight": torch.zeros(8),
               "layers.0.residual_group.blocks.0.norm1.weight": torch.zeros(8)}, str(swinir))  # fmt: skip
    lora = tmp_path / "lora.safetensors"
    save_file({"lora_unet_x.lora_down.weight": torch.zeros(2, 2)}, str(lora))
    cases = [
        (tmp_path / "model.pth", "pickled"),
        (swinir, "SwinIR upscaler; this architecture is not supported yet"),
        (lora, "not an upscaler model"),
        (tmp_path / "missing.safetensors", "not found"),
    ]
    for model, words in cases:
        assert main(["upscale", str(src), "--model", str(model), "--out", str(tmp_path / "x.png"), "--no-gallery"]) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and "\n" not in err and "Traceback" not in err
    assert (
        main(
            [
                "upscale",
                str(tmp_path / "nope.png"),
                "--model",
                str(files["compact", 4]),
                "--out",
                str(tmp_path / "x.png"),
            ]
        )
        == 2
    )
    assert "not found" in capsys.readouterr().err


def test_models_scan_lists_upscalers(files, tmp_path):
    import shutil

    d = tmp_path / "ESRGAN"
    d.mkdir()
    shutil.copy(files["compact", 4], d / "realesr-general-x4v3.safetensors")
    shutil.copy(files["esrgan", 4], d / "4x-UltraSharp.safetensors")
    save_file({"conv_first.weight": torch.zeros(8, 3, 3, 3), "layers.0.residual_group.blocks.0.conv_block.cab.0.weight":
               torch.zeros(8, 8, 3, 3)}, str(d / "hat.safetensors"))  # fmt: skip
    found = {e.path.rsplit("/", 1)[1]: e for e in scan(d)}
    assert (found["realesr-general-x4v3.safetensors"].kind, found["realesr-general-x4v3.safetensors"].arch) == (
        "upscaler",
        "SRVGGNetCompact",
    )
    assert found["4x-UltraSharp.safetensors"].variant == "×4" and found["4x-UltraSharp.safetensors"].usable
    hat = found["hat.safetensors"]
    assert hat.kind == "upscaler" and not hat.usable and "HAT" in hat.reason
