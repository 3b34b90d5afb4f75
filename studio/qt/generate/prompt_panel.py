"""The Prompt panel: everything one generation needs, turned into a `GenerationRequest`."""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QToolButton,
    QVBoxLayout,
    QWidget,
)
from superqt import QCollapsible, QLabeledDoubleSlider, QLargeIntSpinBox

from studio.core import library, samplers
from studio.core.paths import demo_model_dir
from studio.core.prompts.chunks import CHUNK_TOKENS, TokenCounter
from studio.core.request import MAX_SEED, GenerationRequest, PreviewMode
from studio.qt.edit.image_input import ImageInputSection
from studio.qt.generate.hires_section import HiresSection
from studio.qt.generate.prompt_edit import PromptEdit
from studio.qt.generate.sampler_row import SamplerRow

TOKEN_LIMIT = CHUNK_TOKENS  # one 77-token CLIP window minus its start/end tokens; longer prompts take more
SIZE_PRESETS: list[tuple[str, int, int]] = [
    ("Demo 128 (bundled model)", 128, 128),
    ("Square 512", 512, 512),
    ("Square 768", 768, 768),
    ("Square 1024 (SDXL)", 1024, 1024),
    ("Portrait 512×768", 512, 768),
    ("Landscape 768×512", 768, 512),
    ("Portrait 832×1216 (SDXL)", 832, 1216),
    ("Landscape 1216×832 (SDXL)", 1216, 832),
    ("Tiny 64 (test models)", 64, 64),
]
PREVIEW_LABELS = {
    PreviewMode.X0: "The picture as it will be (x0)",
    PreviewMode.LATENT2RGB: "What the sampler holds (noisy latent)",
    PreviewMode.TAESD: "x0, tiny autoencoder only",
    PreviewMode.VAE: "x0, full VAE every N steps",
    PreviewMode.NONE: "No preview",
}


