"""Plugin host (discovery, failure isolation) and the LoRA plugin on tiny models."""

import sys
import textwrap

import numpy as np
import pytest

from studio.cli import main
from studio.core.request import GenerationRequest, LoraRef
from studio.engine.engine import Engine
from studio.engine.plugins import PluginFailed, PluginHost
from studio.plugin_api import PluginManifest
from studio.testing import save_tiny_lora


@pytest.fixture(scope="module")
def loras(tmp_path_factory):
    d = tmp_path_factory.mktemp("loras")
    return {
        "peft": save_tiny_lora(d / "lib" / "peftstyle.safetensors", "sd15", "peft", seed=1),
        "kohya": save_tiny_lora(d / "lib" / "kohyastyle.safetensors", "sd15", "kohya", seed=2),
        "xl": save_tiny_lora(d / "xlstyle.safetensors", "sdxl", "peft", seed=3),
    }


@pytest.fixture(scope="module")
def eng(loras):
    e = Engine(device="cpu")
    e.plugins.get("lora").folders = [loras["peft"].parent]
    return e


def _req(model, **kw):
    return GenerationRequest.create(
        **{**dict(model=str(model), prompt="a cat", steps=3, width=64, height=64, seed=1), **kw}
    )


def test_weight_zero_is_the_base_image_and_weights_change_it(eng, tiny_sd15):
    base = eng.generate(_req(tiny_sd15)).images[0]
    zero = eng.generate(_req(tiny_sd15, loras=(LoraRef(name="peftstyle", weight=0.0),))).images[0]
    one = eng.generate(_req(tiny_sd15, loras=(LoraRef(name="peftstyle", weight=1.0),)))
    half = eng.generate(_req(tiny_sd15, loras=(LoraRef(name="peftstyle", weight=0.5),))).images[0]
    assert np.array_equal(zero, base)
    assert not np.array_equal(one.images[0], base) and not np.array_equal(half, one.images[0])
    assert len(one.extra["lora_hashes"]["peftstyle"]) == 64
    assert np.array_equal(eng.generate(_req(tiny_sd15)).images[0], base)  # no LoRA: the base again


def test_kohya_format_and_prompt_syntax(eng, tiny_sd15, loras):
    base = eng.generate(_req(tiny_sd15)).images[0]
    tagged = eng.generate(_req(tiny_sd15, prompt="a cat <lora:kohyastyle:0.8>"))
    by_ref = eng.generate(_req(tiny_sd15, loras=(LoraRef(name="k", path=str(loras["kohya"]), weight=0.8),)))
    assert not np.array_equal(tagged.images[0], base)
    assert np.array_equal(tagged.images[0], by_ref.images[0])  # the tag is stripped before encoding
    assert tagged.request.prompt == "a cat <lora:kohyastyle:0.8>"  # … and kept in the recipe


def test_swapping_loras_keeps_the_base_model(eng, tiny_sd15):
    first = eng.load(str(tiny_sd15)).pipe
    loads = eng.cache.loads
    for name in ("peftstyle", "kohyastyle", "peftstyle"):
        eng.generate(_req(tiny_sd15, loras=(LoraRef(name=name, weight=1.0),)))
    assert eng.load(str(tiny_sd15)).pipe is first and eng.cache.loads == loads


def test_wrong_architecture_is_refused_clearly(eng, tiny_sd15, loras):
    with pytest.raises(PluginFailed, match="another model architecture"):
        eng.generate(_req(tiny_sd15, loras=(LoraRef(name="xl", path=str(loras["xl"])),)))
    with pytest.raises(PluginFailed, match="not found"):
        eng.generate(_req(tiny_sd15, loras=(LoraRef(name="nope"),)))
    assert eng.generate(_req(tiny_sd15)).status == "done"  # the plugin stays usable


def test_cli_lora_flag(tiny_sd15, loras, tmp_path):
    out = tmp_path / "l.png"
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
                "--lora",
                f"{loras['peft']}:0.7",
                "--library",
                str(tmp_path / "lib"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    from PIL import Image

    assert "peftstyle" in Image.open(out).text["parameters"]  # Lora hashes in the A1111 text
    assert (
        main(
            [
                "generate",
                "--model",
                str(tiny_sd15),
                "--prompt",
                "x",
                "--no-gallery",
                "--lora",
                "x.safetensors:9",
                "--out",
                str(out),
            ]
        )
        == 2
    )


class _Raises:
    manifest = PluginManifest(name="raiser", version="0")

    def prepare(self, ctx):
        raise RuntimeError("boom")


@pytest.mark.parametrize("mode", ["fail", "skip"])
def test_a_plugin_that_raises_is_disabled(tiny_sd15, mode):
    host = PluginHost(on_error=mode)
    host.add(_Raises())
    eng = Engine(device="cpu", plugins=host)
    if mode == "fail":
        with pytest.raises(PluginFailed, match="raiser plugin failed"):
            eng.generate(_req(tiny_sd15))
    else:
        res = eng.generate(_req(tiny_sd15))
        assert res.status == "done" and "went on without it" in res.extra["notes"][0]
    assert host.records["raiser"].status == "failed" and "boom" in host.records["raiser"].error
    assert eng.generate(_req(tiny_sd15)).status == "done"  # disabled, so the next run is clean


def test_broken_third_party_plugin_via_entry_point(tmp_path, tiny_sd15, monkeypatch):
    site = tmp_path / "site"
    (site / "broken_plugin").mkdir(parents=True)
    (site / "broken_plugin" / "__init__.py").write_text("raise ImportError('missing dependency: frobnicate')\n")
    (site / "good_plugin.py").write_text(
        textwrap.dedent("""
        from studio.plugin_api import PluginManifest
        class Good:
            manifest = PluginManifest(name="good", version="1.2", contributes=("prepare",))
            def prepare(self, ctx):
                ctx.metadata["good"] = True
        PLUGIN = Good()
    """)
    )
    dist = site / "studio_test_plugins-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: studio-test-plugins\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(
        "[studio.plugins]\nbroken = broken_plugin:PLUGIN\ngood = good_plugin:PLUGIN\n"
    )
    monkeypatch.syspath_prepend(str(site))
    user = tmp_path / "user-plugins" / "mine"
    user.mkdir(parents=True)
    (user / "__init__.py").write_text("raise SyntaxError('half-written plugin')\n")
    host = PluginHost()
    host.discover(user_dir=tmp_path / "user-plugins")
    recs = host.records
    assert recs["broken"].status == "failed" and "frobnicate" in recs["broken"].error
    assert recs["mine"].status == "failed" and recs["mine"].source == "user"
    assert recs["good"].status == "enabled" and recs["lora"].status == "enabled"
    res = Engine(device="cpu", plugins=host).generate(_req(tiny_sd15))  # the app keeps working
    assert res.status == "done" and res.extra["good"] is True
    sys.modules.pop("good_plugin", None)


class _Tagger:
    manifest = PluginManifest(name="tagger", version="1", contributes=("parameters",))

    def parameters(self, request):
        return {"Tagger": "on, with a comma"}


def test_plugin_parameters_reach_the_a1111_text(tiny_sd15, tmp_path):
    from PIL import Image

    from studio.core.gallery import record_result
    from studio.core.metadata.infotext import parse

    host = PluginHost()
    host.add(_Tagger())
    res = Engine(device="cpu", plugins=host).generate(_req(tiny_sd15))
    item = record_result(res, library=tmp_path / "lib")[0]
    text = Image.open(item.path).text["parameters"]
    assert parse(text)[2]["Tagger"] == "on, with a comma"
