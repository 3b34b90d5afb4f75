"""LoRAs as users have them: kohya's SDXL layout with the original UNet's block names, LyCORIS LoCon,
the kinds the studio refuses (by name), the A1111 text's `<lora:…>` tag and "addnet" hashes, and
reading that text back applying each LoRA once."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from studio.core.metadata import read_metadata, recipe, write_png
from studio.core.metadata.png import PARAMETERS_KEY, REQUEST_KEY, XMP_KEY
from studio.core.metadata.readers import interpret
from studio.core.request import GenerationRequest, LoraRef
from studio.engine.engine import Engine
from studio.engine.plugins import PluginFailed
from studio.testing import save_tiny_lora


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("lora-formats")
    return {
        "sgm": save_tiny_lora(d / "xl_sgm.safetensors", "sdxl", "kohya-sgm", seed=5),
        "xl_peft": save_tiny_lora(d / "xl_peft.safetensors", "sdxl", "peft", seed=5),
        "locon": save_tiny_lora(d / "locon.safetensors", "sd15", "kohya", seed=6, conv=True),
        "plain": save_tiny_lora(d / "plain.safetensors", "sd15", "kohya", seed=6),
    }


@pytest.fixture(scope="module")
def eng(files):
    e = Engine(device="cpu")
    e.plugins.get("lora").folders = [next(iter(files.values())).parent]
    return e


def _req(model, **kw):
    base = dict(
        model=str(model), prompt="a cat", steps=3, width=64, height=64, seed=1, scheduler="Euler", preview="none"
    )
    return GenerationRequest.create(**{**base, **kw})


def test_kohya_sdxl_original_block_names_load_and_act(eng, tiny_models, files):
    """A UNet-only SDXL kohya file (lora_unet_input_blocks_…) was refused; it loads, changes the image at
    weight 1 and not at 0, and acts exactly as the same weights in diffusers' layout."""
    xl = tiny_models("sdxl", "diffusers")
    base = eng.generate(_req(xl)).images[0]
    zero = eng.generate(_req(xl, loras=(LoraRef(name="xl_sgm", weight=0.0),))).images[0]
    one = eng.generate(_req(xl, loras=(LoraRef(name="xl_sgm", weight=1.0),))).images[0]
    same = eng.generate(_req(xl, loras=(LoraRef(name="xl_peft", weight=1.0),))).images[0]
    assert np.array_equal(zero, base) and not np.array_equal(one, base)
    assert np.array_equal(one, same)


def test_locon_loads_and_adapts_the_convolutions(eng, tiny_sd15):
    base = eng.generate(_req(tiny_sd15)).images[0]
    locon = eng.generate(_req(tiny_sd15, prompt="a cat <lora:locon:1>")).images[0]
    plain = eng.generate(_req(tiny_sd15, prompt="a cat <lora:plain:1>")).images[0]
    assert not np.array_equal(locon, base) and not np.array_equal(locon, plain)


@pytest.mark.parametrize(
    ("suffixes", "kind"),
    [
        ((".hada_w1_a", ".hada_w1_b", ".hada_w2_a", ".hada_w2_b"), "LoHa"),
        ((".lokr_w1", ".lokr_w2"), "LoKr"),
        ((".oft_blocks",), "OFT"),
    ],
)
def test_lycoris_kinds_it_cannot_load_are_refused_by_name(eng, tiny_sd15, tmp_path, suffixes, kind):
    import torch
    from safetensors.torch import save_file

    base = "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn1_to_q"
    tensors = {f"{base}{s}.weight" if s.startswith(".lokr") else f"{base}{s}": torch.ones(4, 4) for s in suffixes}
    tensors[f"{base}.alpha"] = torch.tensor(4.0)
    path = tmp_path / f"lyco_{kind.lower()}.safetensors"
    save_file(tensors, str(path))
    with pytest.raises(PluginFailed, match=f"LyCORIS {kind}"):
        eng.generate(_req(tiny_sd15, loras=(LoraRef(name="x", path=str(path)),)))


def addnet(path) -> str:
    """A1111's addnet hash, computed here independently: SHA-256 of the bytes after the header."""
    data = path.read_bytes()
    return hashlib.sha256(data[8 + int.from_bytes(data[:8], "little") :]).hexdigest()


def test_a1111_text_tags_each_lora_and_reads_back_applying_it_once(eng, tiny_sd15, files, tmp_path):
    req = _req(tiny_sd15, prompt="a cat <lora:plain:0.5>", loras=(LoraRef(name="locon", weight=0.7),))
    res = eng.generate(req)
    info = {k: res.extra[k] for k in ("lora_hashes", "lora_addnet_hashes") if k in res.extra}
    path = write_png(tmp_path / "out.png", res.images[0], req, info)
    text = read_metadata(path).raw[PARAMETERS_KEY]
    prompt_line = text.split("\n")[0]
    assert prompt_line == "<lora:locon:0.7> a cat <lora:plain:0.5>"
    from studio.core.metadata import infotext

    hashes = infotext.parse_hash_list(infotext.parse(text)[2]["Lora hashes"])
    assert hashes == {"plain": addnet(files["plain"])[:12], "locon": addnet(files["locon"])[:12]}
    assert addnet(files["plain"]) != hashlib.sha256(files["plain"].read_bytes()).hexdigest()
    assert not any(set(h) == {"0"} for h in hashes.values())
    # Read back from the A1111 text alone (as from A1111 or a model site): the tags apply the LoRAs, once.
    texts = {k: v for k, v in read_metadata(path).raw.items() if k not in (REQUEST_KEY, XMP_KEY)}
    back = interpret(texts).request
    assert back is not None and back.loras == () and back.prompt == prompt_line
    again = eng.generate(back.replace(model=str(tiny_sd15), preview="none"))
    assert np.array_equal(again.images[0], res.images[0])
    assert recipe.a1111_prompt(back) == prompt_line


def test_a_lora_named_twice_is_applied_once(eng, tiny_sd15):
    once = eng.generate(_req(tiny_sd15, prompt="a cat <lora:plain:0.5>")).images[0]
    twice = eng.generate(_req(tiny_sd15, prompt="a cat <lora:plain:0.5>", loras=(LoraRef(name="plain", weight=0.5),)))
    assert np.array_equal(twice.images[0], once) and any("named twice" in n for n in twice.extra.get("notes", []))
