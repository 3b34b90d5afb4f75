"""The first-run page: shown in the window's central area until the user picks how to get a model.

Four choices (`choiceMade` carries the key): "demo" — the bundled demo model, "import-file" /
"import-folder" — a checkpoint or model folder of their own (the Import button's menu),
"folder" — an existing A1111 / ComfyUI models folder, "download" — a starter model from the Hub.
The window acts on the choice and remembers it (`studio.qt.models.setup`).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QGridLayout, QLabel, QMenu, QPushButton, QVBoxLayout, QWidget

CARD_WIDTH, MARGIN, BUTTON_WIDTH, GAP = 900, 36, 350, 20
CHOICES = (
    (
        "demo",
        "Use the bundled demo model",
        "Works at once and offline. A small toy trained by this project: flat shapes and colours at 128×128.",
    ),
    (
        "import",
        "Import a checkpoint or folder…",
        "A .safetensors checkpoint (SD 1.x, 2.x, XL, SD 3.5, FLUX.1; FLUX/SD3 transformers as .gguf too) or a "
        "diffusers folder you already have. It is linked into your library, not copied.",
    ),
    (
        "folder",
        "Use my A1111 / ComfyUI models…",
        "Point at the models folder of AUTOMATIC1111, ComfyUI (or the Hugging Face cache). Everything in it is "
        "listed — FLUX and SD3 transformers with their CLIP/T5 encoders and VAE too; nothing is copied.",
    ),
    (
        "download",
        "Download a starter model…",
        "SD 1.5, SD-Turbo, SDXL, tiny autoencoders or ControlNets from the Hugging Face Hub, resumable.",
    ),
)


class WelcomeView(QWidget):
    choiceMade = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("WelcomeView")
        self.buttons: dict[str, QPushButton] = {}
        card = QFrame(objectName="WelcomeCard")
        card.setFixedWidth(CARD_WIDTH)
        title = QLabel("Welcome to Studio", objectName="WelcomeTitle")
        intro = QLabel(
            "Choose the model to draw with. You can change it at any time from the Prompt panel or Models ▸ Models…",
            objectName="WelcomeIntro",
            wordWrap=True,
        )
        grid = QGridLayout()
        grid.setHorizontalSpacing(GAP)
        grid.setVerticalSpacing(14)
        for row, (key, text, blurb) in enumerate(CHOICES):
            b = QPushButton(text, objectName=f"Welcome_{key}")
            b.setProperty("welcome", True)
            b.setMinimumHeight(44)
            b.setFixedWidth(BUTTON_WIDTH)
            b.setCursor(Qt.CursorShape.PointingHandCursor)
            if key == "import":  # a file or a folder: two file dialogs, so a menu first
                self.import_menu = QMenu(b)
                self.import_menu.addAction(
                    "A checkpoint file (.safetensors)…", lambda: self.choiceMade.emit("import-file")
                )
                self.import_menu.addAction("A diffusers model folder…", lambda: self.choiceMade.emit("import-folder"))
                b.setMenu(self.import_menu)
            else:
                b.clicked.connect(lambda _c=False, k=key: self.choiceMade.emit(k))
            self.buttons[key] = b
            note = QLabel(blurb, wordWrap=True, objectName="WelcomeNote")
            # a grid does not ask wrapped labels for their height: give it the height at the known width
            note.setMinimumHeight(note.heightForWidth(CARD_WIDTH - 2 * MARGIN - BUTTON_WIDTH - GAP))
            grid.addWidget(b, row, 0)
            grid.addWidget(note, row, 1)
        grid.setColumnStretch(1, 1)
        lay = QVBoxLayout(card)
        lay.setContentsMargins(MARGIN, 32, MARGIN, 32)
        lay.setSpacing(10)
        lay.addWidget(title)
        lay.addWidget(intro)
        lay.addSpacing(14)
        lay.addLayout(grid)
        self.status = QLabel("", objectName="WelcomeStatus", wordWrap=True)
        lay.addSpacing(6)
        lay.addWidget(self.status)
        outer = QVBoxLayout(self)
        outer.addStretch(1)
        outer.addWidget(card, 0, Qt.AlignmentFlag.AlignHCenter)
        outer.addStretch(2)
        self.buttons["demo"].setDefault(True)

    def say(self, text: str) -> None:
        self.status.setText(text)
