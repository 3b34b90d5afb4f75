"""Prompt text → the embeddings a pipeline is called with, as A1111 makes them.

The text is read by studio.core.prompts (extra-network tags out, the schedule of prompt editing
and alternation, emphasis, BREAK, 75-token chunks, embedding names); here each chunk goes through
the pipeline's CLIP text encoder(s) — start token, 75 tokens, end token, padding — and:

- emphasis multiplies each token's output vector by its weight, then the chunk is scaled so its
  mean is what it was (A1111's "Original" emphasis), so `(word:1.0)` is exactly `word`;
- chunks are joined side by side; the prompt and the negative prompt are padded to the same
  number of chunks with the encoding of an empty chunk (A1111's "pad prompt/negative prompt");
- a textual-inversion embedding's vectors replace the token embeddings at its positions, through
  a forward hook on the encoder's token-embedding layer for that call only (the cached pipeline's
  tokenizer and text encoder are never changed);
- SDXL: both encoders read the same chunks and their outputs are joined per token; the pooled
  embedding comes from the second encoder's first chunk.

Which hidden layer is read follows diffusers' own `encode_prompt` exactly (last layer, or
`clip_skip` more layers back then the final layer norm for SD 1/2; the penultimate layer for
SDXL), including that it reads the negative prompt without clip skip, so a plain prompt of up to
75 tokens gives the very tensors diffusers' `prompt=` path gave and every recipe made before
this module reproduces bit for bit. An empty SDXL negative prompt is zeros, as diffusers makes it
when its config says `force_zeros_for_empty_prompt`.
"""

from __future__ import annotations

import inspect
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from studio.core.errors import InvalidRequest
from studio.core.prompts import chunks as chunking
from studio.core.prompts import syntax
from studio.engine.guidance import tensor_inputs
from studio.engine.steps import StepCallback

CHUNK_POSITIONS = chunking.CHUNK_TOKENS + 2


@dataclass
class Tower:
    """One CLIP text encoder of a pipeline, and how the pipeline reads it."""

    tokenizer: Any
    encoder: Any
    xl: bool  # SDXL's encoders: penultimate layer, no final norm
    pooled: bool  # this encoder's projected output is the pooled embedding

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        return [list(ids) for ids in self.tokenizer(texts, truncation=False, add_special_tokens=False).input_ids]

    @property
    def comma_id(self) -> int | None:
        return self.tokenizer.get_vocab().get(",</w>")

    @property
    def width(self) -> int:
        return int(self.encoder.config.hidden_size)


def towers(pipe) -> list[Tower] | None:
    """The pipeline's CLIP towers in the order their outputs are joined; None when the pipeline has
    no CLIP text encoder whose embeddings it takes (then it is called with the prompt text)."""
    params = inspect.signature(pipe.__call__).parameters
    if "prompt_embeds" not in params:
        return None
    if getattr(pipe, "text_encoder_3", None) is not None or getattr(pipe, "transformer", None) is not None:
        return None  # SD 3 / FLUX: their own encoders (T5 beside CLIP), read by the pipeline
    te, te2 = getattr(pipe, "text_encoder", None), getattr(pipe, "text_encoder_2", None)
    tok, tok2 = getattr(pipe, "tokenizer", None), getattr(pipe, "tokenizer_2", None)
    xl = te2 is not None or "pooled_prompt_embeds" in params
    out: list[Tower] = []
    if te is not None and tok is not None:
        out.append(Tower(tok, te, xl, pooled=False))
    if te2 is not None and tok2 is not None:
        out.append(Tower(tok2, te2, True, pooled=True))
    if not out or not all(_is_clip(t.encoder) for t in out) or (xl and not out[-1].pooled):
        return None
    return out


def _is_clip(encoder) -> bool:
    return "CLIPText" in type(encoder).__name__


@dataclass
class Encoded:
    """One text through every tower: [1, tokens, width] and, for SDXL, the pooled [1, width2]."""

    embeds: torch.Tensor
    pooled: torch.Tensor | None = None
    chunks: int = 1


