"""The Prompt panel as the chosen model's family means it (studio.core.families).

- FLUX.1: no negative prompt — the box is disabled and a note says why (distilled guidance has no
  unconditional pass; schnell has no guidance at all); the guidance slider is "Guidance" (FLUX's
  distilled guidance), not "CFG scale"; guidance rescale and guidance end do not apply.
- FLUX.1 and SD 3/3.5: only the flow-matching schedulers (Euler, Heun, DPM++ 2M); the token counter
  shows each encoder's count (CLIP's 75-token window, T5's limit).
- A file that holds only the transformer: a "Text encoders" row to choose the CLIP/T5 files (filled
  from ComfyUI's sibling folders when they hold them), sent as the request's `text_encoders`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject
from PySide6.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QToolButton, QWidget

from studio.core import library
from studio.core.families import FAMILIES, guidance_kind, guidance_label, negative_prompt_note
from studio.core.request import SCHEDULER_NAMES

ENCODER_DIRS = ("text_encoders", "clip")


def suggest_encoders(model: Path, slots: list[str]) -> list[str]:
    """Encoder files ComfyUI keeps beside a transformer-only file (`models/unet/x` → `models/clip/…`),
    one per slot needed, by header; [] when not all are there."""
    from studio.core.flowmodels import encoder_kind, read_any_header

    root = model.parent.parent
    found: dict[str, tuple[int, str]] = {}
    for sub in ENCODER_DIRS:
        folder = root / sub
        if not folder.is_dir():
            continue
        for f in sorted(folder.glob("*.safetensors")):
            try:
                kind = encoder_kind(read_any_header(f)[0])
            except Exception:  # noqa: BLE001 — unreadable: not offered
                continue
            if kind is None:
                continue
            slot, cfg = kind
            width = int(cfg.get("hidden_size") or cfg.get("d_model") or 0)
            if slot == "clip_l" and "clip_g" in slots and "clip_l" in found:  # two CLIPs: the wider is G
                other_w, other = found["clip_l"]
                if width > other_w:
                    found["clip_g"] = (width, str(f))
                else:
                    found["clip_g"], found["clip_l"] = (other_w, other), (width, str(f))
                continue
            found.setdefault(slot, (width, str(f)))
    if not all(s in found for s in slots):
        return []
    return [found[s][1] for s in slots]


def suggest_vae(model: Path) -> str:
    """A 16-channel VAE in ComfyUI's models/vae beside a transformer-only file ("" when none)."""
    from studio.core.flowmodels import read_any_header, vae16_config

    folder = model.parent.parent / "vae"
    for f in sorted(folder.glob("*.safetensors")) if folder.is_dir() else []:
        try:
            cfg = vae16_config(read_any_header(f)[0], "flux")
        except Exception:  # noqa: BLE001
            continue
        if cfg is not None and cfg["latent_channels"] == 16:
            return str(f.resolve())
    return ""