class PromptPanel(QWidget):
    preview_every: QSpinBox  # made after the preview box whose signal enables it
    generateRequested = Signal()
    cancelRequested = Signal()
    modelChosen = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("PromptPanel")
        self._tokenizer: Any = None
        # Callables returning extra request fields (plugin panels: loras, controlnets, plugins).
        self.field_contributors: list[Callable[[], dict[str, Any]]] = []
        self._token_timer = QTimer(self, singleShot=True, interval=120)
        self._token_timer.timeout.connect(self.update_token_counts)

        inner = QWidget()
        inner.setObjectName("PromptInner")
        lay = QVBoxLayout(inner)
        lay.setContentsMargins(12, 10, 12, 10)
        lay.setSpacing(8)

        # model ------------------------------------------------------------------------------------
        lay.addWidget(_section("Model"))
        row = QHBoxLayout()
        self.model = QComboBox()
        self.model.setAccessibleName("Model")
        self.model.setEditable(True)
        self.model.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        self.model.setMinimumContentsLength(6)
        self.model.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.model.currentIndexChanged.connect(lambda _i: self._update_model_tip())
        # A chosen name that does not fit shows its start ("Demo model (bun"), not its end: an
        # editable box's line edit keeps the cursor, and so the view, at the end of a set text.
        self.model.currentIndexChanged.connect(lambda _i: self._model_text_to_start())
        self.model.editTextChanged.connect(lambda _t: self._update_model_tip())
        self._add_model_item(0, "demo")
        self.model.activated.connect(lambda _i: self.modelChosen.emit(self.model_name()))
        row.addWidget(self.model, 1)
        self.browse_folder = QToolButton(
            text="Folder…", toolTip="Choose a diffusers model folder (the one with model_index.json)."
        )
        self.browse_file = QToolButton(
            text="File…", toolTip="Choose a single-file checkpoint (.safetensors; FLUX/SD3 .gguf)."
        )
        self.browse_folder.clicked.connect(self.choose_model_folder)
        self.browse_file.clicked.connect(self.choose_model_file)
        row.addWidget(self.browse_folder)
        row.addWidget(self.browse_file)
        lay.addLayout(row)
        # A recreated recipe's own VAE (it changes the pixels): kept over the default VAE while its
        # model stays chosen, and said here whenever it differs from what the default would give.
        self._recipe_vae: tuple[str, str] | None = None  # (model, vae) pinned by a loaded recipe
        self.default_vae: Callable[[str], str] = lambda _model: ""  # the model's default VAE (set by the window)
        vae_row = QHBoxLayout()
        self.vae_note = QLabel("", objectName="VaeNote", wordWrap=True)
        self.vae_note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.vae_default = QToolButton(
            text="Use default", toolTip="Forget the recipe's VAE: use the default VAE for this model."
        )
        self.vae_default.clicked.connect(lambda: self.set_recipe_vae(None))
        vae_row.addWidget(self.vae_note, 1)
        vae_row.addWidget(self.vae_default)
        lay.addLayout(vae_row)
        self.vae_note.hide()
        self.encoders_slot = QVBoxLayout()  # FLUX/SD3 transformer-only files: their text encoders (family_ui)
        lay.addLayout(self.encoders_slot)
        self.vae_default.hide()
        self.model.currentTextChanged.connect(lambda _t: self.update_vae_note())

        # prompts ----------------------------------------------------------------------------------
        head = QHBoxLayout()
        head.addWidget(_section("Prompt"))
        head.addStretch(1)
        self.prompt_tokens = QLabel("", objectName="TokenCount")
        self.prompt_tokens.setToolTip(
            f"Tokens used / what the prompt's chunks hold. The text encoder reads {TOKEN_LIMIT} tokens at a time: a "
            f"longer prompt is read in further chunks of {TOKEN_LIMIT} (as A1111 reads it), and BREAK starts a new "
            "chunk. (word:1.3) and [word] weigh words; [a:b:0.5] switches a to b half-way through the steps."
        )
        head.addWidget(self.prompt_tokens)
        lay.addLayout(head)
        self.prompt = PromptEdit("What to draw: subject, setting, light, style…")
        self.prompt.setObjectName("Prompt")
        self.prompt.setToolTip("Describe the image. Ctrl+Enter generates.")
        self.prompt.textChanged.connect(self._token_timer.start)
        lay.addWidget(self.prompt, 3)

        head = QHBoxLayout()
        head.addWidget(_section("Negative prompt"))
        head.addStretch(1)
        self.negative_tokens = QLabel("", objectName="TokenCount")
        self.negative_tokens.setToolTip(self.prompt_tokens.toolTip())
        head.addWidget(self.negative_tokens)
        lay.addLayout(head)
        self.negative = PromptEdit("What to keep out: blurry, text, watermark…")
        self.negative.setToolTip("Things the image should not contain.")
        self.negative.textChanged.connect(self._token_timer.start)
        self.negative.setMaximumHeight(90)
        self.negative_slot = QVBoxLayout()  # why a model has no negative prompt (family_ui)
        lay.addLayout(self.negative_slot)
        lay.addWidget(self.negative, 1)

        # image input (img2img / inpaint from the Edit tab; hidden otherwise) -----------------------
        self.image_input = ImageInputSection()
        lay.addWidget(self.image_input)

        # sampling ---------------------------------------------------------------------------------
        lay.addWidget(_section("Sampling"))
        form = _form()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        form.setHorizontalSpacing(10)
        self.guidance_form = form
        self.steps = QSpinBox(minimum=1, maximum=500, value=20)
        self.steps.valueChanged.connect(self._token_timer.start)  # prompt editing's texts depend on the steps
        self.steps.setToolTip("Denoising steps. More steps: more detail and more time (20–30 is typical).")
        form.addRow("Steps", self.steps)
        self.guidance = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.guidance.setRange(0.0, 30.0)
        self.guidance.setSingleStep(0.5)
        self.guidance.setPageStep(1.0)
        self.guidance.setDecimals(1)
        self.guidance.setValue(7.0)
        self.guidance.setToolTip(
            "Guidance scale (CFG): how strictly to follow the prompt. 5–9 is typical; high values look harsh."
        )
        self.guidance.valueChanged.connect(self._snap_guidance)
        form.addRow("Guidance", self.guidance)
        self.sampler_row = SamplerRow(_combo)
        self.scheduler, self.schedule = self.sampler_row.sampler, self.sampler_row.schedule
        form.addRow("Scheduler", self.sampler_row)

        seed_row = QHBoxLayout()
        self.seed = QLargeIntSpinBox()
        self.seed.setRange(0, MAX_SEED)
        self.seed.setToolTip("The noise seed. The same seed and settings give the same image.")
        seed_row.addWidget(self.seed, 1)
        self.dice = QToolButton(text="Random", objectName="Dice", toolTip="Roll a new random seed.")
        self.dice.clicked.connect(self.roll_seed)
        seed_row.addWidget(self.dice)
        self.seed_lock = QToolButton(text="Lock", objectName="SeedLock", checkable=True)
        self.seed_lock.setToolTip("Locked: every Generate uses this seed. Unlocked: a new random seed each time.")
        self.seed_lock.toggled.connect(lambda on: self.seed_lock.setText("Locked" if on else "Lock"))
        seed_row.addWidget(self.seed_lock)
        form.addRow("Seed", seed_row)
        lay.addLayout(form)

        # size -------------------------------------------------------------------------------------
        lay.addWidget(_section("Size"))
        presets = QHBoxLayout()
        self.size_preset = _combo()
        self.size_preset.setAccessibleName("Size preset")
        for label, w, h in SIZE_PRESETS:
            self.size_preset.addItem(label, (w, h))
        self.size_preset.addItem("Custom", None)
        self.size_preset.setToolTip("Common sizes; SD 1.x models are trained at 512, SDXL at 1024.")
        self.size_preset.activated.connect(self._apply_preset)
        presets.addWidget(self.size_preset, 1)
        swap = QToolButton(text="⇄", toolTip="Swap width and height.")
        swap.clicked.connect(self._swap_size)
        presets.addWidget(swap)  # beside the presets: the width × height row stays narrow enough for a small screen
        lay.addLayout(presets)
        dims = QHBoxLayout()
        self.width_ = _size_spin("Width in pixels (a multiple of 8).")
        self.height_ = _size_spin("Height in pixels (a multiple of 8).")
        self.width_.valueChanged.connect(self._sync_preset)
        self.height_.valueChanged.connect(self._sync_preset)
        dims.addWidget(self.width_, 1)
        dims.addWidget(QLabel("×", alignment=Qt.AlignmentFlag.AlignCenter))
        dims.addWidget(self.height_, 1)
        lay.addLayout(dims)

        form2 = _form()
        form2.setLabelAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        self.batch = QSpinBox(minimum=1, maximum=100, value=1)
        self.batch.setToolTip("How many runs to queue with one Generate (seed, seed+1, …).")
        form2.addRow("Batch count", self.batch)
        lay.addLayout(form2)

        # hires fix (A1111's second pass at a larger size) ------------------------------------------
        self.hires = HiresSection()
        for spin in (self.width_, self.height_, self.steps):
            spin.valueChanged.connect(
                lambda _v: self.hires.set_base(self.width_.value(), self.height_.value(), self.steps.value())
            )
        lay.addWidget(self.hires)

        # advanced ---------------------------------------------------------------------------------
        adv = QCollapsible("Advanced")
        adv.setObjectName("Advanced")
        adv_body = QWidget()
        form3 = _form(adv_body)
        form3.setContentsMargins(0, 4, 0, 0)
        self.rescale = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.rescale.setRange(0.0, 1.0)
        self.rescale.setSingleStep(0.05)
        self.rescale.setDecimals(2)
        self.rescale.setToolTip(
            "Guidance rescale (0–1): tames over-saturation at high guidance; 0.7 suits v-prediction models."
        )
        form3.addRow("Guidance rescale", self.rescale)
        self.guidance_end = QLabeledDoubleSlider(Qt.Orientation.Horizontal)
        self.guidance_end.setRange(0.0, 1.0)
        self.guidance_end.setSingleStep(0.05)
        self.guidance_end.setDecimals(2)
        self.guidance_end.setValue(1.0)
        self.guidance_end.setToolTip(
            "Guidance on this share of the steps only (1 = every step). The early steps set the "
            "layout; stopping guidance after them keeps high CFG from distorting edges, and "
            "the unguided steps run twice as fast."
        )
        form3.addRow("Guidance end", self.guidance_end)
        self.preview = _combo()
        for mode, label in PREVIEW_LABELS.items():
            self.preview.addItem(label, mode.value)
        self.preview.setToolTip(
            "How each step is previewed: x0 (default) is the model's estimate of the finished picture, drawn by a "
            "tiny decoder when there is one; the noisy latent is what the sampler holds. Never changes the image."
        )
        self.preview.currentIndexChanged.connect(
            lambda _i: self.preview_every.setEnabled(self.preview.currentData() == PreviewMode.VAE.value)
        )
        form3.addRow("Preview", self.preview)
        self.preview_every = QSpinBox(minimum=1, maximum=500, value=5, enabled=False)
        self.preview_every.setToolTip("With the full VAE preview: decode every N steps.")
        form3.addRow("Decode every", self.preview_every)
        adv.addWidget(adv_body)
        lay.addWidget(adv)
        lay.addStretch(1)

        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QScrollArea.Shape.NoFrame)
        scroll.setWidget(inner)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setMinimumWidth(inner.minimumSizeHint().width() + scroll.verticalScrollBar().sizeHint().width() + 4)

        # actions ----------------------------------------------------------------------------------
        buttons = QHBoxLayout()
        buttons.setContentsMargins(12, 6, 12, 12)
        self.generate_button = QPushButton("Generate", objectName="Generate")
        self.generate_button.setToolTip("Queue this request (Ctrl+Enter).")
        self.generate_button.setMinimumHeight(38)
        self.generate_button.clicked.connect(self.generateRequested)
        self.cancel_button = QPushButton("Cancel", objectName="Cancel")
        self.cancel_button.setToolTip("Stop the running generation within one step (Esc).")
        self.cancel_button.setMinimumHeight(38)
        self.cancel_button.clicked.connect(self.cancelRequested)
        buttons.addWidget(self.generate_button, 3)
        buttons.addWidget(self.cancel_button, 1)

        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.setSpacing(0)
        outer.addWidget(scroll, 1)
        outer.addLayout(buttons)
        self.set_size(512, 512)
        from studio.qt.generate.family_ui import FamilyUi

        self.family = FamilyUi(self)  # the chosen model's family: negative prompt, guidance, encoders
        self.update_token_counts()

    # -- model ----------------------------------------------------------------------------------------
    # The box shows a short name (library.model_label) and keeps the model's value, a path or "demo",
    # as the item's data; the full path is in the tooltip. A path typed into the box is used as typed.
    def model_name(self) -> str:
        text = self.model.currentText().strip()
        i = self.model.currentIndex()
        if i < 0 or self.model.itemText(i) != text:
            i = self.model.findText(text, Qt.MatchFlag.MatchExactly)
        if i >= 0 and self.model.itemData(i):
            return str(self.model.itemData(i))
        return text or "demo"

    def set_model(self, model: str) -> None:
        i = self.model.findData(model)
        if i < 0:
            i = self._add_model_item(0, model)
        self.model.setCurrentIndex(i)
        self.model.setEditText(self.model.itemText(i))
        self._model_text_to_start()
        self._update_model_tip()

    def _add_model_item(self, index: int, model: str) -> int:
        label = library.model_label(model)
        taken = {self.model.itemText(i) for i in range(self.model.count())}
        # Two models of one name: say where each one is ("demo" and the demo model's folder are one model).
        if label in taken and label != library.DEMO_LABEL:
            label = f"{label} ({Path(model).parent.name})" if Path(model).parent.name else model
            if label in taken:
                label = model
        self.model.insertItem(index, label, model)
        self.model.setItemData(index, model, Qt.ItemDataRole.ToolTipRole)
        return index

    def _update_model_tip(self) -> None:
        model = self.model_name()
        where = str(demo_model_dir()) if model == "demo" else model
        self.model.setToolTip(
            f"{where}\n\nThe model to draw with: the bundled demo model, a diffusers folder or a "
            ".safetensors file. Recent models are listed."
        )

    # -- VAE ------------------------------------------------------------------------------------------
    def set_recipe_vae(self, vae: str | None) -> None:
        """Keep `vae` (a recipe's, "" for the model's own) for the current model; None: the default again."""
        self._recipe_vae = None if vae is None else (self.model_name(), vae)
        self.update_vae_note()

    def recipe_vae(self) -> str | None:
        """The VAE a loaded recipe pinned, while its model is still the chosen one; else None."""
        if self._recipe_vae is not None and self._recipe_vae[0] == self.model_name():
            return self._recipe_vae[1]
        return None

    def recipe_vae_differs(self) -> bool:
        """A recipe's VAE is pinned and differs from the default VAE: the note and "Use default" show."""
        vae = self.recipe_vae()
        return vae is not None and vae != self.default_vae(self.model_name())

    def update_vae_note(self) -> None:
        vae = self.recipe_vae()
        if vae is None:
            self._recipe_vae = None  # another model was chosen: the recipe's VAE went with its model
        shown = self.recipe_vae_differs()
        if shown:
            name = Path(vae).name if vae else "the model's own"
            self.vae_note.setText(f"VAE from the recipe: {name}")
            self.vae_note.setToolTip(
                vae or "The model's own VAE, as the recipe was made (a default VAE is set for this model)."
            )
        self.vae_note.setVisible(shown)
        self.vae_default.setVisible(shown)

    def set_recent_models(self, models: list[str]) -> None:
        current = self.model_name()
        self.model.blockSignals(True)
        self.model.clear()
        for m in dict.fromkeys(["demo", *models]):
            self._add_model_item(self.model.count(), m)
        self.set_model(current)
        self.model.blockSignals(False)
        self._update_model_tip()

    def choose_model_folder(self) -> None:
        path = QFileDialog.getExistingDirectory(self, "Choose a diffusers model folder")
        if path:
            self.set_model(path)
            self.modelChosen.emit(path)

    def choose_model_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Choose a checkpoint", str(Path.home()), "Checkpoints (*.safetensors *.gguf);;All files (*)"
        )
        if path:
            self.set_model(path)
            self.modelChosen.emit(path)

    # -- seed, size, guidance -------------------------------------------------------------------------
    def roll_seed(self) -> int:
        s = random.randint(0, MAX_SEED)
        self.seed.setValue(s)
        return s

    def _snap_guidance(self, v: float) -> None:
        snapped = round(float(v) * 2) / 2
        if abs(snapped - v) > 1e-9:
            self.guidance.setValue(snapped)

    def set_size(self, w: int, h: int) -> None:
        self.width_.setValue(w)
        self.height_.setValue(h)
        self._sync_preset()

    def _apply_preset(self, index: int) -> None:
        wh = self.size_preset.itemData(index)
        if wh:
            self.set_size(*wh)

    def _swap_size(self) -> None:
        self.set_size(self.height_.value(), self.width_.value())

    def _sync_preset(self, *_: Any) -> None:
        wh = (self.width_.value(), self.height_.value())
        idx = next(
            (i for i in range(self.size_preset.count()) if self.size_preset.itemData(i) == wh),
            self.size_preset.count() - 1,
        )
        self.size_preset.blockSignals(True)
        self.size_preset.setCurrentIndex(idx)
        self.size_preset.blockSignals(False)

    def _model_text_to_start(self) -> None:
        """Show the start of a long model path (the model box is editable, so it has a line edit)."""
        editor = self.model.lineEdit()
        if editor is not None:
            editor.setCursorPosition(0)

    def insert_prompt_text(self, text: str) -> None:
        """Insert text at the prompt's cursor (a plugin panel's `<lora:name:weight>`)."""
        self.prompt.insertPlainText(text)

    def set_sampler(self, name: str, schedule: str | None = None) -> None:
        """Choose a sampler and schedule type; a combined name ("DPM++ 2M Karras") sets both."""
        self.sampler_row.set(name, schedule)

    # -- tokens ---------------------------------------------------------------------------------------
    def set_tokenizer(self, tokenizer: Any) -> None:
        """A TokenCounter (from the engine thread), or a bare tokenizer (then embeddings are not counted)."""
        self._tokenizer = tokenizer if isinstance(tokenizer, TokenCounter) else TokenCounter.from_tokenizer(tokenizer)
        self.update_token_counts()

    def count_tokens(self, text: str) -> tuple[int, int] | None:
        """(tokens used, tokens its chunks hold), as A1111 counts them; None before the tokenizer is ready."""
        if not text.strip():
            return 0, TOKEN_LIMIT
        if self._tokenizer is None:
            return None
        return self._tokenizer.count(text, self.steps.value())

    def update_token_counts(self) -> None:
        family = getattr(self, "family", None)
        for edit, label in ((self.prompt, self.prompt_tokens), (self.negative, self.negative_tokens)):
            counted = self.count_tokens(edit.toPlainText())
            n = counted[0] if counted is not None else None
            both = family.token_text(n, edit.toPlainText(), TOKEN_LIMIT) if family is not None else None
            if both is not None:  # FLUX/SD3: each encoder's count (CLIP reads its first 75, T5 the rest)
                label.setText(both[0])
                state = both[1]
            elif counted is None:
                label.setText(f"…/{TOKEN_LIMIT}")
                state = "unknown"
            else:
                label.setText(f"{counted[0]}/{counted[1]}")
                state = "chunks" if counted[1] > TOKEN_LIMIT else "ok"
            label.setProperty("state", state)
            label.style().unpolish(label)
            label.style().polish(label)

    # -- request --------------------------------------------------------------------------------------
    def fields(self) -> dict[str, Any]:
        return dict(
            model=self.model_name(),
            prompt=self.prompt.toPlainText().strip(),
            negative_prompt=self.negative.toPlainText().strip() if self.family.uses_negative() else "",
            steps=self.steps.value(),
            guidance_scale=round(float(self.guidance.value()) * 2) / 2,
            guidance_rescale=round(float(self.rescale.value()), 2),
            guidance_end=round(float(self.guidance_end.value()), 2),
            seed=int(self.seed.value()),
            width=max(8, round(self.width_.value() / 8) * 8),
            height=max(8, round(self.height_.value() / 8) * 8),
            scheduler=self.scheduler.currentText(),
            schedule_type=self.schedule.currentText() or samplers.AUTOMATIC,
            preview=self.preview.currentData(),
            preview_every=self.preview_every.value(),
        )

    def build_requests(self) -> list[GenerationRequest]:
        """The requests one Generate queues (batch count); rolls the seed first when unlocked."""
        if not self.seed_lock.isChecked():
            self.roll_seed()
        fields = self.fields()
        fields.update(self.image_input.request_fields(fields["width"], fields["height"]))
        if fields.get("init_image") is None:  # hires fix is for text-to-image runs (the Edit tab's are edits)
            fields.update(self.hires.request_fields())
        for contribute in self.field_contributors:
            fields.update(contribute())
        vae = self.recipe_vae()
        if vae is not None:  # a recreated recipe keeps the VAE it was made with
            fields["vae"] = vae
        base = GenerationRequest.create(**fields)
        return [
            base if i == 0 else base.replace(seed=(base.seed + i) % (MAX_SEED + 1)) for i in range(self.batch.value())
        ]

    def apply_recommendation(self, rec: Any) -> None:
        """A model family's recommended settings (core.recommend.Recommendation) into the panel."""
        self.steps.setValue(rec.steps)
        self.guidance.setValue(rec.cfg)
        self.guidance_end.setValue(rec.cfg_end)
        self.set_size(rec.width, rec.height)
        self.set_sampler(rec.scheduler, rec.schedule_type)

    def set_request(self, req: GenerationRequest, keep_vae: bool = False) -> None:
        """Load `req` into the panel; keep_vae: Generate uses its VAE too (else the default VAE)."""
        self.set_model(req.model)
        self.set_recipe_vae(req.vae if keep_vae else None)
        self.prompt.setPlainText(req.prompt)
        self.negative.setPlainText(req.negative_prompt)
        self.steps.setValue(req.steps)
        self.guidance.setValue(req.guidance_scale)
        self.rescale.setValue(req.guidance_rescale)
        self.guidance_end.setValue(req.guidance_end)
        self.seed.setValue(req.seed)
        self.set_size(req.width, req.height)
        self.set_sampler(req.scheduler, req.schedule_type)
        idx = self.preview.findData(PreviewMode(req.preview).value)
        if idx >= 0:
            self.preview.setCurrentIndex(idx)
        self.preview_every.setValue(req.preview_every)
        self.hires.set_request(req)
        self.update_token_counts()


def _form(parent: QWidget | None = None) -> QFormLayout:
    """A form whose labels go above their fields when the panel is too narrow for both side by side."""
    form = QFormLayout(parent)
    form.setRowWrapPolicy(QFormLayout.RowWrapPolicy.WrapLongRows)
    return form


def _combo() -> QComboBox:
    """A combo box that may be narrower than its longest entry (the closed box elides it; the open
    list shows it whole), so long labels do not set the panel's minimum width."""
    combo = QComboBox()
    combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(10)
    return combo


def _section(text: str) -> QLabel:
    label = QLabel(text.upper())
    label.setObjectName("Section")
    return label


def _size_spin(tip: str) -> QSpinBox:
    s = QSpinBox(minimum=8, maximum=8192, singleStep=8, value=512)
    s.setStepType(QSpinBox.StepType.DefaultStepType)
    s.setToolTip(tip)
    s.setKeyboardTracking(False)
    s.editingFinished.connect(lambda: s.setValue(max(8, round(s.value() / 8) * 8)))
    s.setSuffix(" px")
    return s
