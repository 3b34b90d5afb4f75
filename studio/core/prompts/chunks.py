"""A prompt's tokens in 75-token chunks, as A1111 lays them out (pure Python on token ids).

CLIP reads 77 positions: a start token, 75 tokens, an end token. A longer prompt is cut into
chunks of 75 that are encoded one by one and joined side by side (A1111's "infinite prompt"):

- `BREAK` ends the current chunk (the rest is padding);
- when a chunk fills up within 20 tokens after a comma, the words after that comma move to the
  next chunk (A1111's "prompt word wrap length limit", default 20);
- a textual-inversion embedding named in the prompt (its file name, or ComfyUI's
  `embedding:name`) takes as many positions as it has vectors and never straddles two chunks;
- every token carries its emphasis weight.

The engine encodes the chunks; the window's token counter counts with the same function, so the
two never disagree. Tokenizing is passed in (`tokenize(texts) -> ids`) to keep this torch-free.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from studio.core.prompts import syntax

CHUNK_TOKENS = 75  # what one 77-position CLIP window holds besides its start and end tokens
COMMA_BACKTRACK = 20  # A1111's default "prompt word wrap length limit"
PLACEHOLDER = 0  # the token id written where an embedding's vectors go (they replace its output)

Tokenize = Callable[[list[str]], list[list[int]]]
_COMFY_EMBEDDING = re.compile(r"embedding:([^\s,]+)")
_EMBEDDING_SUFFIX = re.compile(r"\.(safetensors|pt|bin)$", re.IGNORECASE)


@dataclass
class Chunk:
    tokens: list[int] = field(default_factory=list)  # up to 75 ids, without start/end/padding
    weights: list[float] = field(default_factory=list)
    embeddings: list[tuple[int, str]] = field(default_factory=list)  # (offset in tokens, name)


@dataclass(frozen=True)
class EmbeddingName:
    name: str
    ids: tuple[int, ...]  # the name's token ids: where these appear in a prompt, the embedding goes
    vectors: int


class EmbeddingIndex:
    """The embeddings a prompt may name, looked up by token ids as A1111 does (longest name first)."""

    def __init__(self, names: Sequence[EmbeddingName] = ()) -> None:
        self.by_name = {e.name: e for e in names}
        self._by_first: dict[int, list[EmbeddingName]] = {}
        for e in names:
            if e.ids:
                self._by_first.setdefault(e.ids[0], []).append(e)
        for group in self._by_first.values():
            group.sort(key=lambda e: len(e.ids), reverse=True)

    @classmethod
    def build(cls, vectors: Mapping[str, int], tokenize: Tokenize) -> EmbeddingIndex:
        names = sorted(vectors)
        ids = tokenize(names) if names else []
        return cls([EmbeddingName(n, tuple(i), vectors[n]) for n, i in zip(names, ids)])

    def __bool__(self) -> bool:
        return bool(self.by_name)

    def match(self, tokens: Sequence[int], pos: int) -> EmbeddingName | None:
        for e in self._by_first.get(tokens[pos], ()):
            if tuple(tokens[pos : pos + len(e.ids)]) == e.ids:
                return e
        return None

    def comfy_names(self, text: str) -> str:
        """ComfyUI's `embedding:name` (optionally with the file's suffix) as the bare name A1111 reads;
        an unknown name stays as written."""
        if "embedding:" not in text:
            return text

        def swap(m: re.Match[str]) -> str:
            name = _EMBEDDING_SUFFIX.sub("", m[1])
            return name if name in self.by_name else m[0]

        return _COMFY_EMBEDDING.sub(swap, text)


def make_chunks(
    fragments: Sequence[tuple[str, float]],
    token_ids: Sequence[Sequence[int]],
    *,
    comma_id: int | None,
    embeddings: EmbeddingIndex | None = None,
    backtrack: int = COMMA_BACKTRACK,
) -> tuple[list[Chunk], int]:
    """(chunks, token count) of emphasis fragments whose token ids are given (BREAKs included).

    The count is what A1111's counter shows: every chunk before the last counts 75, the last its
    own length (so a BREAK or a wrapped comma shows as used space)."""
    chunks: list[Chunk] = []
    chunk = Chunk()
    count = 0
    last_comma = -1

    def next_chunk(is_last: bool = False) -> None:
        nonlocal chunk, count, last_comma
        count += len(chunk.tokens) if is_last else CHUNK_TOKENS
        last_comma = -1
        chunks.append(chunk)
        chunk = Chunk()

    for (text, weight), tokens in zip(fragments, token_ids):
        if syntax.is_break((text, weight)):
            next_chunk()
            continue
        pos = 0
        while pos < len(tokens):
            token = tokens[pos]
            if token == comma_id:
                last_comma = len(chunk.tokens)
            elif (backtrack and len(chunk.tokens) == CHUNK_TOKENS and last_comma != -1
                  and len(chunk.tokens) - last_comma <= backtrack):  # fmt: skip
                cut = last_comma + 1
                moved = (
                    chunk.tokens[cut:],
                    chunk.weights[cut:],
                    [(o - cut, n) for o, n in chunk.embeddings if o >= cut],
                )
                chunk.tokens, chunk.weights = chunk.tokens[:cut], chunk.weights[:cut]
                chunk.embeddings = [(o, n) for o, n in chunk.embeddings if o < cut]
                next_chunk()
                chunk.tokens, chunk.weights, chunk.embeddings = list(moved[0]), list(moved[1]), moved[2]
            if len(chunk.tokens) == CHUNK_TOKENS:
                next_chunk()
            found = embeddings.match(tokens, pos) if embeddings else None
            if found is None:
                chunk.tokens.append(token)
                chunk.weights.append(weight)
                pos += 1
                continue
            if len(chunk.tokens) + found.vectors > CHUNK_TOKENS:
                next_chunk()
            chunk.embeddings.append((len(chunk.tokens), found.name))
            chunk.tokens += [PLACEHOLDER] * found.vectors
            chunk.weights += [weight] * found.vectors
            pos += len(found.ids)
    if chunk.tokens or not chunks:
        next_chunk(is_last=True)
    return chunks, count


def text_chunks(
    text: str, tokenize: Tokenize, *, comma_id: int | None, embeddings: EmbeddingIndex | None = None
) -> tuple[list[Chunk], int]:
    """One step's text (extra-network tags already taken out) → its chunks and token count."""
    fragments = syntax.emphasis(text)
    if embeddings:
        fragments = [f if syntax.is_break(f) else (embeddings.comfy_names(f[0]), f[1]) for f in fragments]
    ids = tokenize([f[0] for f in fragments])
    return make_chunks(fragments, ids, comma_id=comma_id, embeddings=embeddings)