class FamilyUi(QObject):
    """Keeps the Prompt panel in step with the chosen model's family."""

    def __init__(self, panel: Any) -> None:
        super().__init__(panel)
        self.p = panel
        self.arch = ""
        self.variant = ""
        self.needs: list[str] = []  # encoder slots the chosen denoiser-only file needs
        self.encoders: list[str] = []
        self.vae = ""  # a VAE from ComfyUI's models/vae beside it, used when no default VAE is set
        self._t5: Any = None
        self._t5_limit = 0
        self._model = None
        p = panel
        self.negative_note = QLabel("", objectName="NegativeNote", wordWrap=True)
        self.negative_note.hide()
        p.negative_slot.addWidget(self.negative_note)
        self.encoders_row = QWidget(objectName="TextEncoders")
        row = QHBoxLayout(self.encoders_row)
        row.setContentsMargins(0, 0, 0, 0)
        self.encoders_label = QLabel("", objectName="TextEncodersLabel", wordWrap=True)
        row.addWidget(self.encoders_label, 1)
        self.choose = QToolButton(text="Text encoders…", objectName="ChooseEncoders")
        self.choose.setToolTip(
            "Choose the CLIP and T5 text-encoder files this transformer-only model runs with "
            "(ComfyUI keeps them in models/clip or models/text_encoders)."
        )
        self.choose.clicked.connect(self.choose_encoders)
        row.addWidget(self.choose)
        self.encoders_row.hide()
        p.encoders_slot.addWidget(self.encoders_row)
        self.guidance_row_label = p.guidance_form.labelForField(p.guidance)
        p.model.currentTextChanged.connect(lambda _t: self.update())
        p.field_contributors.append(self.request_fields)

    # -- the chosen model ------------------------------------------------------------------------
    def update(self) -> None:
        model = self.p.model_name()
        if model == self._model:
            return
        self._model = model
        entry = library.identify(model) if model else None
        self.arch = entry.arch if entry is not None else ""
        self.variant = (entry.variant or "").lower() if entry is not None else ""
        fam = FAMILIES.get(self.arch)
        self.needs = []
        if fam is not None and fam.encoders and entry is not None and "transformer only" in entry.reason:
            self.needs = [e.slot for e in fam.encoders]
        self.encoders = suggest_encoders(Path(model), self.needs) if self.needs else []
        self.vae = suggest_vae(Path(model)) if self.needs else ""
        self._t5, self._t5_limit = self._t5_tokenizer(Path(model), fam)
        self.apply()

    def apply(self) -> None:
        p = self.p
        kind = guidance_kind(self.arch, self.variant)
        note = negative_prompt_note(self.arch, self.variant)
        p.negative.setEnabled(not note)
        p.negative.setPlaceholderText(
            "Not used by this model (see above)." if note else "What to keep out: blurry, text, watermark…"
        )
        self.negative_note.setText(note)
        self.negative_note.setVisible(bool(note))
        label = guidance_label(self.arch, self.variant)
        if self.guidance_row_label is not None:
            self.guidance_row_label.setText(label if label != "CFG" else "CFG scale")
        p.guidance.setEnabled(kind != "none")
        p.guidance.setToolTip(
            {
                "distilled": "FLUX's distilled guidance: a number the model was trained to follow (3.5 is typical, "
                "Fill 30). One pass a step; there is no negative prompt.",
                "none": "FLUX.1 schnell runs without guidance: the value is not used.",
            }.get(
                kind, "Guidance scale (CFG): how strictly to follow the prompt. 5–9 is typical; high values look harsh."
            )
        )
        cfg = kind == "cfg"
        for w in (p.rescale, p.guidance_end):
            w.setEnabled(cfg)
            w.setToolTip(
                w.toolTip().split("\n\nNot used")[0]
                + ("" if cfg else "\n\nNot used by FLUX.1: its guidance is distilled into the model, on every step.")
            )
        fam = FAMILIES.get(self.arch)
        names = list(fam.schedulers) if fam is not None and fam.flow else list(SCHEDULER_NAMES)
        current = p.scheduler.currentText()
        if [p.scheduler.itemText(i) for i in range(p.scheduler.count())] != names:
            p.scheduler.blockSignals(True)
            p.scheduler.clear()
            p.scheduler.addItems(names)
            p.scheduler.setCurrentText(current if current in names else names[0])
            p.scheduler.blockSignals(False)
        p.sampler_row.flow = bool(fam is not None and fam.flow)  # a flow model's schedule is its own
        p.sampler_row.sync()
        self.encoders_row.setVisible(bool(self.needs))
        self._show_encoders()
        p.update_token_counts()

    def _show_encoders(self) -> None:
        fam = FAMILIES.get(self.arch)
        if not self.needs or fam is None:
            return
        if self.encoders:
            vae = self._vae()
            self.encoders_label.setText(
                "Text encoders: "
                + ", ".join(Path(e).name for e in self.encoders)
                + (f"; VAE: {Path(vae).name}" if vae else "; no VAE: set one in Models ▸ Models…")
            )
            self.encoders_label.setProperty("state", "ok")
        else:
            wanted = " + ".join(e.label for e in fam.encoders)
            self.encoders_label.setText(f"This file holds only the transformer: choose its text encoders ({wanted}).")
            self.encoders_label.setProperty("state", "missing")
        self.encoders_label.style().unpolish(self.encoders_label)
        self.encoders_label.style().polish(self.encoders_label)

    def choose_encoders(self) -> None:
        start = Path(self.p.model_name()).parent.parent
        files, _ = QFileDialog.getOpenFileNames(
            self.p, "Choose the text encoders", str(start), "Text encoders (*.safetensors);;All files (*)"
        )
        if files:
            self.set_encoders(files)

    def set_encoders(self, files: list[str]) -> None:
        self.encoders = [str(Path(f).resolve()) for f in files]
        self._show_encoders()
        self._t5, self._t5_limit = self._t5_tokenizer(Path(self.p.model_name()), FAMILIES.get(self.arch))
        self.p.update_token_counts()

    def uses_negative(self) -> bool:
        return not negative_prompt_note(self.arch, self.variant)

    def _vae(self) -> str:
        return self.p.default_vae(self.p.model_name()) or self.vae

    def request_fields(self) -> dict[str, Any]:
        if not (self.needs and self.encoders):
            return {}
        out: dict[str, Any] = {"text_encoders": tuple(self.encoders)}
        if self.vae and not self.p.default_vae(self.p.model_name()):
            out["vae"] = self.vae
        return out

    # -- token counts ------------------------------------------------------------------------------
    def _t5_tokenizer(self, model: Path, fam) -> tuple[Any, int]:
        """The model's T5 tokenizer (a diffusers folder's tokenizer_2/3, or the one beside the T5 file)."""
        if fam is None or not fam.t5_limit:
            return None, 0
        limit = 256 if "schnell" in self.variant else fam.t5_limit  # FLUX dev/Fill 512; schnell and SD3 256
        folders = [model / "tokenizer_3", model / "tokenizer_2", model.parent / "t5_tokenizer"]
        folders += [Path(e).parent / "t5_tokenizer" for e in self.encoders]
        for f in folders:
            if (f / "tokenizer.json").is_file():
                try:
                    from transformers import T5TokenizerFast

                    return T5TokenizerFast.from_pretrained(str(f), local_files_only=True), limit
                except Exception:  # noqa: BLE001 — not a T5 tokenizer (SD3's tokenizer_2 is CLIP's)
                    continue
        return None, limit

    def t5_count(self, text: str) -> int | None:
        if self._t5 is None:
            return None
        return max(0, len(self._t5(text, truncation=False).input_ids) - 1)

    def token_text(self, clip_count: int | None, text: str, clip_limit: int) -> tuple[str, str] | None:
        """("CLIP n/75 · T5 m/511", state) for a model with T5; None for a CLIP-only model."""
        if not self._t5_limit:
            return None
        t5 = self.t5_count(text) if text.strip() else 0
        t5_limit = self._t5_limit - 1
        clip = "…" if clip_count is None else str(clip_count)
        t5s = "…" if t5 is None else str(t5)
        state = "over" if t5 is not None and t5 > t5_limit else "ok"
        return f"CLIP {clip}/{clip_limit} · T5 {t5s}/{t5_limit}", state
