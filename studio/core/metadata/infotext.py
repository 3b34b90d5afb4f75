"""The AUTOMATIC1111 "infotext" (`parameters` PNG text chunk / JPEG UserComment).

Layout, as A1111 writes it::

    <prompt, may span lines>
    Negative prompt: <negative prompt, may span lines>
    Steps: 20, Sampler: Euler a, Schedule type: Automatic, CFG scale: 7, Seed: 1, Size: 512x512, ...

The last line is `Key: value` pairs joined by ", ". A value that contains a comma, a colon or a
newline is written as a JSON string (double quotes, backslash escapes); other values are written
bare. Pairs whose value is None are left out. The whole text is stripped of leading/trailing
whitespace. The prompt itself is never quoted, so a prompt line that starts with
"Negative prompt:" cannot be told apart from the real negative prompt (an A1111 limitation; this
studio's own JSON chunk carries the exact prompt regardless).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

NEGATIVE_PREFIX = "Negative prompt:"
# Forge's key for FLUX's distilled guidance (its "CFG scale" is then 1: no negative pass).
DISTILLED_KEY = "Distilled CFG Scale"

# One `Key: value` pair on the parameters line: the key starts with a word character and may hold
# spaces, dashes and slashes; the value is a JSON-quoted string or anything up to the next comma.
_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_SIZE = re.compile(r"^(\d+)x(\d+)$")

# An outpaint's growth in px per side (GenerationRequest.outpaint's order) and its fill mode. A1111 has
# no such keys; other tools ignore keys they do not know, this studio's reader reads them back.
OUTPAINT_KEYS = ("Outpaint left", "Outpaint top", "Outpaint right", "Outpaint bottom")
OUTPAINT_FILL_KEY = "Outpaint fill"

# An inpaint's (or outpaint's) mask settings. "Mask blur", "Inpaint area" and "Masked area padding" are
# A1111's own keys; A1111 writes the area and padding only for "Only masked", this studio always says
# the area. A1111's "Mask blur" is the standard deviation (px) of the Gaussian blur of the mask; the
# studio's mask blur feathers with a Gaussian of half its value (studio.engine.inpaint.feather), so the
# key carries mask_blur / 2 and is read back doubled. A1111 has no mask growth: "Mask grow" (px the
# mask is dilated by) is a key of the studio's own. A1111's overlay also differs a little from the
# studio's composite (for "Whole picture" it doubles the blurred mask), but the blur is the same.
MASK_BLUR_KEY = "Mask blur"
A1111_BLUR_PER_PX = 0.5  # A1111's "Mask blur" (Gaussian sigma) per px of the studio's mask blur
MASK_GROW_KEY = "Mask grow"
INPAINT_AREA_KEY = "Inpaint area"
INPAINT_PADDING_KEY = "Masked area padding"
INPAINT_AREAS = {"whole": "Whole picture", "only_masked": "Only masked"}
MASK_FIELDS = {
    "mask_blur": MASK_BLUR_KEY,
    "mask_grow": MASK_GROW_KEY,
    "inpaint_area": INPAINT_AREA_KEY,
    "inpaint_padding": INPAINT_PADDING_KEY,
}  # GenerationRequest field -> key

# An upscale with an upscaler model: A1111's Extras tab writes these two.
UPSCALER_KEY = "Postprocess upscaler"
UPSCALE_BY_KEY = "Postprocess upscale by"

# Hires fix, as A1111 writes it (with "Denoising strength" for the second pass's strength).
HIRES_SCALE_KEY = "Hires upscale"
HIRES_STEPS_KEY = "Hires steps"
HIRES_UPSCALER_KEY = "Hires upscaler"


def quote(value: Any) -> str:
    """Quote a value the way A1111 does: JSON-quote it only if it holds `,`, `:` or a newline.

    (One addition: a value that itself starts with a double quote is quoted too, so that reading
    it back does not mistake it for a quoted string.)
    """
    text = str(value)
    if "," not in text and "\n" not in text and ":" not in text and not text.startswith('"'):
        return text
    return json.dumps(text, ensure_ascii=False)


def unquote(text: str) -> str:
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, str) else text


def format_number(value: float | int) -> str:
    """7.0 → "7", 7.5 → "7.5" (A1111 prints the float it was given; whole numbers read better)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value) if isinstance(value, float) else str(value)


