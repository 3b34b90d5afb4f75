"""Read generation metadata from PNG/JPEG/WebP files written by this studio or by other tools.

Every reader ends in the same normalised dict::

    {prompt, negative_prompt, steps, sampler, cfg_scale, seed, width, height,
     model, model_hash, loras: [{name, weight, hash}], source}

plus, from A1111 text that says so, denoising_strength, clip_skip, the mask settings in this studio's
terms (mask_blur, mask_grow, inpaint_area, inpaint_padding: see infotext.MASK_FIELDS), outpaint ((px
added left, top, right, bottom), as this studio writes it) and outpaint_fill.

`sampler` is one of this studio's scheduler names when the tool's sampler maps onto one, else
None, with a note in `unmapped` saying what could not be carried over. Sources: "studio",
"a1111" (also Forge/reForge/SD.Next, which write the same text), "comfyui", "invokeai",
"fooocus", or "none".
"""

from __future__ import annotations

import io
import json
import os
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.core import samplers
from studio.core.errors import MetadataError, StudioError
from studio.core.metadata import infotext
from studio.core.metadata.comfyui import from_comfy_prompt, from_comfy_workflow
from studio.core.metadata.png import (
    IMAGE_KEY,
    MAX_FILE_BYTES,
    MAX_PIXELS,
    MAX_TEXT_BYTES,
    PARAMETERS_KEY,
    REQUEST_KEY,
    XMP_KEY,
    read_png_metadata,
)
from studio.core.metadata.provenance import sniff_mime
from studio.core.metadata.xmp import read_recipe, read_source_type
from studio.core.prompts import syntax
from studio.core.request import MAX_SEED, GenerationRequest, LoraRef

FIELDS = (
    "prompt", "negative_prompt", "steps", "sampler", "cfg_scale", "seed", "width", "height",
    "model", "model_hash", "loras", "source",
)  # fmt: skip

USER_COMMENT = 0x9286
EXIF_IFD = 0x8769


def map_sampler(sampler: str | None, schedule: str | None = None) -> tuple[str | None, list[str]]:
    """A tool's sampler (+ schedule) name → (the studio's sampler with its schedule type, as one label
    that GenerationRequest reads: "DPM++ 2M Karras", or None; notes on what could not be carried over).
    A name the studio cannot run is read as the closest one it can, with a note."""
    ours, schedule_type, notes = samplers.resolve(sampler, schedule)
    if ours is None:
        return None, notes
    return samplers.label(ours, schedule_type), notes


def _num(value: Any, kind: type = float) -> Any:
    if value is None or value == "":
        return None
    try:
        return kind(float(value)) if kind is int else kind(value)
    except (TypeError, ValueError):
        return None


def empty(source: str = "none") -> dict[str, Any]:
    out: dict[str, Any] = {k: None for k in FIELDS}
    out.update(prompt="", negative_prompt="", loras=[], source=source)
    return out


@dataclass
class ReadResult:
    """What `read_metadata` found in a file."""

    normalised: dict[str, Any]
    request: GenerationRequest | None = None
    unmapped: list[str] = field(default_factory=list)
    raw: dict[str, str] = field(default_factory=dict)
    digital_source_type: str | None = None
    has_c2pa: bool = False
    mime: str = ""
    batch_index: int = 0  # which image of the request's batch (this studio's files)
    worker: str = ""  # the cluster worker that made it and its device ("" when made here)

    @property
    def source(self) -> str:
        return str(self.normalised.get("source") or "none")

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.normalised,
            "unmapped": list(self.unmapped),
            "digital_source_type": self.digital_source_type,
            "c2pa_manifest": self.has_c2pa,
            "batch_index": self.batch_index,
            "request": self.request.to_dict() if self.request else None,
        }


# -- format readers ---------------------------------------------------------------------------------


def from_request(req: GenerationRequest, model_hash: str = "") -> dict[str, Any]:
    out = empty("studio")
    out.update(
        prompt=req.prompt, negative_prompt=req.negative_prompt, steps=req.steps,
        sampler=samplers.label(req.scheduler, req.schedule_type), cfg_scale=req.guidance_scale, seed=req.seed,
        width=req.width, height=req.height, model=req.model, model_hash=model_hash or None,
        loras=[{"name": lo.name, "weight": lo.weight, "hash": lo.sha256 or None} for lo in req.loras],
    )  # fmt: skip
    return out