@dataclass
class Schedule:
    """A prompt's conditioning per sampling step: entry i conditions the 0-based steps up to ends[i]."""

    ends: list[int]
    encoded: list[Encoded]

    def index(self, step: int) -> int:
        for i, end in enumerate(self.ends):
            if step <= end:
                return i
        return 0

    def at(self, step: int) -> Encoded:
        return self.encoded[self.index(step)]


@dataclass
class Conditioning:
    """The prompt's and the negative prompt's schedules, padded to one length."""

    positive: Schedule
    negative: Schedule
    embeddings_used: dict[str, str] = field(default_factory=dict)  # name -> file path
    xl: bool = False

    @property
    def edits(self) -> bool:
        """Whether the conditioning changes during sampling (prompt editing or alternation)."""
        return len(self.positive.ends) > 1 or len(self.negative.ends) > 1

    def pipe_kwargs(self, step: int) -> dict[str, torch.Tensor]:
        """The embedding arguments of the pipeline call for a run whose first step is `step`."""
        pos, neg = self.positive.at(step), self.negative.at(step)
        out = {"prompt_embeds": pos.embeds, "negative_prompt_embeds": neg.embeds}
        if self.xl:
            out.update(pooled_prompt_embeds=pos.pooled, negative_pooled_prompt_embeds=neg.pooled)
        return out

    def changes_at(self, step: int) -> bool:
        """Whether step `step` is conditioned differently from step `step - 1`."""
        return step > 0 and any(s.index(step) != s.index(step - 1) for s in (self.positive, self.negative))

    def update(self, kwargs: dict[str, Any], step: int, both_positive: bool = False) -> dict[str, Any]:
        """A step callback's inputs with the conditioning of the next step, `step`, put in: in the
        shape the loop holds them now (negative and positive side by side while guidance is on,
        the positive alone after the fast guidance cut, the positive twice after the other one)."""
        n = kwargs["latents"].shape[0]
        pos, neg = self.positive.at(step), self.negative.at(step)
        if neg is pos or both_positive:
            neg = pos

        def fit(now, negative, positive):
            if now is None:
                return now
            halves = now.shape[0] // n
            pos_rep = positive.repeat(n, *[1] * (positive.ndim - 1)).to(now.device, now.dtype)
            if halves == 1:
                return pos_rep
            return torch.cat([negative.repeat(n, *[1] * (negative.ndim - 1)).to(now.device, now.dtype), pos_rep])

        out = dict(kwargs)
        if "prompt_embeds" in out:
            out["prompt_embeds"] = fit(out["prompt_embeds"], neg.embeds, pos.embeds)
        if self.xl and "add_text_embeds" in out:
            out["add_text_embeds"] = fit(out["add_text_embeds"], neg.pooled, pos.pooled)
        return out


