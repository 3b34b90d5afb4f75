"""Help ▸ About: version, device, and the licences of the bundled third-party components."""

from __future__ import annotations

import platform
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QPixmap
from PySide6.QtWidgets import QDialog, QDialogButtonBox, QHBoxLayout, QLabel, QPlainTextEdit, QVBoxLayout

from studio import __version__
from studio.core.paths import resources_dir


def licences_text() -> str:
    """The list generated at build time; in a source checkout, made from the installed packages."""
    bundled = resources_dir() / "THIRD_PARTY_LICENSES.txt"
    if bundled.is_file():
        return bundled.read_text(encoding="utf-8", errors="replace")
    import importlib.metadata

    rows = []
    for dist in sorted(importlib.metadata.distributions(), key=lambda d: (d.metadata["Name"] or "").lower()):
        name = dist.metadata["Name"]
        if not name:
            continue
        meta: Any = dist.metadata  # an email.message.Message: .get exists, the PackageMetadata protocol omits it
        lic = meta.get("License-Expression") or meta.get("License") or ""
        if not lic or len(lic) > 80:
            lic = (
                ", ".join(
                    c.split("::")[-1].strip()
                    for c in dist.metadata.get_all("Classifier") or []
                    if c.startswith("License ::")
                )
                or "see the package"
            )
        rows.append(f"{name} {dist.version}: {lic}")
    return "Third-party components (from this environment)\n\n" + "\n".join(rows)


class AboutDialog(QDialog):
    def __init__(self, device: str = "", parent=None) -> None:
        super().__init__(parent)
        self.setWindowTitle("About Studio")
        self.setModal(False)
        icon = QLabel()
        pix = QPixmap(str(resources_dir() / "icons" / "studio-128.png"))
        if not pix.isNull():
            icon.setPixmap(pix)
        title = QLabel(
            f"<h2>Studio {__version__}</h2>"
            "<p>Local image generation with latent diffusion.<br>"
            "Every image is labelled as AI-generated, with its full recipe.</p>"
            f"<p>Device: {device or 'not started yet'}<br>Python {platform.python_version()} · {platform.system()}</p>"
            "<p>Licence: Apache-2.0</p>"
        )
        title.setTextFormat(Qt.TextFormat.RichText)
        title.setWordWrap(True)
        head = QHBoxLayout()
        head.addWidget(icon, 0, Qt.AlignmentFlag.AlignTop)
        head.addWidget(title, 1)
        self.licences = QPlainTextEdit(licences_text(), readOnly=True)
        self.licences.setAccessibleName("Third-party licences")
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.close)
        lay = QVBoxLayout(self)
        lay.addLayout(head)
        lay.addWidget(QLabel("Bundled third-party components and their licences:"))
        lay.addWidget(self.licences, 1)
        lay.addWidget(buttons)
        self.resize(560, 520)