def from_a1111(text: str, source: str = "a1111") -> tuple[dict[str, Any], list[str]]:
    prompt, negative, params = infotext.parse(text)
    out = empty(source)
    notes: list[str] = []
    sampler, sampler_notes = map_sampler(params.get("Sampler"), params.get("Schedule type"))
    notes += sampler_notes
    size = infotext.size(params)
    loras = [
        {"name": name, "weight": None, "hash": digest or None}
        for name, digest in infotext.parse_hash_list(params.get("Lora hashes", "")).items()
    ]
    # LoRAs live in the prompt as <lora:name:weight> tags in A1111 (the weight defaults to 1): they stay
    # there, and the request applies them from there, once.
    for tag in syntax.extra_networks(prompt)[1]:
        if tag.kind not in ("lora", "lyco") or not tag.name:
            continue
        hit: dict[str, Any] | None = next(
            (lo for lo in loras if lo["name"] == re.sub("[:,]", "", tag.name)), None
        )  # as A1111's "Lora hashes" lists it
        if hit is None:
            hit = {"name": tag.name, "weight": None, "hash": None}
            loras.append(hit)
        hit["name"] = tag.name
        hit["weight"] = _num(tag.args[1]) if len(tag.args) > 1 else 1.0
    out.update(
        prompt=prompt, negative_prompt=negative, steps=_num(params.get("Steps"), int),
        sampler=sampler, cfg_scale=_num(params.get("CFG scale")), seed=_num(params.get("Seed"), int),
        width=size[0] if size else None, height=size[1] if size else None,
        model=params.get("Model"), model_hash=params.get("Model hash"), loras=loras,
    )  # fmt: skip
    if infotext.DISTILLED_KEY in params:  # Forge's FLUX: the guidance the model follows; its CFG is 1
        out["cfg_scale"] = _num(params[infotext.DISTILLED_KEY])
    if "Denoising strength" in params:
        out["denoising_strength"] = _num(params["Denoising strength"])
    if "Clip skip" in params:
        out["clip_skip"] = _num(params["Clip skip"], int)
    if infotext.HIRES_SCALE_KEY in params:  # hires fix: "Denoising strength" is its second pass's
        out["hires"] = {
            "scale": _num(params[infotext.HIRES_SCALE_KEY]),
            "steps": _num(params.get(infotext.HIRES_STEPS_KEY), int) or 0,
            "strength": _num(params.get("Denoising strength")),
            "upscaler": params.get(infotext.HIRES_UPSCALER_KEY, "Latent"),
        }
        out.pop("denoising_strength", None)
    if infotext.UPSCALER_KEY in params:
        out["upscaler"] = params[infotext.UPSCALER_KEY]
        out["upscale_by"] = _num(params.get(infotext.UPSCALE_BY_KEY))
    mask = infotext.mask_settings(params)
    out.update(mask)
    sides, fill = infotext.outpaint(params)  # written by this studio: px added per side, fill mode
    if sides is not None:
        out["outpaint"] = sides
    if fill is not None:
        out["outpaint_fill"] = fill
    known = {
        "Batch size", "Batch pos", "Steps", "Sampler", "Schedule type", "CFG scale", "Seed", "Size", "Model hash",
        "Model", "Denoising strength", "Lora hashes", "TI hashes", "Emphasis", "Version", "Clip skip",
        "CFG Rescale phi", infotext.UPSCALER_KEY, infotext.UPSCALE_BY_KEY, infotext.DISTILLED_KEY,
        infotext.HIRES_SCALE_KEY, infotext.HIRES_STEPS_KEY, infotext.HIRES_UPSCALER_KEY,
        *(infotext.OUTPAINT_KEYS if sides is not None else ()), *((infotext.OUTPAINT_FILL_KEY,) if fill else ()),
        *(infotext.MASK_FIELDS[name] for name in mask),
    }  # fmt: skip
    for key in params:
        if key not in known:
            notes.append(f"{key}: {params[key]} is not used here")
    return out, notes


