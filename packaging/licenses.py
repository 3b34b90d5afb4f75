"""Write the licences of the bundled third-party packages: for each, its name, version and licence,
then the full text of every licence and notice file its wheel installed (LICENSE, COPYING, NOTICE,
AUTHORS …, from `*.dist-info/` or `*.dist-info/licenses/`). A wheel that carries no such file (PySide6
and shiboken6, for one) gets the standard texts of the licences its metadata names, from
`packaging/licence-texts/` (LGPL-3.0 with the GPL-3.0 it builds on, GPL-2.0, Apache-2.0, MIT).
`main(out)` returns the packages for which no text could be found at all; the build then fails."""

from __future__ import annotations

import importlib.metadata
import re
import sys
from pathlib import Path

# Build and test tools in the venv that the packaged studio does not contain.
NOT_BUNDLED = {
    "pip",
    "setuptools",
    "wheel",
    "pyinstaller",
    "pyinstaller-hooks-contrib",
    "studio",
    "pytest",
    "pytest-qt",
    "pytest-timeout",
    "import-linter",
    "pyflakes",
    "ruff",
    "iniconfig",
    "pluggy",
    "grimp",
    "mypy",
    "mypy-extensions",
    "pyright",
    "ray",  # the cluster extra; the packaged build leaves it out (packaging/studio.spec)
    "nodeenv",
}
LICENCE_FILE = re.compile(r"(^|/)(licen[cs]e|copying|notice|authors|copyright|third[-_]party)[^/]*$", re.IGNORECASE)
RULE = "=" * 100
TEXTS = Path(__file__).resolve().parent / "licence-texts"
# Licence names as packages write them -> the texts that licence needs shipped (LGPL-3.0 is a set of
# additional permissions on top of the GPL-3.0, so both).
SPDX = {
    "LGPL-3.0": ("LGPL-3.0", "GPL-3.0"),
    "LGPL-3.0-only": ("LGPL-3.0", "GPL-3.0"),
    "LGPL-3.0-or-later": ("LGPL-3.0", "GPL-3.0"),
    "GPL-3.0-only": ("GPL-3.0",),
    "GPL-3.0": ("GPL-3.0",),
    "GPL-2.0-only": ("GPL-2.0",),
    "GPL-2.0": ("GPL-2.0",),
    "Apache-2.0": ("Apache-2.0",),
    "Apache Software License": ("Apache-2.0",),
    "MIT": ("MIT",),
    "MIT License": ("MIT",),
}


def licence_name(dist: importlib.metadata.Distribution) -> str:
    lic = dist.metadata.get("License-Expression") or dist.metadata.get("License") or ""
    if not lic or len(lic) > 80:
        classifiers = [
            c.split("::")[-1].strip() for c in dist.metadata.get_all("Classifier") or [] if c.startswith("License ::")
        ]
        lic = ", ".join(classifiers) or (lic.splitlines()[0][:80] if lic else "see the package")
    return lic


def licence_files(dist: importlib.metadata.Distribution) -> list[tuple[str, str]]:
    """(path, text) of each licence or notice file the distribution installed."""
    out = []
    for f in dist.files or []:
        path = str(f).replace("\\", "/")
        if ".dist-info/" not in path and ".egg-info/" not in path:
            continue
        if not LICENCE_FILE.search(path.split(".dist-info/", 1)[-1].split(".egg-info/", 1)[-1]):
            continue
        try:
            text = Path(dist.locate_file(f)).read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        out.append((path.rsplit("/", 1)[-1], text))
    return out


def standard_texts(lic: str) -> list[tuple[str, str]]:
    """(name, text) of the standard licence texts a licence expression or classifier names."""
    names: list[str] = []
    for word in re.split(r"\s+(?:OR|AND|WITH)\s+|[(),]|\s*;\s*", lic):
        for text in SPDX.get(word.strip(), ()):
            if text not in names:
                names.append(text)
    return [(n, (TEXTS / f"{n}.txt").read_text(encoding="utf-8")) for n in names if (TEXTS / f"{n}.txt").is_file()]


def main(out: str) -> list[str]:
    sections, summary, without = [], [], []
    dists = {(d.metadata["Name"] or "").lower(): d for d in importlib.metadata.distributions()}
    for key in sorted(dists):
        dist = dists[key]
        name = dist.metadata["Name"]
        if not name or key in NOT_BUNDLED:
            continue
        lic = licence_name(dist)
        summary.append(f"{name} {dist.version}: {lic}")
        files = licence_files(dist)
        body = [f"{RULE}\n{name} {dist.version} — {lic}\n{RULE}"]
        if files:
            for fname, text in files:
                body.append(f"--- {fname} ---\n{text.rstrip()}\n")
        else:
            author = (
                dist.metadata.get("Author")
                or dist.metadata.get("Author-email")
                or dist.metadata.get("Maintainer")
                or ""
            )
            homepage = dist.metadata.get("Home-page") or next(
                (u.split(",", 1)[-1].strip() for u in dist.metadata.get_all("Project-URL") or []), ""
            )
            texts = standard_texts(lic)
            body.append(
                "(The package's wheel carries no licence file; the standard text of its licence follows."
                + (f" Authors: {author}." if author else "")
                + (f" Home page: {homepage}" if homepage else "")
                + ")\n"
            )
            for tname, text in texts:
                body.append(f"--- {tname} ---\n{text.rstrip()}\n")
            if not texts:
                without.append(name)
        sections.append("\n".join(body))
    head = [
        "Third-party components bundled with Studio",
        "",
        "Each package's name, version and licence; the full licence and notice texts follow.",
        "",
        *summary,
        "",
    ]
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text("\n".join(head) + "\n" + "\n\n".join(sections) + "\n", encoding="utf-8")
    return without


if __name__ == "__main__":
    missing = main(sys.argv[1])
    if missing:
        print(
            f"licences: no licence text found for {', '.join(missing)}; add it to packaging/licence-texts/",
            file=sys.stderr,
        )
        sys.exit(1)
