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
from studio.core.embeddings import WIDTH_ARCH as EMBEDDING_WIDTH_ARCH
from studio.core.embeddings import embedding_keys
from studio.core.errors import StudioError
from studio.core.families import FAMILIES
from studio.core.flowmodels import _precision as _flow_precision
from studio.core.flowmodels import encoder_kind, identify_flow, read_any_header, vae16_config, variant_label

MODEL_SUFFIXES = {".safetensors", ".gguf", ".ckpt", ".pt", ".pth", ".bin"}
ARCH_BY_CONTEXT = {768: "sd1", 1024: "sd2", 2048: "sdxl", 1280: "sdxl-refiner"}
DTYPE_NAMES = {
    "F16": "fp16",
    "BF16": "bf16",
    "F32": "fp32",
    "F64": "fp64",
    "F8_E4M3": "fp8",
    "F8_E5M2": "fp8",
    "F8_E4M3FN": "fp8",
}


@dataclass
class CatalogueEntry:
    path: str
    # checkpoint | inpaint checkpoint | LoRA | ControlNet | VAE | tiny autoencoder | text encoder | upscaler |
    # embedding (textual inversion) | IP-Adapter | image encoder | unknown
    kind: str
    arch: str = ""  # a studio.core.families key (sd1 | sd2 | sdxl | sdxl-refiner | sd3 | flux), an upscaler's, or ""
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


def _lora_arch(tensors: dict[str, TensorInfo], meta: dict[str, str] | None = None) -> str:
    keys = list(tensors)
    if any(("double_blocks" in k or "single_blocks" in k or "single_transformer_blocks" in k) for k in keys):
        return "flux"
    if any("joint_blocks" in k for k in keys):
        return "sd3"
    if any(k.startswith("transformer.transformer_blocks.") for k in keys):  # diffusers' FLUX or SD3 layout
        base = (meta or {}).get("ss_base_model_version", "").lower()
        if base.startswith(("flux", "sd3")):
            return "flux" if base.startswith("flux") else "sd3"
        widths = {t.shape[1] for k, t in tensors.items() if k.endswith("attn.to_q.lora_A.weight")}
        return "flux" if 3072 in widths else "sd3" if widths & {1536, 2432} else ""
    if any(k.startswith(("lora_te2_", "lora_te2.")) or "text_encoder_2" in k for k in keys):
        return "sdxl"
    arch = _context_arch(tensors, r"attn2.*to_k.*(lora_down|lora_A|lora\.down)")
    return arch


def identify_file(path: Path) -> CatalogueEntry:
    size = path.stat().st_size
    entry = CatalogueEntry(str(path), "unknown", size_bytes=size)
    if path.suffix.lower() not in (".safetensors", ".gguf"):
        entry.usable = False
        entry.reason = "pickled file (.ckpt/.bin/.pt): refused unless pickled models are allowed; prefer .safetensors"
        entry.kind = "checkpoint" if path.suffix.lower() == ".ckpt" else "unknown"
        if path.parent.name.lower() == "embeddings":  # A1111's .pt embeddings: refused like every pickle
            entry.kind = "embedding"
            entry.reason = (
                "pickled embedding (.pt/.bin): refused, as loading a pickle can run code; use its .safetensors"
            )
        return entry
    try:
        tensors, meta = read_any_header(path)
    except StudioError as exc:
        entry.usable = False
        entry.reason = str(exc)
        return entry
    entry.precision = _precision(tensors)
    entry.variant = _variant(path.stem, meta)
    keys = list(tensors)
    if _flow_entry(entry, path, tensors):
        return entry
    if path.suffix.lower() == ".gguf":
        entry.usable, entry.reason = False, "a GGUF file that is not a FLUX.1 or SD 3 transformer"
        return entry
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
        if info.arch == "sd2" and info.prediction_source == "default":
            entry.reason = "ε or v-prediction: the file does not say; the model is asked when it loads"
        return entry
    emb = embedding_keys(tensors)
    if emb:  # a textual-inversion embedding: its name in a prompt stands for its vectors
        entry.kind = "embedding"
        vectors = next(iter(emb.values())).shape
        entry.variant = f"{vectors[0] if len(vectors) == 2 else 1} vectors"
        widths = sorted(t.shape[-1] for t in emb.values())
        entry.arch = "sdxl" if set(emb) == {"clip_l", "clip_g"} else EMBEDDING_WIDTH_ARCH.get(widths[0], "")
        return entry
    what = describe_non_checkpoint(keys)
    if what == "a LoRA":
        entry.kind, entry.arch = "LoRA", _lora_arch(tensors, meta)
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
    elif any(k.startswith("ip_adapter.") for k in keys) and any(k.startswith("image_proj.") for k in keys):
        entry.kind = "IP-Adapter"
        k_ip = next(t for k, t in tensors.items() if k.endswith(".to_k_ip.weight"))
        entry.arch = ARCH_BY_CONTEXT.get(k_ip.shape[1], "")
        entry.variant = "plus" if "image_proj.latents" in tensors else ""
    elif "visual_projection.weight" in tensors and any(k.startswith("vision_model.") for k in keys):
        entry.kind = "image encoder"  # a CLIP vision model, as IP-Adapters need
        entry.variant = f"{tensors['visual_projection.weight'].shape[1]} wide"
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