def from_invokeai(text: str) -> tuple[dict[str, Any], list[str]]:
    meta = json.loads(text)
    if not isinstance(meta, dict):
        raise ValueError("not an InvokeAI metadata object")
    out, notes = empty("invokeai"), []
    model = meta.get("model") or {}
    sampler, sn = map_sampler(meta.get("scheduler"))
    notes += sn
    out.update(
        prompt=meta.get("positive_prompt") or "", negative_prompt=meta.get("negative_prompt") or "",
        steps=_num(meta.get("steps"), int), sampler=sampler, cfg_scale=_num(meta.get("cfg_scale")),
        seed=_num(meta.get("seed"), int), width=_num(meta.get("width"), int),
        height=_num(meta.get("height"), int),
        model=(model.get("name") or model.get("model_name")) if isinstance(model, dict) else str(model),
        model_hash=model.get("hash") if isinstance(model, dict) else None,
    )  # fmt: skip
    for lo in meta.get("loras", []) or []:
        if not isinstance(lo, dict):
            continue
        m = lo.get("model") or lo.get("lora") or {}
        name = (m.get("name") or m.get("model_name") or m.get("key")) if isinstance(m, dict) else m
        out["loras"].append({"name": str(name), "weight": _num(lo.get("weight")), "hash": None})
    if meta.get("strength") is not None:
        out["denoising_strength"] = _num(meta.get("strength"))
    for key in ("refiner_model", "vae", "controlnets", "ipAdapters", "t2iAdapters"):
        if meta.get(key):
            notes.append(f"InvokeAI {key} is not carried over")
    return out, notes


