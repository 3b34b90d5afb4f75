"""The A1111 prompt language (studio.core.prompts): each construct against A1111's documented
semantics — the examples in the docstrings of A1111's modules/prompt_parser.py, and what A1111's
parser (lark) answers on a set of harder prompts, recorded here as expectations."""

from __future__ import annotations

import pytest

from studio.core.prompts import chunks, syntax

S = syntax.schedule


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("test", [(10, "test")]),
        ("a [b:3]", [(3, "a "), (10, "a b")]),
        ("a [b: 3]", [(3, "a "), (10, "a b")]),
        ("a [[[b]]:2]", [(2, "a "), (10, "a [[b]]")]),
        ("[(a:2):3]", [(3, ""), (10, "(a:2)")]),
        ("a [b : c : 1] d", [(1, "a b  d"), (10, "a  c  d")]),
        ("a[b:[c:d:2]:1]e", [(1, "abe"), (2, "ace"), (10, "ade")]),
        ("a [unbalanced", [(10, "a [unbalanced")]),
        ("a [b:.5] c", [(5, "a  c"), (10, "a b c")]),
        ("((a][:b:c [d:3]", [(3, "((a][:b:c "), (10, "((a][:b:c d")]),
        ("[a|(b:1.1)]", [(i, "a" if i % 2 else "(b:1.1)") for i in range(1, 11)]),
        ("[fe|]male", [(i, "female" if i % 2 else "male") for i in range(1, 11)]),
        ("[fe|||]male", [(i, "female" if i % 4 == 1 else "male") for i in range(1, 11)]),
        # What A1111's lark parser answers (recorded from it):
        ("a [{b|d{:.5] c", [(10, "a [{b|d{:.5] c")]),  # '|' outside an alternation: nothing is scheduled
        ("[a:b:1.0]", [(10, "a")]),  # with a dot: a share of the steps (1.0 = all of them)
        ("[a:b:0]", [(10, "b")]),
        ("[a:b:-1]", [(10, "b")]),
        ("a | b", [(10, "a | b")]),
        ("[a|b", [(10, "[a|b")]),
        ("(a:b:c)", [(10, "(a:b:c)")]),
        ("x:y", [(10, "x:y")]),
        (")[a:b:3]", [(3, ")a"), (10, ")b")]),
        ("[[a:b:3]", [(3, "[a"), (10, "[b")]),
        ("[a:3]][b:4]", [(3, "]"), (4, "a]"), (10, "a]b")]),
        (
            "[a:b:3] [c|d]",
            [
                (1, "a c"),
                (2, "a d"),
                (3, "a c"),
                (4, "b d"),
                (5, "b c"),
                (6, "b d"),
                (7, "b c"),
                (8, "b d"),
                (9, "b c"),
                (10, "b d"),
            ],
        ),
        ("[a:b:1e1]", [(10, "a")]),  # no dot: a step number (10)
        ("[a:b:3] \\", [(10, "[a:b:3] \\")]),  # a backslash with nothing to escape: read as a whole
        ("[a\\:b:c:3]", [(3, "a\\:b"), (10, "c")]),
    ],
)
def test_schedule(prompt, expected):
    assert S(prompt, 10) == expected


def test_a1111_fantasy_landscape_example():
    p = (
        "fantasy landscape with a [mountain:lake:0.25] and [an oak:a christmas tree:0.75]"
        "[ in foreground::0.6][ in background:0.25] [shoddy:masterful:0.5]"
    )
    assert S(p, 100) == [
        (25, "fantasy landscape with a mountain and an oak in foreground shoddy"),
        (50, "fantasy landscape with a lake and an oak in foreground in background shoddy"),
        (60, "fantasy landscape with a lake and an oak in foreground in background masterful"),
        (75, "fantasy landscape with a lake and an oak in background masterful"),
        (100, "fantasy landscape with a lake and a christmas tree in background masterful"),
    ]


