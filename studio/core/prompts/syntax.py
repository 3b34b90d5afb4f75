"""The AUTOMATIC1111 prompt language, read as A1111 reads it: pure text in, plain data out.

Three passes, in A1111's order:

1. `extra_networks` takes out `<kind:name:args>` tags (`<lora:film:0.8>`): A1111 removes every such
   tag from the text the encoder reads, whatever its kind, and hands the tags to their networks.
2. `schedule` resolves prompt editing and alternation into the texts of each step:
   `[from:to:when]` (`when` with a dot is a share of the steps, else a step number), `[to:when]`,
   `[from::when]` and `[a|b|c]` (one option per step, in turn). The result is A1111's
   `[[end_step, text], …]`: the text with end_step e conditions every 0-based sampling step s for
   which it is the first entry with s ≤ e. A prompt that the grammar cannot read as a whole (a
   `|` outside brackets, a trailing lone backslash) has one entry, the text unchanged; stray
   brackets are kept as text.
3. `emphasis` splits one step's text into (fragment, weight) runs: `(a)` ×1.1, `[a]` ÷1.1,
   `(a:1.3)` ×1.3, nesting multiplies, `\\(` `\\)` `\\[` `\\]` `\\\\` are literal characters (a backslash
   before anything else is dropped), an unclosed bracket weighs everything after it, a closing
   bracket without an opener is text, and `BREAK` (outside brackets) starts a new 75-token chunk.

The parser is written here rather than taken from a library: A1111 builds passes 2 and 3 on
`lark` with a grammar whose ambiguities lark resolves in its own way, and compel / diffusers'
prompt helpers read a different language (`word++`, `.and()`, no `[from:to:when]`). This module
gives the same answers as A1111's code on its documented examples and on randomised prompts
(tests/core/test_prompt_syntax.py holds both).

Not supported: `AND` (composable diffusion) is read as a plain word, as A1111 does with its
"emphasis: None" setting off; A1111's hires-fix step offsets (there is no hires pass here).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Union

BREAK = "BREAK"
BREAK_WEIGHT = -1.0  # how `emphasis` marks a BREAK (A1111's marker: the text "BREAK" with weight -1)
ROUND, SQUARE = 1.1, 1 / 1.1

# A1111's extra-network tag: <kind:anything but '>'>; the kind is word characters.
_EXTRA = re.compile(r"<(\w+):([^>]+)>")
# lark's SIGNED_NUMBER: sign, digits with an optional fraction (or a bare fraction), optional exponent.
_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
_SPECIAL = set("\\[]():|")
_BREAK_SPLIT = re.compile(r"\s*\bBREAK\b\s*", re.S)
_WEIGHT_CLOSE = re.compile(r":\s*([+-]?[.\d]+)\s*\)")
_TEXT_RUN = re.compile(r"[^\\()\[\]:]+")


@dataclass(frozen=True)
class ExtraNetwork:
    """One `<kind:name:args…>` tag: kind "lora" for `<lora:film:0.8>`, args ("film", "0.8")."""

    kind: str
    args: tuple[str, ...]
    text: str  # the tag as written

    @property
    def name(self) -> str:
        return self.args[0] if self.args else ""


def extra_networks(text: str) -> tuple[str, list[ExtraNetwork]]:
    """The text without its extra-network tags, and the tags in order."""
    tags = [ExtraNetwork(m[1], tuple(m[2].split(":")), m[0]) for m in _EXTRA.finditer(text)]
    return _EXTRA.sub("", text), tags


# -- pass 2: prompt editing and alternation ------------------------------------------------------------


class _Fail(Exception):
    """The text at this position is not the construct tried."""


@dataclass
class _Group:  # "(…)", "(…:…)", "[…]": kept as written, with any schedules inside resolved
    parts: list[Part]


@dataclass
class _Scheduled:  # [before:after:when]; before None for [after:when]
    before: list[Part] | None
    after: list[Part]
    when: str
    step: int = 0


@dataclass
class _Alternate:  # [a|b|…]; an empty option reads as ""
    options: list[list[Part]]


Part = Union[str, _Group, _Scheduled, _Alternate]  # noqa: UP007 — a runtime alias (py3.10 has no `type`)


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text

    def at(self, i: int) -> str:
        return self.text[i] if i < len(self.text) else ""

    def plain(self, i: int) -> int:
        """The end of the run of plain text (and escapes) starting at i."""
        t = self.text
        while i < len(t):
            c = t[i]
            if c == "\\":
                if i + 1 >= len(t) or t[i + 1] == "\n":
                    raise _Fail  # the escape needs a character after it (not a line break)
                i += 2
            elif c in _SPECIAL:
                break
            else:
                i += 1
        return i

    def prompt(self, i: int) -> tuple[list[Part], int]:
        """A run of text, groups, schedules and alternations, up to the first thing none can hold."""
        parts: list[Part] = []
        while i < len(self.text):
            c = self.text[i]
            if c in "([":
                try:
                    node, i = self.round(i) if c == "(" else self.square(i)
                except _Fail:
                    break
                parts.append(node)
            elif c in ")]:|":
                break
            else:
                j = self.plain(i)
                parts.append(self.text[i:j])
                i = j
        return parts, i

    def round(self, i: int) -> tuple[_Group, int]:
        first, j = self.prompt(i + 1)
        if self.at(j) == ")":
            return _Group(["(", *first, ")"]), j + 1
        if self.at(j) == ":":
            second, k = self.prompt(j + 1)
            if self.at(k) == ")":
                return _Group(["(", *first, ":", *second, ")"]), k + 1
        raise _Fail

    def number_then_close(self, i: int) -> tuple[str, int] | None:
        j = _skip_space(self.text, i)
        m = _NUMBER.match(self.text, j)
        if m is None:
            return None
        k = _skip_space(self.text, m.end())
        return (m[0], k + 1) if self.at(k) == "]" else None

    def square(self, i: int) -> tuple[Part, int]:
        first, j = self.prompt(i + 1)
        c = self.at(j)
        if c == "]":
            return _Group(["[", *first, "]"]), j + 1
        if c == "|":
            options = [first]
            while self.at(j) == "|":
                option, j = self.prompt(j + 1)
                options.append(option)
            if self.at(j) != "]":
                raise _Fail
            return _Alternate(options), j + 1
        if c == ":":
            found = self.number_then_close(j + 1)
            if found is not None:  # [to:when]
                return _Scheduled(None, first, found[0]), found[1]
            second, k = self.prompt(j + 1)
            if self.at(k) == ":":
                found = self.number_then_close(k + 1)
                if found is not None:
                    return _Scheduled(first, second, found[0]), found[1]
        raise _Fail

    def start(self) -> list[Part]:
        """The whole text; stray brackets and colons are text. Raises _Fail where the grammar cannot
        read it (a `|` outside any alternation, a backslash with nothing after it)."""
        parts: list[Part] = []
        i = 0
        while i < len(self.text):
            c = self.text[i]
            if c in "([":
                try:
                    node, i = self.round(i) if c == "(" else self.square(i)
                    parts.append(node)
                    continue
                except _Fail:
                    pass
            if c in "()[]:":
                parts.append(c)
                i += 1
            elif c == "|":
                raise _Fail
            else:
                j = self.plain(i)
                parts.append(self.text[i:j])
                i = j
        return parts


def _walk(parts: list[Part]) -> Iterator[_Scheduled | _Alternate]:
    for p in parts:
        if isinstance(p, _Group):
            yield from _walk(p.parts)
        elif isinstance(p, _Scheduled):
            yield p
            if p.before is not None:
                yield from _walk(p.before)
            yield from _walk(p.after)
        elif isinstance(p, _Alternate):
            yield p
            for option in p.options:
                yield from _walk(option)


def _render(parts: list[Part], step: int) -> str:
    out: list[str] = []
    for p in parts:
        if isinstance(p, str):
            out.append(p)
        elif isinstance(p, _Group):
            out.append(_render(p.parts, step))
        elif isinstance(p, _Scheduled):
            if step <= p.step:
                out.append(_render(p.before, step) if p.before is not None else "")
            else:
                out.append(_render(p.after, step))
        else:
            out.append(_render(p.options[(step - 1) % len(p.options)], step))
    return "".join(out)


def schedule(text: str, steps: int) -> list[tuple[int, str]]:
    """A1111's prompt schedule: [(end_step, text)] in step order, the last end_step being `steps`."""
    try:
        parts = _Parser(text).start()
    except _Fail:
        return [(steps, text)]
    ends = {steps}
    for node in _walk(parts):
        if isinstance(node, _Alternate):
            ends.update(range(1, steps + 1))
            continue
        value = float(node.when)
        if "." in node.when:  # a share of the steps
            value *= steps
        node.step = min(steps, int(value))
        if node.step >= 1:
            ends.add(node.step)
    return [(end, _render(parts, end)) for end in sorted(ends)]