def from_fooocus(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    out, notes = empty("fooocus"), []

    def get(*keys: str) -> Any:
        return next((data[k] for k in keys if k in data), None)

    sampler, sn = map_sampler(get("sampler", "Sampler"), get("scheduler", "Scheduler"))
    notes += sn
    width = height = None
    res = get("resolution", "Resolution")
    if isinstance(res, str):
        m = re.findall(r"\d+", res)
        if len(m) >= 2:
            width, height = int(m[0]), int(m[1])
    elif isinstance(res, list | tuple) and len(res) >= 2:
        width, height = _num(res[0], int), _num(res[1], int)
    prompt = get("prompt", "Prompt") or ""
    negative = get("negative_prompt", "Negative Prompt") or ""
    out.update(
        prompt=str(prompt), negative_prompt=str(negative), steps=_num(get("steps", "Steps"), int),
        sampler=sampler, cfg_scale=_num(get("guidance_scale", "Guidance Scale")),
        seed=_num(get("seed", "Seed"), int), width=width, height=height,
        model=get("base_model", "Base Model"), model_hash=get("base_model_hash"),
    )  # fmt: skip
    for lo in get("loras") or []:
        if isinstance(lo, list | tuple) and lo:
            out["loras"].append(
                {"name": str(lo[0]), "weight": _num(lo[1]) if len(lo) > 1 else None,
                 "hash": str(lo[2]) if len(lo) > 2 else None}
            )  # fmt: skip
    for key in ("styles", "performance", "sharpness", "refiner_model", "adm_guidance"):
        if get(key, key.title()):
            notes.append(f"Fooocus {key} is not carried over")
    return out, notes


# -- request from normalised ---------------------------------------------------------------------------


def to_request(norm: dict[str, Any], notes: list[str]) -> GenerationRequest | None:
    """Turn normalised fields into a request for the Prompt panel (None if too little is known)."""
    fields: dict[str, Any] = {"prompt": norm.get("prompt") or "", "negative_prompt": norm.get("negative_prompt") or ""}
    if norm.get("model"):
        fields["model"] = str(norm["model"])
    if isinstance(norm.get("steps"), int):
        fields["steps"] = min(max(norm["steps"], 1), 500)
    if isinstance(norm.get("sampler"), str):
        sampler, schedule_type = samplers.split(norm["sampler"])
        if samplers.check(sampler, schedule_type or samplers.AUTOMATIC) is None:
            fields["scheduler"], fields["schedule_type"] = sampler, schedule_type or samplers.AUTOMATIC
    if isinstance(norm.get("cfg_scale"), float | int):
        fields["guidance_scale"] = min(max(float(norm["cfg_scale"]), 0.0), 30.0)
    seed = norm.get("seed")
    if isinstance(seed, int):
        if 0 <= seed <= MAX_SEED:
            fields["seed"] = seed
        else:
            fields["seed"] = seed % (MAX_SEED + 1)
            notes.append(f"seed {seed} does not fit this studio's 32-bit seeds; used {fields['seed']}")
    for dim in ("width", "height"):
        v = norm.get(dim)
        if isinstance(v, int) and v > 0:
            snapped = min(max(8, round(v / 8) * 8), 8192)
            if snapped != v:
                notes.append(f"{dim} {v} rounded to {snapped} (a multiple of 8)")
            fields[dim] = snapped
    if isinstance(norm.get("denoising_strength"), float):
        notes.append("denoising strength kept aside: the input image is not in the file")
    if norm.get("outpaint") is not None:
        notes.append("outpaint sizes kept aside: the input image is not in the file")
    if norm.get("upscaler"):
        notes.append(f"upscaled with {norm['upscaler']}: the recipe is the source image's, before upscaling")
    if any(norm.get(name) is not None for name in infotext.MASK_FIELDS):
        notes.append("mask settings kept aside: the input image and its mask are not in the file")
    if isinstance(norm.get("hires"), dict):
        fields["hires"] = _hires(norm["hires"], notes)
    if isinstance(norm.get("clip_skip"), int) and norm["clip_skip"] > 1:
        fields["clip_skip"] = min(norm["clip_skip"] - 1, 12)
    loras = []
    tagged = {t.name for t in syntax.extra_networks(fields["prompt"])[1] if t.kind in ("lora", "lyco")}
    for lo in norm.get("loras") or []:
        if lo.get("name") in tagged:  # its <lora:…> tag in the prompt applies it (A1111's way): not twice
            continue
        w = lo.get("weight")
        w = 1.0 if not isinstance(w, float | int) else min(max(float(w), -2.0), 2.0)
        loras.append(LoraRef(name=str(lo.get("name")), weight=w))
    if loras:
        fields["loras"] = tuple(loras)
        notes.append("LoRAs are named only; pick the files to use in the LoRA panel")
    try:
        return GenerationRequest.create(**fields)
    except StudioError as exc:
        notes.append(f"could not build a recipe: {exc}")
        return None


def _hires(h: dict[str, Any], notes: list[str]) -> dict[str, Any] | None:
    """A1111's hires fix keys in this studio's terms: "Latent" and its variants are the latent upscale,
    "None" and "Lanczos" a Lanczos resize; any other name is an upscaler model, found by that name."""
    scale = h.get("scale")
    if not isinstance(scale, float) or not 1 < scale <= 8:
        notes.append(f"hires upscale {scale} is not one this studio runs (above 1, at most 8); hires fix left off")
        return None
    name = str(h.get("upscaler") or "Latent").strip()
    if name.lower().startswith("latent"):
        if name.lower() != "latent":
            notes.append(f"hires upscaler {name!r} read as Latent (bilinear)")
        upscaler = "latent"
    elif name.lower() in ("lanczos", "none", "nearest"):
        if name.lower() != "lanczos":
            notes.append(f"hires upscaler {name!r} read as Lanczos")
        upscaler = "lanczos"
    else:
        upscaler = name  # an upscaler model's name: the engine looks it up in the models library
    given = h.get("strength")
    strength = float(given) if isinstance(given, float) else 0.7
    steps = min(max(int(h.get("steps") or 0), 0), 500)
    return {"scale": scale, "steps": steps, "strength": min(max(strength, 0.01), 1.0), "upscaler": upscaler}


# -- entry points ---------------------------------------------------------------------------------------


def _decode_user_comment(raw: Any) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, bytes | bytearray):
        return None
    raw = bytes(raw[: MAX_TEXT_BYTES + 8])
    head, body = raw[:8], raw[8:]
    if head == b"UNICODE\0":
        zeros_even = body[0::2].count(0)
        zeros_odd = body[1::2].count(0)
        codec = "utf-16-be" if zeros_even >= zeros_odd else "utf-16-le"
        if body[:2] in (b"\xfe\xff", b"\xff\xfe"):
            codec = "utf-16"
        return str(body.decode(codec, "replace").rstrip("\0"))
    if head.startswith(b"ASCII") or head == b"\0" * 8:
        return str(body.decode("utf-8", "replace").rstrip("\0"))
    return str(raw.decode("utf-8", "replace").rstrip("\0"))


