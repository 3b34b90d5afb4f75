"""The codebase's shape, as CONTRIBUTING.md states it: no module over 600 lines, the window in subpackages."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 600


def test_no_module_is_over_600_lines():
    long = {}
    for package in ("studio", "studio_plugins"):
        for path in (ROOT / package).rglob("*.py"):
            n = len(path.read_text(encoding="utf-8").splitlines())
            if n > MAX_LINES:
                long[str(path.relative_to(ROOT))] = n
    assert long == {}, f"split these modules (over {MAX_LINES} lines): {long}"


def test_the_window_is_in_subpackages():
    qt = ROOT / "studio" / "qt"
    subpackages = [p.name for p in qt.iterdir() if (p / "__init__.py").is_file()]
    assert len(subpackages) >= 4
    assert [p.name for p in qt.glob("*.py")] == ["__init__.py"]  # no flat modules beside them