def _flow_entry(entry: CatalogueEntry, path: Path, tensors: dict[str, TensorInfo]) -> bool:
    """Fill `entry` for a FLUX/SD3 file, a text encoder or a 16-channel VAE; False for anything else."""
    try:
        info = identify_flow(path, tensors)
    except (StudioError, KeyError, IndexError) as exc:
        entry.kind, entry.usable, entry.reason = "checkpoint", False, f"unreadable FLUX/SD3 file: {exc}"
        return True
    if info is not None:
        fam = FAMILIES[info.arch]
        entry.kind = "inpaint checkpoint" if info.variant == "fill" else "checkpoint"
        entry.arch = info.arch
        entry.variant = ", ".join(v for v in (variant_label(info.arch, info.variant), entry.variant) if v)
        entry.precision = info.precision or entry.precision
        missing = [e.label for e in fam.encoders if e.slot not in info.encoders]
        if missing or info.vae is None:
            needs = missing + ([] if info.vae is not None else ["a VAE"])
            listed = ", ".join(needs[:-1]) + (" and " if len(needs) > 1 else "") + needs[-1]
            entry.reason = f"transformer only: needs separate files: {listed}"
        if info.precision == "nf4":
            entry.reason = ", ".join(x for x in (entry.reason, "bitsandbytes NF4: CUDA only") if x)
        return True
    found = encoder_kind(tensors)
    if found is not None:
        slot, cfg = found
        width = cfg.get("hidden_size") or cfg.get("d_model")
        label = {"clip_l": "CLIP-L", "clip_g": "CLIP-G", "t5xxl": "T5-XXL" if width == 4096 else "T5"}[slot]
        if width not in (768, 1280, 4096):  # not a full-size encoder: the width cannot tell CLIP-L from G
            label = f"{'T5' if slot == 't5xxl' else 'CLIP'}, width {width}"
        entry.kind, entry.variant = "text encoder", label
        return True
    vae = vae16_config(tensors, "flux")
    if vae is not None and vae["latent_channels"] == 16:
        entry.kind, entry.variant = "VAE", "16-channel: FLUX / SD 3"
        return True
    return False


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
            if cls.startswith(("Flux", "StableDiffusion3")):
                return _flow_folder(entry, path, cls)
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
            if "CLIPVisionModelWithProjection" in config.read_text():  # an IP-Adapter's image_encoder/
                entry.kind = "image encoder"
                return entry
    except (OSError, ValueError) as exc:
        entry.usable, entry.reason = False, f"unreadable config: {exc}"
        return entry
    return None


def _flow_folder(entry: CatalogueEntry, path: Path, cls: str) -> CatalogueEntry:
    """A FLUX/SD3 diffusers folder from its transformer's config (and weight header for precision)."""
    cfg = json.loads((path / "transformer" / "config.json").read_text())
    if cls.startswith("Flux"):
        entry.arch = "flux"
        variant = "fill" if cls == "FluxFillPipeline" else "dev" if cfg.get("guidance_embeds") else "schnell"
    else:
        entry.arch = "sd3"
        variant = (
            "3.5-medium" if cfg.get("dual_attention_layers") else "3.5-large" if cfg.get("qk_norm") else "3-medium"
        )
    entry.kind = "inpaint checkpoint" if variant == "fill" else "checkpoint"
    entry.variant = ", ".join(v for v in (variant_label(entry.arch, variant), _variant(path.name, {})) if v)
    weights = sorted((path / "transformer").glob("*.safetensors"))
    if not weights:
        entry.usable, entry.reason = False, "no .safetensors weights (pickled .bin only?)"
        return entry
    try:
        entry.precision = _flow_precision(read_header(weights[0])[0])
    except StudioError as exc:
        entry.usable, entry.reason = False, str(exc)
    return entry


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