def build(prompt: str, negative_prompt: str, params: Mapping[str, Any]) -> str:
    """Assemble infotext from a prompt, a negative prompt and ordered `Key: value` pairs."""
    pairs = ", ".join(
        key if key == value else f"{key}: {quote(value)}" for key, value in params.items() if value is not None
    )
    negative = f"\n{NEGATIVE_PREFIX} {negative_prompt}" if negative_prompt else ""
    return f"{prompt}{negative}\n{pairs}".strip()


def parse(text: str) -> tuple[str, str, dict[str, str]]:
    """Split infotext into (prompt, negative prompt, {key: value}) — values unquoted strings.

    `Size: WxH` is kept as is (see `size()`); unknown keys are kept too.
    """
    text = text.strip()
    if not text:
        return "", "", {}
    *lines, last = text.split("\n")
    if len(_PARAM.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt_lines: list[str] = []
    negative_lines: list[str] = []
    in_negative = False
    for line in lines:
        if not in_negative and line.startswith(NEGATIVE_PREFIX):
            in_negative = True
            line = line[len(NEGATIVE_PREFIX) :]
            line = line[1:] if line.startswith(" ") else line
        (negative_lines if in_negative else prompt_lines).append(line)
    params: dict[str, str] = {}
    for key, value in _PARAM.findall(last):
        value = value.strip()
        if value.startswith('"') and value.endswith('"'):
            value = unquote(value)
        params[key.strip()] = value
    return "\n".join(prompt_lines), "\n".join(negative_lines), params


def size(params: Mapping[str, str]) -> tuple[int, int] | None:
    m = _SIZE.match(params.get("Size", "").strip())
    return (int(m.group(1)), int(m.group(2))) if m else None


def outpaint(params: Mapping[str, str]) -> tuple[tuple[int, int, int, int] | None, str | None]:
    """(px added left, top, right, bottom) and the fill mode, from the outpaint keys; None where absent
    or unreadable (the four sides are read together)."""
    sides: tuple[int, int, int, int] | None
    try:
        left, top, right, bottom = (int(params[key].strip()) for key in OUTPAINT_KEYS)
        sides = (left, top, right, bottom)
    except (KeyError, ValueError):
        sides = None
    return sides, params.get(OUTPAINT_FILL_KEY, "").strip() or None


def a1111_mask_blur(mask_blur: int) -> float:
    """The studio's mask blur (feather px) as A1111's "Mask blur" (the Gaussian's standard deviation)."""
    return mask_blur * A1111_BLUR_PER_PX


def mask_settings(params: Mapping[str, str]) -> dict[str, Any]:
    """The mask settings the mask keys give, in the request's terms (mask_blur, mask_grow, inpaint_area,
    inpaint_padding); a key that is absent or unreadable gives nothing."""
    out: dict[str, Any] = {}
    for field in ("mask_blur", "mask_grow", "inpaint_padding"):
        try:
            value = float(params[MASK_FIELDS[field]].strip())
        except (KeyError, ValueError):
            continue
        if math.isfinite(value) and value >= 0:
            out[field] = round(value / A1111_BLUR_PER_PX if field == "mask_blur" else value)
    area = params.get(INPAINT_AREA_KEY, "").strip().lower()
    ours = next((name for name, text in INPAINT_AREAS.items() if text.lower() == area), None)
    if ours is not None:
        out["inpaint_area"] = ours
    return out


def parse_hash_list(value: str) -> dict[str, str]:
    """ "name: hash, other: hash" (A1111 "Lora hashes") → {name: hash} (names may hold commas)."""
    return {
        name.strip(): digest
        for name, digest in re.findall(r"\s*(.+?):\s*([0-9a-fA-F]+)\s*(?:,|$)", value)
        if name.strip()
    }