class PromptEncoder:
    """Encodes for one pipeline; `embeddings` maps a name to {tensor name: vectors} already loaded."""

    def __init__(
        self, pipe, tws: list[Tower], embeddings: dict[str, dict[str, torch.Tensor]] | None = None, clip_skip: int = 0
    ) -> None:
        self.pipe = pipe
        self.towers = tws
        self.clip_skip = clip_skip or None
        for tw in tws:
            layers = int(tw.encoder.config.num_hidden_layers)
            if clip_skip and clip_skip > layers - (1 if tw.xl else 0):
                raise InvalidRequest(
                    f"Clip skip {clip_skip} goes past the first layer of this model's text encoder ({layers} layers).",
                    "Lower the clip skip.",
                )
        self.xl = tws[-1].pooled
        per_tower = {n: _per_tower(v, tws) for n, v in (embeddings or {}).items()}
        self.vectors = {n: v for n, v in per_tower.items() if v is not None}
        counts = {n: int(v[0].shape[0]) for n, v in self.vectors.items()}
        self.index = chunking.EmbeddingIndex.build(counts, tws[0].tokenize) if counts else None
        self.used: dict[str, int] = {}
        self.device = getattr(pipe, "_execution_device", None) or tws[0].encoder.device
        self.dtype = tws[-1].encoder.dtype if self.xl else (tws[0].encoder.dtype)

    # -- whole prompts ---------------------------------------------------------------------------------
    def conditioning(self, prompt: str, negative: str, steps: int) -> Conditioning:
        pos = self.schedule(prompt, steps, negative=False)
        if self.xl and not negative.strip() and getattr(self.pipe.config, "force_zeros_for_empty_prompt", False):
            neg = Schedule(
                [steps],
                [
                    Encoded(
                        torch.zeros_like(pos.encoded[0].embeds[:, :CHUNK_POSITIONS]),
                        torch.zeros_like(pos.encoded[0].pooled),
                        1,
                    )
                ],
            )
        else:
            neg = self.schedule(negative, steps, negative=True)
        longest = max(e.chunks for s in (pos, neg) for e in s.encoded)
        for s, is_neg in ((pos, False), (neg, True)):
            s.encoded = [self.pad(e, longest, is_neg) for e in s.encoded]
        return Conditioning(pos, neg, xl=self.xl)

    def schedule(self, text: str, steps: int, *, negative: bool) -> Schedule:
        plain, _ = syntax.extra_networks(text)
        entries = syntax.schedule(plain, steps)
        cache: dict[str, Encoded] = {}
        encoded = []
        for _, step_text in entries:
            if step_text not in cache:
                cache[step_text] = self.encode(step_text, negative=negative)
            encoded.append(cache[step_text])
        return Schedule([end for end, _ in entries], encoded)

    def pad(self, e: Encoded, chunks: int, negative: bool) -> Encoded:
        if e.chunks >= chunks:
            return e
        if not e.embeds.any():  # the zeros of an empty SDXL negative prompt
            filler = torch.zeros_like(e.embeds[:, :CHUNK_POSITIONS])
        else:
            filler = self.encode("", negative=negative).embeds
        embeds = torch.cat([e.embeds, *[filler] * (chunks - e.chunks)], dim=1)
        return Encoded(embeds, e.pooled, chunks)

    # -- one text --------------------------------------------------------------------------------------
    def encode(self, text: str, *, negative: bool) -> Encoded:
        cs, _ = chunking.text_chunks(
            text, self.towers[0].tokenize, comma_id=self.towers[0].comma_id, embeddings=self.index
        )
        per_chunk, pooled = [], None
        for n, chunk in enumerate(cs):
            outs = []
            for tw in self.towers:
                z, p = self._encode_chunk(tw, chunk, negative)
                outs.append(z)
                if tw.pooled and n == 0:
                    pooled = p
            per_chunk.append(torch.cat(outs, dim=-1) if len(outs) > 1 else outs[0])
            for _, name in chunk.embeddings:
                self.used[name] = 1
        embeds = torch.cat(per_chunk, dim=1) if len(per_chunk) > 1 else per_chunk[0]
        embeds = embeds.to(dtype=self.dtype, device=self.device)
        if pooled is not None:
            pooled = pooled.to(dtype=self.dtype, device=self.device)
        return Encoded(embeds, pooled, len(cs))

    def _ids(self, tw: Tower, chunk: chunking.Chunk) -> tuple[torch.Tensor, torch.Tensor]:
        tok = tw.tokenizer
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        ids = [tok.bos_token_id, *chunk.tokens, tok.eos_token_id]
        mask = [1] * len(ids) + [0] * (CHUNK_POSITIONS - len(ids))
        ids += [pad] * (CHUNK_POSITIONS - len(ids))
        return torch.tensor([ids]), torch.tensor([mask])

    def _encode_chunk(self, tw: Tower, chunk: chunking.Chunk, negative: bool) -> tuple[torch.Tensor, Any]:
        ids, mask = self._ids(tw, chunk)
        enc = tw.encoder
        device = _execution_device(enc, self.device)
        use_mask = getattr(enc.config, "use_attention_mask", False)
        kwargs: dict[str, Any] = {"attention_mask": mask.to(device) if use_mask else None}
        tower_no = self.towers.index(tw)
        fixes = [(offset, self.vectors[name][tower_no]) for offset, name in chunk.embeddings]
        with torch.no_grad(), _embedding_hook(enc, fixes):
            if tw.xl:
                out = enc(ids.to(device), output_hidden_states=True)
                layer = -2 if negative or self.clip_skip is None else -(self.clip_skip + 2)
                z = out.hidden_states[layer]
                pooled = out[0] if tw.pooled and out[0].ndim == 2 else None
            elif negative or self.clip_skip is None:
                out = enc(ids.to(device), **kwargs)
                z, pooled = out[0], None
            else:
                out = enc(ids.to(device), output_hidden_states=True, **kwargs)
                norm = getattr(enc, "text_model", enc).final_layer_norm  # transformers 5 has no .text_model
                z = norm(out[-1][-(self.clip_skip + 1)])
                pooled = None
        weights = chunk.weights
        if any(w != 1.0 for w in weights):
            mult = torch.tensor(
                [1.0, *weights, *[1.0] * (CHUNK_POSITIONS - 1 - len(weights))], device=z.device, dtype=z.dtype
            )
            original = z.mean()
            z = z * mult.reshape(1, -1, 1)
            z = z * (original / z.mean())
        return z, pooled

    def embeddings_used(self) -> list[str]:
        return list(self.used)