def _read_pillow_texts(data: bytes, mime: str) -> tuple[dict[str, str], int, int]:
    from PIL import Image, UnidentifiedImageError

    texts: dict[str, str] = {}
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            if w * h > MAX_PIXELS:
                raise MetadataError(
                    f"the image claims {w}×{h} pixels, over the safety limit",
                    "The file looks like a decompression bomb; it was not read.",
                )
            xmp = im.info.get("xmp")
            if xmp:
                texts[XMP_KEY] = xmp.decode("utf-8", "replace") if isinstance(xmp, bytes) else str(xmp)
            exif = im.getexif()
            comment = exif.get_ifd(EXIF_IFD).get(USER_COMMENT, exif.get(USER_COMMENT))
            text = _decode_user_comment(comment)
            if text:
                texts[PARAMETERS_KEY] = text
            maker = exif.get(0x927C)
            if isinstance(maker, bytes):
                maker = maker.decode("latin-1")
            if maker in ("fooocus", "a1111"):
                texts["fooocus_scheme"] = maker
    except MetadataError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, struct.error) as exc:
        raise MetadataError(f"the {mime.split('/')[-1].upper()} file is corrupt or truncated ({exc})") from None
    except Image.DecompressionBombError as exc:  # pragma: no cover - caught by the size check
        raise MetadataError(str(exc)) from None
    return texts, w, h


def read_metadata_bytes(data: bytes, name: str = "") -> ReadResult:
    mime = sniff_mime(data)
    if mime is None:
        raise MetadataError(f"{name or 'the file'} is not a PNG, JPEG or WebP image")
    has_c2pa = False
    if mime == "image/png":
        meta = read_png_metadata(data)
        texts, has_c2pa = meta.texts, meta.has_c2pa
    else:
        texts, _w, _h = _read_pillow_texts(data, mime)
        has_c2pa = b"c2pa" in data[: 4 << 20] or b"jumb" in data[: 4 << 20]
    return interpret(texts, mime=mime, has_c2pa=has_c2pa)


def interpret(texts: dict[str, str], *, mime: str = "", has_c2pa: bool = False) -> ReadResult:
    """Pick the richest metadata among the text entries and normalise it."""
    notes: list[str] = []
    dst = read_source_type(texts.get(XMP_KEY))
    result = ReadResult(empty(), raw=dict(texts), digital_source_type=dst, has_c2pa=has_c2pa, mime=mime)
    try:
        recipe_json = texts.get(REQUEST_KEY) or read_recipe(texts.get(XMP_KEY))
        if recipe_json:
            req = GenerationRequest.from_json(recipe_json)
            model_hash = None
            if PARAMETERS_KEY in texts:
                model_hash = infotext.parse(texts[PARAMETERS_KEY])[2].get("Model hash")
            result.normalised, result.request = from_request(req, model_hash or ""), req
            try:
                image = json.loads(texts.get(IMAGE_KEY) or read_recipe(texts.get(XMP_KEY), "Image") or "{}")
                result.batch_index = int(image.get("batch_index", 0))
                result.normalised["seed"] = int(image.get("seed", req.seed))
                if image.get("worker"):
                    result.worker = f"{image['worker']} ({image.get('device') or '?'})"
            except (ValueError, TypeError, AttributeError):
                result.unmapped.append("the image's batch position is unreadable")
            return result
        params = texts.get(PARAMETERS_KEY)
        scheme = texts.get("fooocus_scheme")
        if params is not None and (scheme == "fooocus" or params.lstrip().startswith("{")):
            data = json.loads(params)
            if isinstance(data, dict):
                norm, notes = from_fooocus(data)
            else:
                raise ValueError("parameters JSON is not an object")
        elif params is not None:
            source = "fooocus" if scheme == "a1111" or "Fooocus" in params[-400:] else "a1111"
            norm, notes = from_a1111(params, source)
        elif "prompt" in texts:
            norm, notes = from_comfy_prompt(texts["prompt"])
        elif "workflow" in texts:
            norm, notes = from_comfy_workflow(texts["workflow"])
        elif "invokeai_metadata" in texts:
            norm, notes = from_invokeai(texts["invokeai_metadata"])
        else:
            return result
    except MetadataError:
        raise
    except StudioError as exc:
        raise MetadataError(f"the recipe in the file cannot be used: {exc}") from None
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
        raise MetadataError(f"the generation metadata in the file is malformed ({exc})") from None
    result.normalised = norm
    result.request = to_request(norm, notes)
    result.unmapped = notes
    return result


def read_metadata(path: str | os.PathLike[str]) -> ReadResult:
    """Read and normalise the generation metadata of a PNG, JPEG or WebP file."""
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_FILE_BYTES:
            raise MetadataError(f"{p.name} is larger than {MAX_FILE_BYTES >> 20} MiB")
        data = p.read_bytes()
    except OSError as exc:
        raise MetadataError(f"cannot read {p}: {exc.strerror or exc}") from None
    return read_metadata_bytes(data, p.name)