def target_length(count: int) -> int:
    """The tokens the prompt's chunks hold: 75 per chunk (A1111's counter's second number)."""
    return math.ceil(max(count, 1) / CHUNK_TOKENS) * CHUNK_TOKENS


def count_tokens(
    text: str,
    tokenize: Tokenize,
    *,
    comma_id: int | None,
    steps: int = 20,
    embeddings: EmbeddingIndex | None = None,
) -> tuple[int, int]:
    """(tokens used, tokens the chunks hold) for the Prompt panel's counter (`83/150`): the longest
    text of the prompt's schedule, after extra-network tags are taken out, as A1111 counts it."""
    plain, _ = syntax.extra_networks(text)
    best = 0
    for _, step_text in syntax.schedule(plain, steps):
        _, n = text_chunks(step_text, tokenize, comma_id=comma_id, embeddings=embeddings)
        best = max(best, n)
    return best, target_length(best)


@dataclass
class TokenCounter:
    """What the Prompt panel counts with: a tokenizer (any object called like a transformers
    tokenizer, built off the window's thread) and the embeddings a prompt may name."""

    tokenize: Tokenize
    comma_id: int | None
    embeddings: EmbeddingIndex | None = None

    @classmethod
    def from_tokenizer(cls, tokenizer: Any, embeddings: Mapping[str, int] | None = None) -> TokenCounter:
        """`embeddings`: {name: vectors} (studio.core.embeddings.find)."""

        def tokenize(texts: list[str]) -> list[list[int]]:
            return [list(ids) for ids in tokenizer(texts, truncation=False, add_special_tokens=False).input_ids]

        index = EmbeddingIndex.build(embeddings, tokenize) if embeddings else None
        return cls(tokenize, tokenizer.get_vocab().get(",</w>"), index)

    def count(self, text: str, steps: int = 20) -> tuple[int, int]:
        """(tokens used, tokens the chunks hold): "83/150"."""
        return count_tokens(text, self.tokenize, comma_id=self.comma_id, steps=steps, embeddings=self.embeddings)