class PromptSchedule(StepCallback):
    """A step callback: when prompt editing or alternation conditions the next step differently, the
    loop's prompt embeddings (and SDXL's pooled ones) become that step's, in the shape guidance end
    left them (runs after studio.engine.steps.GuidanceCutoff)."""

    def __init__(self, pipe, cond: Conditioning, clock, cutoff) -> None:
        super().__init__()
        self.cond, self.clock, self.cutoff = cond, clock, cutoff
        self.tensor_inputs = tensor_inputs(pipe)

    def callback_fn(self, pipeline, step_index, timestep, callback_kwargs) -> dict[str, Any]:
        step = self.clock.done  # whole steps done: the 0-based index of the next one
        if self.clock.whole and self.cond.changes_at(step):
            return self.cond.update(callback_kwargs, step, both_positive=self.cutoff.both_positive)
        return callback_kwargs


def conditioning_for(
    pipe, request, prompt: str, negative: str, steps: int, library, flow: bool = False
) -> tuple[Conditioning | None, dict]:
    """The prompt's and negative prompt's embeddings per step for one run (`prompt`: after the plugins
    took out their syntax), and {name: SHA-256} of the textual-inversion embeddings used (`library`: a
    studio.engine.embeddings.EmbeddingLibrary); (None, {}) for a pipeline that is called with the text
    (a flow-matching family, whose T5 and CLIP encoders its pipeline reads)."""
    from studio.engine.embeddings import hashes

    tws = None if flow else towers(pipe)
    if tws is None:
        return None, {}
    files = library.named_in(prompt, negative)
    encoder = PromptEncoder(pipe, tws, library.load(files), clip_skip=request.clip_skip)
    with torch.inference_mode():
        cond = encoder.conditioning(prompt, negative, steps)
    return cond, hashes(files, encoder.embeddings_used())


def _per_tower(tensors: dict[str, torch.Tensor], tws: list[Tower]) -> list[torch.Tensor] | None:
    """An embedding's vectors for each tower, matched by width (None: it is for another model)."""
    if len(tws) == 2 and set(tensors) >= {"clip_l", "clip_g"}:
        picks = [tensors["clip_l"], tensors["clip_g"]]
    elif len(tws) == 1 and len(tensors) == 1:
        picks = [next(iter(tensors.values()))]
    else:
        return None
    picks = [t if t.ndim == 2 else t.reshape(1, -1) for t in picks]
    if any(t.shape[1] != tw.width for t, tw in zip(picks, tws)) or len({t.shape[0] for t in picks}) != 1:
        return None
    return picks


def _execution_device(encoder, fallback):
    try:
        from diffusers.utils.torch_utils import get_module_execution_device

        return get_module_execution_device(encoder)
    except (ImportError, AttributeError):
        return fallback


@contextmanager
def _embedding_hook(encoder, fixes: list[tuple[int, torch.Tensor]]):
    """Put embedding vectors in place of the placeholder tokens' embeddings for one call."""
    if not fixes:
        yield
        return
    layer = encoder.get_input_embeddings()

    def hook(_module, _inputs, output):
        output = output.clone()
        for offset, vec in fixes:
            output[:, offset + 1 : offset + 1 + vec.shape[0]] = vec.to(output.device, output.dtype)
        return output

    handle = layer.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
