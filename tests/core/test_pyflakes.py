"""studio/core stays free of what pyflakes finds (unused names, undefined names, shadowed imports)."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[2] / "studio" / "core"


def test_core_has_no_pyflakes_warnings():
    api = pytest.importorskip("pyflakes.api")
    reporter_mod = pytest.importorskip("pyflakes.reporter")
    out, err = io.StringIO(), io.StringIO()
    count = api.checkRecursive([str(CORE)], reporter_mod.Reporter(out, err))
    assert count == 0, out.getvalue() + err.getvalue()
