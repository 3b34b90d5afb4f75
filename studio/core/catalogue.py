"""The model catalogue: what model files and folders are on disk, and what each one is.

Scanning reads only safetensors headers and JSON configs — never weights — so a folder of
hundreds of checkpoints is identified in moments. Every file with a model-like suffix is listed;
what cannot be used says why instead of being hidden.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from studio.core.checkpoint import (
    CLIP_SD1,
    CLIP_XL,
    OPENCLIP_SD2,
    OPENCLIP_XL,
    OPENCLIP_XL_REFINER,
    UNET,
    TensorInfo,
    describe_non_checkpoint,
    identify,
    read_header,
)
from studio.core.errors import StudioError

MODEL_SUFFIXES = {".safetensors", ".ckpt", ".pt", ".pth", ".bin"}
ARCH_BY_CONTEXT = {768: "sd1", 1024: "sd2", 2048: "sdxl", 1280: "sdxl-refiner"}
DTYPE_NAMES = {"F16": "fp16", "BF16": "bf16", "F32": "fp32", "F64": "fp64", "F8_E4M3": "fp8", "F8_E5M2": "fp8"}


@dataclass
class CatalogueEntry:
    path: str
    # checkpoint | inpaint checkpoint | LoRA | ControlNet | VAE | tiny autoencoder | text encoder | upscaler | unknown
    kind: str
    arch: str = ""  # sd1 | sd2 | sdxl | sdxl-refiner | "" when unknown
    variant: str = ""  # v-prediction, LCM, Turbo …
    precision: str = ""
    size_bytes: int = 0
    usable: bool = True
    reason: str = ""  # why it cannot be used, or what is uncertain
    source: str = ""  # which scanned folder it came from (demo, library, an extra folder); set by studio.core.library

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _precision(tensors: dict[str, TensorInfo]) -> str:
    counts = Counter(t.dtype for t in tensors.values())
    if not counts:
        return ""
    return DTYPE_NAMES.get(counts.most_common(1)[0][0], counts.most_common(1)[0][0].lower())


def _variant(name: str, meta: dict[str, str]) -> str:
    text = (name + " " + meta.get("modelspec.title", "") + " " + meta.get("modelspec.architecture", "")).lower()
    if "lcm" in text:
        return "LCM"
    if "turbo" in text or "lightning" in text:
        return "Turbo"
    return ""


def _context_arch(tensors: dict[str, TensorInfo], pattern: str) -> str:
    for k, t in tensors.items():
        if re.search(pattern, k) and len(t.shape) >= 2:
            return ARCH_BY_CONTEXT.get(t.shape[1], "")
    return ""


def _lora_arch(tensors: dict[str, TensorInfo]) -> str:
    keys = list(tensors)
    if any(k.startswith(("lora_te2_", "lora_te2.")) or "text_encoder_2" in k for k in keys):
        return "sdxl"
    arch = _context_arch(tensors, r"attn2.*to_k.*(lora_down|lora_A|lora\.down)")
    return arch


def identify_file(path: Path) -> CatalogueEntry:
    size = path.stat().st_size
    entry = CatalogueEntry(str(path), "unknown", size_bytes=size)
    if path.suffix.lower() != ".safetensors":
        entry.usable = False
        entry.reason = "pickled file (.ckpt/.bin/.pt): refused unless pickled models are allowed; prefer .safetensors"
        entry.kind = "checkpoint" if path.suffix.lower() == ".ckpt" else "unknown"
        return entry
    try:
        tensors, meta = read_header(path)
    except StudioError as exc:
        entry.usable = False
        entry.reason = str(exc)
        return entry
    entry.precision = _precision(tensors)
    entry.variant = _variant(path.stem, meta)
    keys = list(tensors)
    if any(k.startswith(UNET) for k in keys):
        try:
            info = identify(path)
        except StudioError as exc:
            entry.kind, entry.usable, entry.reason = "checkpoint", False, str(exc)
            return entry
        entry.kind = "inpaint checkpoint" if info.inpaint else "checkpoint"
        entry.arch = info.arch
        if info.prediction_type == "v_prediction":
            entry.variant = ", ".join(v for v in ("v-prediction", entry.variant) if v)
        return entry
    what = describe_non_checkpoint(keys)
    if what == "a LoRA":
        entry.kind, entry.arch = "LoRA", _lora_arch(tensors)
        entry.variant = meta.get("ss_base_model_version", "") or entry.variant
    elif what == "a ControlNet":
        entry.kind = "ControlNet"
        entry.arch = _context_arch(tensors, r"attn2\.to_k\.weight$")
    elif any(k.startswith(("encoder.layers.", "decoder.layers.")) for k in keys):
        entry.kind = "tiny autoencoder"
    elif what == "a VAE":
        entry.kind = "VAE"
    elif any(
        k.startswith(p)
        for k in keys
        for p in (CLIP_SD1, CLIP_XL, OPENCLIP_SD2, OPENCLIP_XL, OPENCLIP_XL_REFINER, "text_model.")
    ):
        entry.kind = "text encoder"
    else:
        _upscaler(entry, tensors, path.name, what)
    return entry


def _upscaler(entry: CatalogueEntry, tensors: dict[str, TensorInfo], name: str, what: str) -> None:
    """An upscaler (Real-ESRGAN, ESRGAN …: architecture and factor), or a file this studio does not know."""
    from studio.core import upscalers

    try:
        info = upscalers.identify(tensors, name)
    except upscalers.NotAnUpscaler:
        entry.usable, entry.reason = False, f"not a model this studio knows ({what})"
        return
    except StudioError as exc:  # an upscaler of an architecture not supported yet
        entry.kind, entry.usable, entry.reason = "upscaler", False, exc.message
        return
    entry.kind, entry.arch, entry.variant = "upscaler", info.arch, f"×{info.scale}"


def identify_folder(path: Path) -> CatalogueEntry | None:
    """A diffusers folder (pipeline or single component) from its JSON configs alone."""
    index = path / "model_index.json"
    config = path / "config.json"
    size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    entry = CatalogueEntry(str(path), "unknown", size_bytes=size)
    try:
        if index.is_file():
            data = json.loads(index.read_text())
            cls = str(data.get("_class_name", ""))
            unet = json.loads((path / "unet" / "config.json").read_text())
            entry.kind = "inpaint checkpoint" if unet.get("in_channels") == 9 else "checkpoint"
            entry.arch = ARCH_BY_CONTEXT.get(int(unet.get("cross_attention_dim") or 0), "")
            if "XL" in cls and not data.get("text_encoder", [None])[0]:
                entry.arch = "sdxl-refiner"
            elif "XL" in cls:
                entry.arch = "sdxl"
            elif not entry.arch:  # non-standard widths (tiny or pruned models): go by the text encoder
                entry.arch = "sd2" if unet.get("use_linear_projection") else "sd1"
            sched = path / "scheduler" / "scheduler_config.json"
            if sched.is_file() and json.loads(sched.read_text()).get("prediction_type") == "v_prediction":
                entry.variant = "v-prediction"
            entry.variant = ", ".join(v for v in (entry.variant, _variant(path.name, {})) if v)
            weights = list(path.glob("*/*.safetensors"))
            entry.precision = "fp16" if any(".fp16." in w.name for w in weights) else ""
            if not weights:
                entry.usable, entry.reason = False, "no .safetensors weights (pickled .bin only?)"
            return entry
        if config.is_file():
            cls = str(json.loads(config.read_text()).get("_class_name", ""))
            kinds = {
                "AutoencoderKL": "VAE",
                "AutoencoderTiny": "tiny autoencoder",
                "ControlNetModel": "ControlNet",
                "UNet2DConditionModel": "UNet",
            }
            if cls in kinds:
                entry.kind = kinds[cls]
                return entry
            if "CLIPTextModel" in config.read_text():
                entry.kind = "text encoder"
                return entry
    except (OSError, ValueError) as exc:
        entry.usable, entry.reason = False, f"unreadable config: {exc}"
        return entry
    return None


def scan(folder: str | Path, max_depth: int = 4) -> list[CatalogueEntry]:
    """Every model file and diffusers folder under `folder` (not descending into found folders)."""
    root = Path(folder).expanduser()
    if not root.exists():
        raise StudioError(f"Folder not found: {root}")
    if root.is_file():
        return [identify_file(root)]
    found: list[CatalogueEntry] = []

    def walk(d: Path, depth: int) -> None:
        entry = identify_folder(d)
        if entry is not None:
            found.append(entry)
            return
        try:
            children = sorted(d.iterdir())
        except OSError:
            return
        for c in children:
            if c.is_file() and c.suffix.lower() in MODEL_SUFFIXES:
                found.append(identify_file(c))
            elif c.is_dir() and depth < max_depth and not c.name.startswith("."):
                walk(c, depth + 1)

    walk(root, 0)
    return found
