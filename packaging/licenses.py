"""Write the licences of the bundled third-party packages (from their installed metadata)."""

from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path


def main(out: str) -> None:
    rows = []
    for dist in sorted(importlib.metadata.distributions(), key=lambda d: (d.metadata["Name"] or "").lower()):
        name = dist.metadata["Name"]
        if not name or name.lower() in {
            "pip",
            "setuptools",
            "wheel",
            "pyinstaller",
            "pyinstaller-hooks-contrib",
            "studio",
        }:
            continue
        lic = dist.metadata.get("License-Expression") or dist.metadata.get("License") or ""
        if not lic or len(lic) > 80:
            classifiers = [
                c.split("::")[-1].strip()
                for c in dist.metadata.get_all("Classifier") or []
                if c.startswith("License ::")
            ]
            lic = ", ".join(classifiers) or (lic.splitlines()[0][:80] if lic else "see the package")
        rows.append(f"{name} {dist.version}: {lic}")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text("Third-party components bundled with Studio\n\n" + "\n".join(rows) + "\n")


if __name__ == "__main__":
    main(sys.argv[1])
