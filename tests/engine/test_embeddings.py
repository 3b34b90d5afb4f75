"""Textual-inversion embeddings: A1111/kohya SD 1.x files (`emb_params`, `string_to_param`) and SDXL
files (`clip_l` + `clip_g`) found in an embeddings folder and used by name or `embedding:name`; their
vectors take the name's place; unknown names are words; pickles are refused; the cached pipeline is
left as it was; "TI hashes" in the A1111 text."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from studio.core import embeddings as core_embeddings
from studio.core.metadata import infotext, recipe
from studio.core.request import GenerationRequest
from studio.engine.engine import Engine
from studio.engine.prompt_encoder import PromptEncoder, towers


def _emb(path, tensors):
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path))
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("embeddings")
    g = torch.Generator().manual_seed(0)
    _emb(d / "shinystyle.safetensors", {"emb_params": torch.randn(3, 64, generator=g)})
    (d / "sub").mkdir()
    _emb(d / "sub" / "oldstyle.safetensors", {"string_to_param.*": torch.randn(2, 64, generator=g)})
    _emb(
        d / "xlstyle.safetensors",
        {"clip_l": torch.randn(2, 64, generator=g), "clip_g": torch.randn(2, 128, generator=g)},
    )
    (d / "pickled.pt").write_bytes(b"\x80\x04not really a pickle")
    return d


@pytest.fixture(scope="module")
def eng(folder):
    e = Engine(device="cpu")
    e.embeddings.folders = [folder]
    return e


def _req(model, **kw):
    base = dict(
        model=str(model), prompt="a cat", steps=3, width=64, height=64, seed=2, scheduler="Euler", preview="none"
    )
    return GenerationRequest.create(**{**base, **kw})


def test_files_are_read_from_their_headers(folder):
    found, skipped = core_embeddings.find([folder])
    assert {n: (e.vectors, e.arch) for n, e in found.items()} == {
        "shinystyle": (3, ""), "oldstyle": (2, ""), "xlstyle": (2, "sdxl")}  # fmt: skip
    assert any("pickled.pt" in s and "pickle" in s for s in skipped)
    assert set(core_embeddings.for_widths(found, [64])) == {"shinystyle", "oldstyle"}
    assert set(core_embeddings.for_widths(found, [64, 128])) == {"xlstyle"}


@pytest.mark.parametrize(("arch", "name"), [("sd15", "shinystyle"), ("sd15", "oldstyle"), ("sdxl", "xlstyle")])
def test_an_embedding_named_in_the_prompt_changes_the_picture(eng, tiny_models, arch, name):
    model = tiny_models(arch, "diffusers")
    plain = eng.generate(_req(model, prompt="a cat")).images[0]
    used = eng.generate(_req(model, prompt=f"a cat, {name}"))
    comfy = eng.generate(_req(model, prompt=f"a cat, embedding:{name}"))
    assert not np.array_equal(used.images[0], plain)
    assert np.array_equal(comfy.images[0], used.images[0])
    sha = hashlib.sha256(next(eng.embeddings.folders[0].rglob(f"{name}.safetensors")).read_bytes()).hexdigest()
    assert used.extra["ti_hashes"] == {name: sha}
    text = recipe.a1111_infotext(used.request, {"ti_hashes": used.extra["ti_hashes"]})
    assert infotext.parse_hash_list(infotext.parse(text)[2]["TI hashes"]) == {name: sha[:12]}


def test_vectors_replace_the_names_tokens(eng, tiny_sd15, folder):
    pipe = eng.load(str(tiny_sd15)).pipe
    vectors = {"shinystyle": {"emb_params": torch.randn(3, 64, generator=torch.Generator().manual_seed(9))}}
    enc = PromptEncoder(pipe, towers(pipe), vectors)
    seen = []
    layer = pipe.text_encoder.get_input_embeddings()  # the token embeddings, seen after the studio's hook
    handle = pipe.text_encoder.embeddings.register_forward_hook(lambda m, i, o: seen.append(o.clone()))
    try:
        with torch.no_grad():
            enc.encode("a shinystyle cat", negative=False)
            position = pipe.text_encoder.embeddings.position_embedding.weight[2:5]
    finally:
        handle.remove()
    vec = vectors["shinystyle"]["emb_params"]
    assert torch.allclose(seen[-1][0, 2:5], vec + position)  # after the start token and "a"
    assert len(layer._forward_hooks) == 0
    assert enc.embeddings_used() == ["shinystyle"]


def test_unknown_names_and_other_models_embeddings_are_words(eng, tiny_sd15):
    plain = eng.generate(_req(tiny_sd15, prompt="a cat, nosuchstyle"))
    as_words = eng.generate(_req(tiny_sd15, prompt="a cat, embedding:nosuchstyle"))
    assert "ti_hashes" not in plain.extra and "ti_hashes" not in as_words.extra
    assert not np.array_equal(plain.images[0], as_words.images[0])  # "embedding:" stays text, as in A1111
    xl_on_sd15 = eng.generate(_req(tiny_sd15, prompt="a cat, xlstyle"))  # an SDXL embedding on an SD 1.x model
    assert "ti_hashes" not in xl_on_sd15.extra


def test_the_cached_pipeline_is_left_unchanged(eng, tiny_sd15):
    pipe = eng.load(str(tiny_sd15)).pipe
    before = (len(pipe.tokenizer), pipe.text_encoder.get_input_embeddings().weight.clone())
    hooks = len(pipe.text_encoder.get_input_embeddings()._forward_hooks)
    plain = eng.generate(_req(tiny_sd15, prompt="a cat")).images[0]
    eng.generate(_req(tiny_sd15, prompt="a cat, shinystyle"))
    assert len(pipe.tokenizer) == before[0] and torch.equal(pipe.text_encoder.get_input_embeddings().weight, before[1])
    assert len(pipe.text_encoder.get_input_embeddings()._forward_hooks) == hooks
    assert np.array_equal(eng.generate(_req(tiny_sd15, prompt="a cat")).images[0], plain)
