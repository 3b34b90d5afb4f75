"""From a `GenerationRequest` (+ what the engine knew) to the words written into files.

`info` is a plain dict the engine or the gallery passes along; the keys read here:

- `model_sha256` (or `model_hash`): the checkpoint's SHA-256 (full, or at least 10 hex digits);
  when absent and `request.model` is a file, it is computed through the hash cache;
- `model_name`: what "Model:" says (default: the model's file/folder name without extension);
- `lora_hashes`: {lora name: sha256} (default: each LoraRef's sha256, else hashed from its path);
- `lora_addnet_hashes`: {lora name: addnet sha256} of every LoRA the run applied, the prompt's
  `<lora:…>` tags included (default: each LoraRef's file hashed); A1111's "Lora hashes";
- `ti_hashes`: {embedding name: sha256} of the textual-inversion embeddings the run used ("TI hashes");
- `kind`: txt2img / img2img / inpaint / outpaint / branch (default: derived from the request);
- `created`: a timezone-aware datetime (default: now);
- `sign`: False to skip the C2PA manifest (default True);
- `batch_index` / `image_seed`: which image of a batch this is and its own seed (A1111 writes the
  image's seed plus "Batch size" and "Batch pos"; the recipe JSON keeps the request as run);
- `software_version`: default the studio's version.
"""

from __future__ import annotations

import contextlib
import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from studio import __version__
from studio.core import hashing, hires, samplers
from studio.core.errors import StudioError
from studio.core.metadata import infotext
from studio.core.metadata.xmp import COMPOSITE, TRAINED
from studio.core.prompts import syntax
from studio.core.request import GenerationRequest, guidance_span

SOFTWARE = "studio"
KINDS = ("txt2img", "img2img", "inpaint", "outpaint", "branch", "upscale")


def kind_of(request: GenerationRequest, info: dict[str, Any] | None = None) -> str:
    kind = (info or {}).get("kind")
    if kind in KINDS:
        return str(kind)
    if request.upscale is not None:
        return "upscale"
    if request.branch is not None:
        return "branch"
    if request.init_image is not None:
        if request.outpaint is not None or "outpaint" in request.plugins:  # plugins: recipes from before the field
            return "outpaint"
        return "inpaint" if request.mask is not None else "img2img"
    return "txt2img"


def image_size(request: GenerationRequest) -> tuple[int, int]:
    """The (width, height) of the image a request makes: a hires fix's is its second pass's."""
    return hires.target_size(request) if request.hires is not None else (request.width, request.height)


def source_type_of(request: GenerationRequest) -> str:
    """IPTC digital source type: composite when a user's image went in, else trained media."""
    return COMPOSITE if request.init_image is not None else TRAINED


def model_display_name(request: GenerationRequest, info: dict[str, Any] | None = None) -> str:
    name = (info or {}).get("model_name") or ""
    if name:
        return str(name)
    model = request.model.rstrip("/\\")
    p = Path(model)
    if p.suffix.lower() in (".safetensors", ".ckpt", ".pt", ".bin", ".gguf"):
        return p.stem
    return p.name or model


def model_sha256(request: GenerationRequest, info: dict[str, Any] | None = None) -> str:
    info = info or {}
    sha = str(info.get("model_sha256") or info.get("model_hash") or "")
    if sha:
        return sha.lower()
    p = Path(request.model)
    if p.is_file():
        try:
            return hashing.file_sha256(p)
        except StudioError:
            return ""
    return ""


def lora_hashes(request: GenerationRequest, info: dict[str, Any] | None = None) -> dict[str, str]:
    given = dict((info or {}).get("lora_hashes") or {})
    out: dict[str, str] = {}
    for lora in request.loras:
        sha = given.get(lora.name) or lora.sha256
        if not sha and lora.path and Path(lora.path).is_file():
            try:
                sha = hashing.file_sha256(lora.path)
            except StudioError:
                sha = ""
        out[lora.name] = sha
    return out


def lora_addnet_hashes(request: GenerationRequest, info: dict[str, Any] | None = None) -> dict[str, str]:
    """{LoRA name: addnet SHA-256} of the LoRAs applied, for A1111's "Lora hashes" (unknown ones left out)."""
    out = {str(k): str(v) for k, v in dict((info or {}).get("lora_addnet_hashes") or {}).items() if v}
    for lora in request.loras:
        if lora.name not in out and lora.path and Path(lora.path).is_file():
            with contextlib.suppress(StudioError):
                out[lora.name] = hashing.addnet_sha256(lora.path)
    return out


