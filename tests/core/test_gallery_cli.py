"""`studio gallery …` and `studio metadata …` on a small library."""

from __future__ import annotations

import json

import numpy as np
import pytest

from studio.cli import main
from studio.core.gallery import Gallery, record_result
from studio.core.request import GenerationRequest
from studio.core.results import GenerationResult


@pytest.fixture
def library(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("STUDIO_LIBRARY", str(tmp_path / "lib"))
    img = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    for prompt in ("a quiet harbour at night", "a desert caravan"):
        record_result(GenerationResult(request=GenerationRequest.create(prompt=prompt), images=[img]))
    return tmp_path / "lib"


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_list_search_show(library, capsys):
    code, out, _ = run(capsys, "gallery", "list", "--json")
    assert code == 0 and {i["prompt"] for i in json.loads(out)} == {"a quiet harbour at night", "a desert caravan"}
    code, out, _ = run(capsys, "gallery", "search", "harbour", "--json")
    hits = json.loads(out)
    assert [h["prompt"] for h in hits] == ["a quiet harbour at night"]
    code, out, _ = run(capsys, "gallery", "search", "harbour")
    assert "harbour" in out and "caravan" not in out and " AI " in out
    code, out, _ = run(capsys, "gallery", "show", hits[0]["id"][:8], "--json")
    shown = json.loads(out)
    assert shown["c2pa"]["state"] == "valid" and shown["request"]["prompt"] == "a quiet harbour at night"
    code, out, _ = run(capsys, "gallery", "show", hits[0]["id"][:8])
    assert "C2PA valid" in out and "Generated from a prompt" in out


def test_unknown_id_is_a_one_line_error(library, capsys):
    code, out, err = run(capsys, "gallery", "show", "abcdef00")
    assert code == 2 and err.startswith("studio: no gallery image") and err.count("\n") == 1


def test_check_and_repair(library, capsys):
    assert run(capsys, "gallery", "check")[0] == 0
    with Gallery(library) as g:
        victim = g.query()[0]
    victim.path.unlink()
    code, out, _ = run(capsys, "gallery", "check", "--json")
    assert code == 1 and json.loads(out)["missing"] == [victim.id]
    code, out, _ = run(capsys, "gallery", "check", "--repair")
    assert "repaired 1" in out
    assert run(capsys, "gallery", "check")[0] == 0


def test_metadata_read_and_verify(library, capsys):
    with Gallery(library) as g:
        item = g.query()[0]
    code, out, _ = run(capsys, "metadata", "read", str(item.path), "--json")
    data = json.loads(out)
    assert code == 0 and data["source"] == "studio" and data["prompt"] == item.prompt
    assert set(data) >= {
        "prompt",
        "negative_prompt",
        "steps",
        "sampler",
        "cfg_scale",
        "seed",
        "width",
        "height",
        "model",
        "model_hash",
        "loras",
        "source",
    }
    assert run(capsys, "metadata", "verify", str(item.path))[0] == 0
    raw = bytearray(item.path.read_bytes())
    raw[raw.find(b"IDAT") + 6] ^= 0xFF
    bad = library / "bad.png"
    bad.write_bytes(bytes(raw))
    code, out, _ = run(capsys, "metadata", "verify", str(bad))
    assert code == 1 and out.startswith("invalid")
    junk = library / "junk.png"
    junk.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 10)
    code, _, err = run(capsys, "metadata", "read", str(junk), "--json")
    assert code == 2 and "truncated" in err


def test_bench_smoke(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    code, out, _ = run(capsys, "gallery", "bench", "--rows", "300", "--json")
    result = json.loads(out)
    assert code == 0 and result["rows"] == 300 and result["queries"]["castle"]["hits"] > 0