def test_text_at_step_picks_as_a1111():
    """0-based step s uses the first entry whose end is ≥ s: [a:b:3] draws a on steps 0–3."""
    entries = S("[a:b:3]", 10)
    assert [syntax.text_at(entries, s) for s in range(10)] == ["a"] * 4 + ["b"] * 6
    alt = S("[x|y]", 4)
    assert [syntax.text_at(alt, s) for s in range(4)] == ["x", "x", "y", "x"]


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("normal text", [("normal text", 1.0)]),
        ("an (important) word", [("an ", 1.0), ("important", 1.1), (" word", 1.0)]),
        ("(unbalanced", [("unbalanced", 1.1)]),
        ("\\(literal\\]", [("(literal]", 1.0)]),
        ("(unnecessary)(parens)", [("unnecessaryparens", 1.1)]),
        (
            "a (((house:1.3)) [on] a (hill:0.5), sun, (((sky))).",
            [
                ("a ", 1.0),
                ("house", 1.5730000000000004),
                (" ", 1.1),
                ("on", 1.0),
                (" a ", 1.1),
                ("hill", 0.55),
                (", sun, ", 1.1),
                ("sky", 1.4641000000000006),
                (".", 1.1),
            ],
        ),
        ("(red:1.0)", [("red", 1.0)]),
        ("a (red:1.0) circle", [("a red circle", 1.0)]),
        ("((word))", [("word", 1.1 * 1.1)]),
        ("[word]", [("word", 1 / 1.1)]),
        ("[[word]]", [("word", 1 / 1.1 / 1.1)]),
        ("(word:1.3)", [("word", 1.3)]),
        ("(word : 1.3 )", [("word ", 1.3)]),
        ("((a:1.5) b)", [("a", 1.5 * 1.1), (" b", 1.1)]),
        ("word)", [("word)", 1.0)]),  # a closing bracket without an opener is text
        ("a]b", [("a]b", 1.0)]),
        ("\\\\x", [("\\x", 1.0)]),
        ("a\\db", [("adb", 1.0)]),  # a backslash that escapes nothing is dropped
        ("(a:1.2.3)", [("a:1.2.3)", 1.1)]),  # an unreadable weight is text (A1111 stops with an error)
        ("", [("", 1.0)]),
        ("a BREAK b", [("a", 1.0), ("BREAK", -1.0), ("b", 1.0)]),
        ("aBREAKb", [("aBREAKb", 1.0)]),
        ("(a BREAK b)", [("a", 1.1), ("BREAK", -1.1), ("b", 1.1)]),  # inside brackets BREAK is a weighted word
    ],
)
def test_emphasis(prompt, expected):
    assert syntax.emphasis(prompt) == expected


def test_extra_networks_are_taken_out():
    text, tags = syntax.extra_networks("a cat <lora:film grain:0.8>, <hypernet:x:1> <lora:y>")
    assert text == "a cat ,  "
    assert [(t.kind, t.name, t.args) for t in tags] == [
        ("lora", "film grain", ("film grain", "0.8")),
        ("hypernet", "x", ("x", "1")),
        ("lora", "y", ("y",)),
    ]
    assert syntax.extra_networks("a <b> <:c>") == ("a <b> <:c>", [])


# -- chunks ---------------------------------------------------------------------------------------------


def fake_tokenize(texts):
    """One token per word; ',' its own token (id 1); words get ids from a fixed table."""
    table: dict[str, int] = {}

    def tid(w):
        return {",": 1}.get(w) or table.setdefault(w, 100 + (sum(map(ord, w)) % 5000))

    out = []
    for t in texts:
        words = t.replace(",", " , ").split()
        out.append([tid(w) for w in words])
    return out


