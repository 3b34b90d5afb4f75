"""The A1111 prompt language through the engine (studio.engine.prompt_encoder) on tiny pipelines:
the same tensors and pixels as diffusers' own prompt path for plain prompts, emphasis with A1111's
mean-restoring normalisation, 75-token chunks for SD 1.x and both SDXL encoders, prompt editing
changing the conditioning mid-run (with guidance end and branching), and its limits."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import studio.engine.prompt_encoder as encoder_mod
from studio.core.errors import InvalidRequest
from studio.core.prompts import chunks, syntax
from studio.core.request import BranchRef, GenerationRequest
from studio.engine.prompt_encoder import CHUNK_POSITIONS, PromptEncoder, towers
from studio.testing import tiny_pipeline

PLAIN = "a red circle, on a blue background"
LONG = ", ".join(f"a small shape number {i} in a corner" for i in range(14))  # ~112 CLIP tokens


def _req(path, **kw):
    base = dict(model=str(path), prompt=PLAIN, steps=4, width=64, height=64, seed=3, scheduler="Euler", preview="none")
    base.update(kw)
    return GenerationRequest.create(**base)


@pytest.fixture(scope="module")
def pipes():
    return {arch: tiny_pipeline(arch) for arch in ("sd15", "sd2", "sdxl")}


def _encode(pipe, prompt, negative="", steps=10, clip_skip=0, embeddings=None):
    with torch.no_grad():
        return PromptEncoder(pipe, towers(pipe), embeddings, clip_skip=clip_skip).conditioning(prompt, negative, steps)


# -- the same as diffusers for what it could read ---------------------------------------------------------


@pytest.mark.parametrize("arch", ["sd15", "sd2", "sdxl"])
@pytest.mark.parametrize("negative", ["", "blurry, ugly"])
def test_plain_prompts_give_diffusers_own_tensors(pipes, arch, negative):
    pipe = pipes[arch]
    mine = _encode(pipe, PLAIN, negative).pipe_kwargs(0)
    with torch.no_grad():
        ref = pipe.encode_prompt(
            prompt=PLAIN,
            negative_prompt=negative or None,
            device="cpu",
            num_images_per_prompt=1,
            do_classifier_free_guidance=True,
        )
    names = ["prompt_embeds", "negative_prompt_embeds", "pooled_prompt_embeds", "negative_pooled_prompt_embeds"]
    for r, name in zip(ref, names):
        assert torch.equal(r, mine[name]), name


@pytest.mark.parametrize("arch", ["sd15", "sd2", "sdxl"])
def test_clip_skip_reads_the_layer_diffusers_reads(pipes, arch):
    pipe = pipes[arch]
    mine = _encode(pipe, PLAIN, "blurry", clip_skip=1).pipe_kwargs(0)
    if arch == "sdxl":
        with torch.no_grad():
            ref = pipe.encode_prompt(
                prompt=PLAIN,
                negative_prompt="blurry",
                device="cpu",
                num_images_per_prompt=1,
                do_classifier_free_guidance=True,
                clip_skip=1,
            )
        assert all(torch.equal(r, mine[n]) for r, n in zip(ref, mine))
        return
    # diffusers' SD 1/2 clip-skip path: the hidden state 1 + clip_skip from the end, then the final layer
    # norm (diffusers 0.42 looks for `.text_model`, which transformers 5 no longer has: computed here);
    # the negative prompt is read at the last layer, as diffusers does.
    te, tok = pipe.text_encoder, pipe.tokenizer
    ids = tok(PLAIN, padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    neg = tok("blurry", padding="max_length", max_length=77, truncation=True, return_tensors="pt").input_ids
    with torch.no_grad():
        ref = te.final_layer_norm(te(ids, output_hidden_states=True)[-1][-2])
        ref_neg = te(neg)[0]
    assert torch.equal(ref, mine["prompt_embeds"]) and torch.equal(ref_neg, mine["negative_prompt_embeds"])


@pytest.mark.parametrize("arch", ["sd15", "sd2", "sdxl"])
def test_plain_prompts_draw_the_pixels_diffusers_prompt_path_drew(engine, tiny_models, monkeypatch, arch):
    """Every recipe made before the prompt language existed reproduces bit for bit."""
    path = tiny_models(arch, "diffusers")
    reqs = [_req(path, negative_prompt="blurry", batch_size=2), _req(path, scheduler="DPM++ 2M", guidance_end=0.5)]
    if arch == "sdxl":
        reqs.append(_req(path, clip_skip=1))
    new = [engine.generate(r).images for r in reqs]
    monkeypatch.setattr(encoder_mod, "towers", lambda pipe: None)  # the engine's old path: pipe(prompt=…)
    old = [engine.generate(r).images for r in reqs]
    for a, b in zip(new, old):
        assert all(np.array_equal(x, y) for x, y in zip(a, b))


# -- emphasis -------------------------------------------------------------------------------------------------


def test_weight_one_is_the_plain_word_and_other_weights_are_not(engine, tiny_sd15):
    plain = engine.generate(_req(tiny_sd15, prompt="a red circle")).images[0]
    assert np.array_equal(engine.generate(_req(tiny_sd15, prompt="a (red:1.0) circle")).images[0], plain)
    assert not np.array_equal(engine.generate(_req(tiny_sd15, prompt="a (red:1.6) circle")).images[0], plain)


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_emphasis_multiplies_token_outputs_and_restores_the_mean(pipes, arch):
    pipe = pipes[arch]
    weighted = _encode(pipe, "a (red:1.5) [circle]").positive.at(0).embeds
    plain = _encode(pipe, "a red circle").positive.at(0).embeds
    mult = torch.ones(CHUNK_POSITIONS)
    mult[2], mult[3] = 1.5, 1 / 1.1  # start token, "a", "red", "circle"
    if arch == "sdxl":  # each encoder's output is weighted and normalised on its own
        w1 = pipe.text_encoder.config.hidden_size
        parts = [plain[..., :w1], plain[..., w1:]]
    else:
        parts = [plain]
    expected = []
    for z in parts:
        scaled = z * mult.reshape(1, -1, 1)
        expected.append(scaled * (z.mean() / scaled.mean()))
    assert torch.allclose(weighted, torch.cat(expected, dim=-1), atol=1e-6)
    assert not torch.allclose(weighted, plain)


# -- chunks ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_long_prompts_are_encoded_in_75_token_chunks(pipes, arch):
    pipe = pipes[arch]
    n = len(pipe.tokenizer(LONG, add_special_tokens=False).input_ids)
    assert 100 < n <= 150
    cond = _encode(pipe, LONG, "blurry")
    embeds, neg = cond.positive.at(0).embeds, cond.negative.at(0).embeds
    assert embeds.shape[1] == 2 * CHUNK_POSITIONS and neg.shape == embeds.shape  # the negative is padded
    # each chunk is its tokens on their own between a start and an end token; the negative's second
    # chunk is an empty one
    cs, count = chunks.text_chunks(
        LONG,
        lambda t: pipe.tokenizer(t, add_special_tokens=False).input_ids,
        comma_id=pipe.tokenizer.get_vocab()[",</w>"],
    )
    assert len(cs) == 2 and sum(len(c.tokens) for c in cs) == n and count == 75 + len(cs[1].tokens)
    for i, c in enumerate(cs):
        assert torch.equal(embeds[:, i * CHUNK_POSITIONS : (i + 1) * CHUNK_POSITIONS], _by_hand(pipe, c.tokens))
    empty = _encode(pipe, "", "").negative.at(0).embeds
    if arch == "sdxl":  # an empty SDXL negative is zeros (force_zeros_for_empty_prompt): compare the encoded ""
        empty = PromptEncoder(pipe, towers(pipe)).encode("", negative=True).embeds
    assert torch.equal(neg[:, CHUNK_POSITIONS:], empty)
    # BREAK starts a new chunk
    broken = _encode(pipe, "a red circle BREAK on a blue background").positive.at(0).embeds
    assert broken.shape[1] == 2 * CHUNK_POSITIONS


@pytest.mark.parametrize("arch", ["sd15", "sdxl"])
def test_a_long_prompt_generates_and_its_last_words_count(engine, tiny_models, arch):
    path = tiny_models(arch, "diffusers")
    a = engine.generate(_req(path, prompt=LONG + ", a green square", negative_prompt="blurry")).images[0]
    b = engine.generate(_req(path, prompt=LONG + ", a yellow star", negative_prompt="blurry")).images[0]
    assert not np.array_equal(a, b)


def _by_hand(pipe, tokens):
    """One chunk through the text encoder(s) the way diffusers reads a prompt (no clip skip)."""
    outs = []
    for tok, te in (
        (pipe.tokenizer, pipe.text_encoder),
        (getattr(pipe, "tokenizer_2", None), getattr(pipe, "text_encoder_2", None)),
    ):
        if te is None:
            continue
        ids = [tok.bos_token_id, *tokens, tok.eos_token_id]
        ids = torch.tensor([ids + [tok.pad_token_id] * (CHUNK_POSITIONS - len(ids))])
        with torch.no_grad():
            out = te(ids, output_hidden_states=True)
        outs.append(out.hidden_states[-2] if hasattr(pipe, "text_encoder_2") else out[0])
    return torch.cat(outs, dim=-1)


# -- prompt editing -------------------------------------------------------------------------------------------


def _unet_conditions(pipe):
    seen: list[torch.Tensor] = []

    def hook(_m, args, kwargs):
        seen.append(kwargs.get("encoder_hidden_states", args[2] if len(args) > 2 else None).detach().clone())

    return seen, pipe.unet.register_forward_pre_hook(hook, with_kwargs=True)


@pytest.mark.parametrize(("guidance_end", "branch"), [(1.0, 0), (0.5, 0), (1.0, 2)])
def test_prompt_editing_changes_the_conditioning_at_its_step(engine, tiny_sd15, guidance_end, branch):
    prompt, steps = "a [red circle:blue square:2] on grey", 6
    req = _req(tiny_sd15, prompt=prompt, steps=steps, guidance_end=guidance_end)
    lm = engine.load(str(tiny_sd15))
    parent = None
    if branch:
        previews = []
        engine.generate(req.replace(preview="latent2rgb"), on_step=previews.append)
        parent = previews[branch - 1].latent
        req = req.replace(branch=BranchRef(parent_id="p", step=branch))
    seen, handle = _unet_conditions(lm.pipe)
    try:
        engine.generate(req, branch_latent=parent)
    finally:
        handle.remove()
    texts = dict(syntax.schedule(prompt, steps))
    assert list(texts.values()) == ["a red circle on grey", "a blue square on grey"]
    expect = {t: _encode(lm.pipe, t).positive.at(0).embeds for t in texts.values()}
    assert len(seen) == steps - branch
    for n, cond in enumerate(seen, start=branch):
        want = expect[syntax.text_at(list(texts.items()), n)]
        assert torch.equal(cond[-1:], want), n  # the positive half (or the only one after guidance ends)
        guided = n < round(guidance_end * steps)
        assert cond.shape[0] == (2 if guided else 1)


def test_alternation_switches_every_step(engine, tiny_sd15):
    lm = engine.load(str(tiny_sd15))
    seen, handle = _unet_conditions(lm.pipe)
    try:
        engine.generate(_req(tiny_sd15, prompt="a [red|blue] circle", steps=5))
    finally:
        handle.remove()
    red, blue = (_encode(lm.pipe, f"a {c} circle").positive.at(0).embeds for c in ("red", "blue"))
    got = ["red" if torch.equal(c[-1:], red) else "blue" if torch.equal(c[-1:], blue) else "?" for c in seen]
    assert got == ["red", "red", "blue", "red", "blue"]  # A1111's order (0-based step s: first entry with s ≤ end)


def test_second_order_samplers_count_whole_steps(engine, tiny_sd15):
    for sampler in ("Heun", "DPM2", "DPM++ SDE", "PLMS"):
        previews = []
        res = engine.generate(
            _req(tiny_sd15, scheduler=sampler, steps=4, preview="latent2rgb"), on_step=previews.append
        )
        assert [p.step for p in previews] == [1, 2, 3, 4] and res.steps_done == 4, sampler


# -- limits -----------------------------------------------------------------------------------------------------


def test_unbalanced_brackets_are_read_not_refused(engine, tiny_sd15):
    for prompt in ("a (red circle", "a [red:blue circle", "a red) circle]", "a [red|blue circle", "(((", "\\"):
        assert engine.generate(_req(tiny_sd15, prompt=prompt, steps=2)).status == "done"


def test_clip_skip_past_the_encoder_says_so(engine, tiny_models):
    with pytest.raises(InvalidRequest, match="Clip skip 3"):
        engine.generate(_req(tiny_models("sd15", "diffusers"), clip_skip=3))


def test_the_demo_model_reads_weights_and_long_prompts(engine):
    """The bundled demo model (its own CLIP text encoder, 77 positions): (red:1.0) draws the pixels of
    red, (red:1.6) another picture, and a prompt of ~120 tokens generates with its last words counting."""
    from studio.core.paths import demo_model_dir

    tok = engine.load("demo").pipe.tokenizer
    assert tok.model_max_length == 77 and len(tok) == 49408 and demo_model_dir().is_dir()

    def draw(prompt):
        req = GenerationRequest.create(model="demo", prompt=prompt, steps=6, width=128, height=128, seed=5,
                                       scheduler="DPM++ 2M", guidance_end=0.5, preview="none")  # fmt: skip
        return engine.generate(req).images[0]

    red = draw("a red circle at the top left on a blue background")
    assert np.array_equal(draw("a (red:1.0) circle at the top left on a blue background"), red)
    assert not np.array_equal(draw("a (red:1.6) circle at the top left on a blue background"), red)
    long = "a red circle at the top left on a blue background, " + ", ".join(["flat colours, clean edges"] * 18)
    assert 110 <= len(tok(long + ", a green square").input_ids) - 2 <= 140
    assert not np.array_equal(draw(long + ", a green square"), draw(long + ", a yellow triangle"))