def a1111_prompt(request: GenerationRequest) -> str:
    """The prompt as A1111 writes it: each LoRA of the request (LoRA panel, --lora) as its
    `<lora:name:weight>` tag, unless the prompt already has a tag of that name. A1111 and model sites
    apply and link LoRAs only from these tags. They go first, in the order the studio applies them
    (the request's LoRAs, then the prompt's tags), so that the text read back applies them in the same
    order and draws the same pixels; the text the encoder reads is the same either way."""
    tagged = {t.name for t in syntax.extra_networks(request.prompt)[1] if t.kind == "lora"}
    tags = [f"<lora:{lo.name}:{infotext.format_number(lo.weight)}>" for lo in request.loras if lo.name not in tagged]
    return " ".join(p for p in (*tags, request.prompt) if p)


def _short_hashes(hashes: dict[str, str]) -> str | None:
    """ "name: 12 hex digits, …" as A1111 writes them (":" and "," taken out of names)."""
    parts = [f"{re.sub('[:,]', '', name)}: {hashing.a1111_lora_hash(sha)}" for name, sha in hashes.items() if sha]
    return ", ".join(parts) or None


def a1111_params(request: GenerationRequest, info: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ordered `Key: value` pairs of the A1111 parameters line."""
    info = info or {}
    sha = model_sha256(request, info)
    masked = request.kind in ("inpaint", "outpaint")  # colour correction and the mask settings apply
    params: dict[str, Any] = {
        "Steps": request.steps,
        "Sampler": request.scheduler,
        "Schedule type": request.schedule_type,
        "CFG scale": infotext.format_number(request.guidance_scale),
        # FLUX dev/Fill: the number is the model's distilled guidance, written as Forge does
        # (real CFG off at 1); read back by studio.core.metadata.readers.
        infotext.DISTILLED_KEY: None,
        "Seed": image_seed(request, info),
        "Size": f"{request.width}x{request.height}",
        "Model hash": hashing.a1111_model_hash(sha) if sha else None,
        "Model": model_display_name(request, info),
        "VAE": Path(request.vae).name if request.vae else None,
        "Denoising strength": (
            infotext.format_number(request.hires.strength)
            if request.hires is not None
            else infotext.format_number(request.strength)
            if request.init_image is not None and request.upscale is None
            else None
        ),
        "Clip skip": request.clip_skip + 1 if request.clip_skip else None,
        "Color correction": str(request.color_correction) if masked else None,
    }
    if info.get("guidance") == "distilled":
        params["CFG scale"] = "1"
        params[infotext.DISTILLED_KEY] = infotext.format_number(request.guidance_scale)
    for i, module in enumerate(
        ([request.vae] if request.vae and request.text_encoders else []) + list(request.text_encoders)
    ):  # Forge: the separate files, by name
        params[f"Module {i + 1}"] = Path(module).stem
    if masked:  # the mask settings, as A1111 writes them (see infotext.MASK_FIELDS)
        params[infotext.MASK_BLUR_KEY] = infotext.format_number(infotext.a1111_mask_blur(request.mask_blur))
        params[infotext.MASK_GROW_KEY] = request.mask_grow
        params[infotext.INPAINT_AREA_KEY] = infotext.INPAINT_AREAS[request.inpaint_area]
        if request.inpaint_area == "only_masked":
            params[infotext.INPAINT_PADDING_KEY] = request.inpaint_padding
    if request.outpaint is not None:  # keys of the studio's own, as A1111 writes "Mask blur" for inpainting
        params.update(zip(infotext.OUTPAINT_KEYS, request.outpaint))
        params[infotext.OUTPAINT_FILL_KEY] = request.outpaint_fill
    if request.hires is not None:  # A1111's keys; "Size" stays the first pass's, as in A1111
        params[infotext.HIRES_SCALE_KEY] = infotext.format_number(request.hires.scale)
        if request.hires.steps:
            params[infotext.HIRES_STEPS_KEY] = request.hires.steps
        params[infotext.HIRES_UPSCALER_KEY] = hires.upscaler_label(request)
    if request.upscale is not None:  # A1111's Extras keys
        params[infotext.UPSCALER_KEY] = Path(request.upscale.model).stem
        params[infotext.UPSCALE_BY_KEY] = infotext.format_number(request.upscale.scale)
    if request.batch_size > 1:
        params["Batch size"] = request.batch_size
        params["Batch pos"] = int(info.get("batch_index", 0))
    if request.guidance_rescale:
        params["CFG Rescale phi"] = infotext.format_number(request.guidance_rescale)
    if request.guidance_end < 1:  # the studio's own key: A1111 guides every step
        params["CFG end"] = infotext.format_number(request.guidance_end)
    params["Lora hashes"] = _short_hashes(lora_addnet_hashes(request, info))
    params["TI hashes"] = _short_hashes(dict(info.get("ti_hashes") or {}))
    for key, value in (info.get("plugin_parameters") or {}).items():  # from plugins' parameters() hook
        params.setdefault(str(key), value)
    if info.get("worker"):  # the studio's own key: a cluster worker made it
        params["Worker"] = f"{info['worker']} ({info.get('device') or '?'})"
    params["Version"] = f"{SOFTWARE} {info.get('software_version') or __version__}"
    return params


def image_seed(request: GenerationRequest, info: dict[str, Any] | None = None) -> int:
    """The seed of this one image: `info["image_seed"]`, else the request's seed + batch index."""
    info = info or {}
    seed = info.get("image_seed")
    if isinstance(seed, int):
        return seed
    return request.seed + int(info.get("batch_index", 0))


def a1111_infotext(request: GenerationRequest, info: dict[str, Any] | None = None) -> str:
    return infotext.build(a1111_prompt(request), request.negative_prompt, a1111_params(request, info))


def created_at(info: dict[str, Any] | None = None) -> datetime:
    created = (info or {}).get("created")
    if isinstance(created, datetime):
        return created if created.tzinfo else created.replace(tzinfo=timezone.utc)
    return datetime.now(timezone.utc)


def describe(request: GenerationRequest) -> str:
    """The recipe in words, for the details pane and `gallery show`."""
    kind = kind_of(request)
    words = {
        "txt2img": "Generated from a prompt",
        "img2img": "Re-imagined from an input image",
        "inpaint": "Inpainted into an input image",
        "outpaint": "Outpainted around an input image",
        "branch": "Branched from an earlier run",
        "upscale": "Upscaled",
    }[kind]
    if request.upscale is not None:
        up = request.upscale
        source = request.init_image.path if request.init_image is not None else "?"
        return (
            f"Upscaled ×{infotext.format_number(up.scale)} to {request.width}×{request.height} with the upscaler "
            f"{Path(up.model).name} from {source}" + (f"; its prompt: “{request.prompt}”." if request.prompt else ".")
        )
    parts = [
        f"{words} with {request.model}: {request.steps} steps of "
        f"{samplers.label(request.scheduler, request.schedule_type)}, "
        f"guidance {infotext.format_number(request.guidance_scale)}{guidance_span(request.guidance_end)}, "
        f"seed {request.seed}, "
        f"{request.width}×{request.height}."
    ]
    if request.prompt:
        parts.append(f"Prompt: “{request.prompt}”.")
    if request.negative_prompt:
        parts.append(f"Avoiding: “{request.negative_prompt}”.")
    if request.init_image is not None:
        parts.append(
            f"Input image {request.init_image.path} at strength "
            f"{infotext.format_number(request.strength)}" + (" with a mask." if request.mask is not None else ".")
        )
    if request.outpaint is not None:
        left, top, right, bottom = request.outpaint
        parts.append(
            f"Canvas grown by {left} px left, {top} px top, {right} px right, {bottom} px bottom; "
            f"the new area started from a {request.outpaint_fill} fill."
        )
    if request.hires is not None:
        w, h = hires.target_size(request)
        h_steps = request.hires.steps or request.steps
        parts.append(
            f"Hires fix: upscaled ×{infotext.format_number(request.hires.scale)} to {w}×{h} "
            f"({hires.upscaler_label(request)}), then {h_steps} steps at strength "
            f"{infotext.format_number(request.hires.strength)}."
        )
    if request.branch is not None:
        parts.append(f"Continued from run {request.branch.parent_id} at step {request.branch.step}.")
    for lora in request.loras:
        parts.append(f"LoRA {lora.name} at {infotext.format_number(lora.weight)}.")
    for cn in request.controlnets:
        parts.append(f"ControlNet {cn.model} at {infotext.format_number(cn.weight)}.")
    if request.clip_skip:
        parts.append(f"CLIP skip {request.clip_skip}.")
    return " ".join(parts)
