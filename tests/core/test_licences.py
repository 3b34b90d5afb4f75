"""The packaged build's THIRD_PARTY_LICENSES.txt holds the full licence and notice texts."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _licences_module():
    spec = importlib.util.spec_from_file_location("studio_packaging_licences", REPO / "packaging" / "licenses.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_bundled_package_has_its_full_licence_text(tmp_path):
    licences = _licences_module()
    out = tmp_path / "THIRD_PARTY_LICENSES.txt"
    assert licences.main(str(out)) == []  # no package without a licence text
    text = out.read_text(encoding="utf-8")
    parts = re.split("^" + "=" * 100 + "\n(.+)\n" + "=" * 100 + "\n", text, flags=re.MULTILINE)
    sections = dict(zip(parts[1::2], parts[2::2]))

    def section(name: str) -> str:
        return next(body for head, body in sections.items() if head.lower().startswith(name.lower() + " "))

    # A wheel with its own licence file: its text, whole.
    import numpy

    numpy_licence = Path(numpy.__file__).resolve().parent.parent / f"numpy-{numpy.__version__}.dist-info"
    own = next(p for p in numpy_licence.rglob("*") if p.is_file() and "licen" in p.name.lower())
    assert own.read_text(encoding="utf-8", errors="replace").strip()[:2000] in section("numpy")
    # Qt for Python's wheels carry none: the LGPL-3.0 and the GPL-3.0 it builds on are shipped instead.
    qt = section("PySide6_Essentials")
    assert "GNU LESSER GENERAL PUBLIC LICENSE" in qt and "Version 3, 29 June 2007" in qt
    assert "TERMS AND CONDITIONS" in qt and len(qt) > 40_000
    assert "torch" in text and len(text) > 500_000