def test_short_prompt_is_one_chunk():
    cs, n = chunks.text_chunks("a red circle", fake_tokenize, comma_id=1)
    assert n == 3 and len(cs) == 1 and cs[0].weights == [1.0, 1.0, 1.0]
    assert chunks.count_tokens("a red circle", fake_tokenize, comma_id=1) == (3, 75)
    assert chunks.count_tokens("", fake_tokenize, comma_id=1) == (0, 75)


def test_long_prompt_chunks_of_75():
    words = " ".join(f"w{i}" for i in range(83))
    cs, n = chunks.text_chunks(words, fake_tokenize, comma_id=1)
    assert [len(c.tokens) for c in cs] == [75, 8] and n == 83
    assert chunks.count_tokens(words, fake_tokenize, comma_id=1) == (83, 150)


def test_break_starts_a_new_chunk_and_counts_the_padding():
    cs, n = chunks.text_chunks("a b BREAK c", fake_tokenize, comma_id=1)
    assert [len(c.tokens) for c in cs] == [2, 1] and n == 76
    assert chunks.count_tokens("a b BREAK c", fake_tokenize, comma_id=1) == (76, 150)


def test_words_after_a_late_comma_move_to_the_next_chunk():
    words = " ".join(f"w{i}" for i in range(70)) + " , x1 x2 x3 x4 x5 x6 x7"
    cs, _ = chunks.text_chunks(words, fake_tokenize, comma_id=1)
    assert len(cs[0].tokens) == 71 and cs[0].tokens[-1] == 1  # the chunk ends at the comma
    assert len(cs[1].tokens) == 7
    far = " ".join(f"w{i}" for i in range(40)) + " , " + " ".join(f"x{i}" for i in range(40))
    cs, _ = chunks.text_chunks(far, fake_tokenize, comma_id=1)
    assert len(cs[0].tokens) == 75  # the comma is more than 20 tokens back: cut at 75


def test_weights_follow_their_tokens_across_chunks():
    text = " ".join(f"w{i}" for i in range(74)) + " (big red:1.5) end"
    cs, _ = chunks.text_chunks(text, fake_tokenize, comma_id=1)
    assert cs[0].weights[-1] == 1.5 and cs[1].weights == [1.5, 1.0]


def test_embeddings_take_their_vectors_and_do_not_straddle_chunks():
    index = chunks.EmbeddingIndex.build({"easyneg": 4, "style": 2}, fake_tokenize)
    cs, n = chunks.text_chunks("a easyneg b (style:1.2)", fake_tokenize, comma_id=1, embeddings=index)
    c = cs[0]
    assert c.embeddings == [(1, "easyneg"), (6, "style")] and n == 8
    assert c.tokens[1:5] == [chunks.PLACEHOLDER] * 4 and c.weights[6:8] == [1.2, 1.2]
    text = " ".join(f"w{i}" for i in range(73)) + " easyneg"
    cs, _ = chunks.text_chunks(text, fake_tokenize, comma_id=1, embeddings=index)
    assert len(cs[0].tokens) == 73 and cs[1].embeddings == [(0, "easyneg")]


def test_comfy_embedding_syntax_and_unknown_names():
    index = chunks.EmbeddingIndex.build({"easyneg": 3}, fake_tokenize)
    cs, _ = chunks.text_chunks("embedding:easyneg.safetensors, x", fake_tokenize, comma_id=1, embeddings=index)
    assert cs[0].embeddings == [(0, "easyneg")]
    cs, n = chunks.text_chunks("embedding:nothing x nothing", fake_tokenize, comma_id=1, embeddings=index)
    assert cs[0].embeddings == [] and n == 3  # unknown names are words


def test_counter_takes_the_longest_scheduled_text():
    long = " ".join(f"w{i}" for i in range(80))
    assert chunks.count_tokens(f"a [b:{long}:5]", fake_tokenize, comma_id=1, steps=10) == (81, 150)
    assert chunks.count_tokens("a <lora:x:1> b", fake_tokenize, comma_id=1) == (2, 75)