def text_at(entries: list[tuple[int, str]], step: int) -> str:
    """The text of a schedule that conditions the 0-based sampling step `step`."""
    return entries[index_at(entries, step)][1]


def index_at(entries: list[tuple[int, str]], step: int) -> int:
    """Which entry of a schedule conditions the 0-based sampling step `step` (as A1111 picks it)."""
    for i, (end, _) in enumerate(entries):
        if step <= end:
            return i
    return 0


def has_editing(text: str) -> bool:
    """Whether the text could hold prompt editing or alternation (a cheap test before `schedule`)."""
    return "[" in text and ("]" in text)


# -- pass 3: emphasis and BREAK --------------------------------------------------------------------------


def emphasis(text: str) -> list[tuple[str, float]]:
    """[(fragment, weight)] with runs of equal weight merged; a BREAK is (BREAK, BREAK_WEIGHT)."""
    res: list[list[Any]] = []
    round_open: list[int] = []
    square_open: list[int] = []

    def multiply(start: int, factor: float) -> None:
        for p in range(start, len(res)):
            res[p][1] *= factor

    def add_text(chunk: str) -> None:
        for n, part in enumerate(_BREAK_SPLIT.split(chunk)):
            if n:
                res.append([BREAK, BREAK_WEIGHT])
            res.append([part, 1.0])

    i, t = 0, text
    while i < len(t):
        c = t[i]
        if c == "\\":
            nxt = t[i + 1] if i + 1 < len(t) else ""
            if nxt and nxt in "()[]\\":
                res.append([nxt, 1.0])
                i += 2
            else:  # A1111 drops a backslash that escapes nothing
                res.append(["", 1.0])
                i += 1
        elif c == "(":
            round_open.append(len(res))
            i += 1
        elif c == "[":
            square_open.append(len(res))
            i += 1
        elif c == ":":
            m = _WEIGHT_CLOSE.match(t, i)
            weight = _float(m[1]) if m else None
            if m and round_open and weight is not None:
                multiply(round_open.pop(), weight)
                i = m.end()
            elif m:  # a weight without an opening bracket (or an unreadable number) is text
                add_text(m[0])
                i = m.end()
            else:
                add_text(":")
                i += 1
        elif c == ")" and round_open:
            multiply(round_open.pop(), ROUND)
            i += 1
        elif c == "]" and square_open:
            multiply(square_open.pop(), SQUARE)
            i += 1
        elif c in ")]":
            add_text(c)
            i += 1
        else:
            j = _TEXT_RUN.match(t, i).end()  # type: ignore[union-attr]  # c is none of the specials
            add_text(t[i:j])
            i = j
    for pos in round_open:
        multiply(pos, ROUND)
    for pos in square_open:
        multiply(pos, SQUARE)
    if not res:
        res = [["", 1.0]]
    merged: list[list[Any]] = [res[0]]
    for item in res[1:]:
        if item[1] == merged[-1][1]:
            merged[-1][0] += item[0]
        else:
            merged.append(item)
    return [(str(a), float(b)) for a, b in merged]


def _skip_space(text: str, i: int) -> int:
    while i < len(text) and text[i].isspace():
        i += 1
    return i


def is_break(fragment: tuple[str, float]) -> bool:
    return fragment[0] == BREAK and fragment[1] == BREAK_WEIGHT


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
