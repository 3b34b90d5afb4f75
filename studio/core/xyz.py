"""X/Y/Z plots: one recipe over a grid of values (A1111's most used script), as plain functions on
`GenerationRequest` — the CLI (`studio generate --xyz`), the window's Plot dialog and the queue all
expand a plot the same way.

An axis is `FIELD=V1,V2,…` (`parse_axis`); values are comma-separated, quoted like CSV when a value
holds a comma (`prompt_sr="red, shiny",blue`); numeric fields also take ranges: `1-5` (every integer),
`1-9 (+2)` (a step), `0-1 [5]` (that many values, evenly spaced). Fields (`FIELDS`):

- numbers of the recipe: `cfg`, `steps`, `seed`, `cfg_end` (guidance end), `cfg_rescale`, `clip_skip`,
  `strength` (img2img and edits), `width`, `height`, `size` (`WxH`), and the hires fix's
  `hires_scale`, `hires_steps`, `hires_strength` (any of them turns hires fix on);
- `scheduler` (`sampler`): one of the scheduler names; `model`, `vae`: files or folders;
- `lora:NAME`: that LoRA's weight (the request's LoRA, or a `<lora:NAME:w>` tag in the prompt, or
  added when neither is there);
- `controlnet` / `controlnet:N`: the weight of ControlNet unit N (0 by default); `ip_adapter[:N]` the same
  for an IP-Adapter unit;
- `prompt_sr` (A1111's "Prompt S/R"): the first value is a phrase of the prompt, each value replaces
  it in the prompt and the negative prompt (so the first cell is the prompt as written);
- `plugin:NAME.KEY` (e.g. `plugin:ip_adapter.weight`): a number in a plugin's settings (for plugins
  that take one there).

`expand(request, axes)` gives the cells, x fastest then y then z (A1111's order), each with its own
validated request; every cell keeps the base seed unless `seed` is an axis.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from studio.core.errors import InvalidRequest, StudioError
from studio.core.request import GenerationRequest, LoraRef

MAX_AXES = 3
MAX_CELLS = 256


@dataclass(frozen=True)
class Field:
    title: str  # how the grid labels it ("CFG scale")
    kind: type  # float, int or str: how values are read and ranges made
    apply: Callable[[dict[str, Any], Any, str], None]  # (request fields, value, the field's argument)


def _set(name: str) -> Callable[[dict[str, Any], Any, str], None]:
    def apply(fields: dict[str, Any], value: Any, _arg: str) -> None:
        fields[name] = value

    return apply


def _size(fields: dict[str, Any], value: Any, _arg: str) -> None:
    m = re.fullmatch(r"\s*(\d+)\s*[x×]\s*(\d+)\s*", str(value))
    if not m:
        raise InvalidRequest(f"a size must look like 512x768, not {value!r}")
    fields["width"], fields["height"] = int(m[1]), int(m[2])


def _hires(key: str) -> Callable[[dict[str, Any], Any, str], None]:
    def apply(fields: dict[str, Any], value: Any, _arg: str) -> None:
        fields["hires"] = {**(fields.get("hires") or {}), key: value}  # turns hires fix on where it was off

    return apply


def _lora(fields: dict[str, Any], value: Any, name: str) -> None:
    if not name:
        raise InvalidRequest("a LoRA axis names its LoRA: lora:NAME=0,0.5,1")
    loras = [dict(lo) for lo in fields.get("loras") or ()]
    for lo in loras:
        if lo["name"] == name:
            lo["weight"] = value
            fields["loras"] = tuple(loras)
            return
    tag = re.compile(rf"<lora:{re.escape(name)}(?::[-0-9.]+)?>", re.IGNORECASE)
    if tag.search(fields.get("prompt", "")):
        fields["prompt"] = tag.sub(f"<lora:{name}:{value:g}>", fields["prompt"])
        return
    fields["loras"] = (*loras, LoraRef(name=name, weight=value).model_dump())


def _controlnet(fields: dict[str, Any], value: Any, arg: str) -> None:
    units = [dict(u) for u in fields.get("controlnets") or ()]
    index = int(arg or 0)
    if not 0 <= index < len(units):
        raise InvalidRequest(f"there is no ControlNet unit {index} (the recipe has {len(units)})")
    units[index]["weight"] = value
    fields["controlnets"] = tuple(units)


def _ip_adapter(fields: dict[str, Any], value: Any, arg: str) -> None:
    plugins = {k: dict(v) for k, v in (fields.get("plugins") or {}).items()}
    units = [dict(u) for u in plugins.get("ip_adapter", {}).get("units", [])]
    index = int(arg or 0)
    if not 0 <= index < len(units):
        raise InvalidRequest(f"there is no IP-Adapter unit {index} (the recipe has {len(units)})")
    units[index]["weight"] = value
    plugins["ip_adapter"] = {**plugins["ip_adapter"], "units": units}
    fields["plugins"] = plugins


def _plugin(fields: dict[str, Any], value: Any, arg: str) -> None:
    name, _, key = arg.partition(".")
    if not name or not key:
        raise InvalidRequest("a plugin axis says which setting: plugin:NAME.KEY=…")
    plugins = {k: dict(v) for k, v in (fields.get("plugins") or {}).items()}
    plugins.setdefault(name, {})[key] = value
    fields["plugins"] = plugins


FIELDS: dict[str, Field] = {
    "cfg": Field("CFG scale", float, _set("guidance_scale")),
    "steps": Field("Steps", int, _set("steps")),
    "seed": Field("Seed", int, _set("seed")),
    "scheduler": Field("Sampler", str, _set("scheduler")),
    "size": Field("Size", str, _size),
    "width": Field("Width", int, _set("width")),
    "height": Field("Height", int, _set("height")),
    "cfg_end": Field("Guidance end", float, _set("guidance_end")),
    "cfg_rescale": Field("CFG rescale", float, _set("guidance_rescale")),
    "clip_skip": Field("Clip skip", int, _set("clip_skip")),
    "strength": Field("Denoising strength", float, _set("strength")),
    "hires_scale": Field("Hires upscale", float, _hires("scale")),
    "hires_steps": Field("Hires steps", int, _hires("steps")),
    "hires_strength": Field("Hires denoising", float, _hires("strength")),
    "model": Field("Model", str, _set("model")),
    "vae": Field("VAE", str, _set("vae")),
    "lora": Field("LoRA", float, _lora),
    "controlnet": Field("ControlNet weight", float, _controlnet),
    "ip_adapter": Field("IP-Adapter weight", float, _ip_adapter),
    "prompt_sr": Field("Prompt S/R", str, lambda f, v, a: None),  # applied by expand (needs the first value)
    "plugin": Field("", float, _plugin),
}
ALIASES = {
    "cfg_scale": "cfg",
    "guidance": "cfg",
    "guidance_scale": "cfg",
    "sampler": "scheduler",
    "guidance_end": "cfg_end",
    "denoising": "strength",
    "denoising_strength": "strength",
    "prompt_s/r": "prompt_sr",
    "sr": "prompt_sr",
    "checkpoint": "model",
    "cn": "controlnet",
    "ip": "ip_adapter",
    "ipadapter": "ip_adapter",
}


@dataclass(frozen=True)
class Axis:
    key: str  # a FIELDS key
    arg: str  # what follows ":" (the LoRA's name, the ControlNet unit, the plugin setting)
    values: tuple[Any, ...]  # typed (float, int or str)
    labels: tuple[str, ...]  # as the grid shows them

    @property
    def title(self) -> str:
        f = FIELDS[self.key]
        if self.key == "lora":
            return f"LoRA {self.arg}"
        if self.key in ("controlnet", "ip_adapter") and self.arg:
            return f"{f.title.split()[0]} {self.arg} weight"
        if self.key == "plugin":
            return self.arg
        return f.title

    @property
    def spec(self) -> str:
        """The axis as `parse_axis` reads it back."""
        name = f"{self.key}:{self.arg}" if self.arg else self.key
        return f"{name}={_join(self.labels)}"

    def to_dict(self) -> dict[str, Any]:
        return {"field": self.key, "arg": self.arg, "title": self.title, "values": list(self.values)}


@dataclass(frozen=True)
class Cell:
    x: int
    y: int
    z: int
    request: GenerationRequest

    @property
    def index(self) -> tuple[int, int, int]:
        return self.x, self.y, self.z


def _join(labels: Sequence[str]) -> str:
    return ",".join(f'"{v}"' if "," in v or '"' in v else v for v in labels)


def _number(text: str, kind: type) -> Any:
    try:
        value = float(text)
    except ValueError:
        raise InvalidRequest(f"{text!r} is not a number") from None
    if kind is int:
        if not value.is_integer():
            raise InvalidRequest(f"{text!r} is not a whole number")
        return int(value)
    return value


_RANGE = re.compile(r"^\s*(-?[\d.]+)\s*-\s*(-?[\d.]+)\s*(?:\(\s*\+?\s*(-?[\d.]+)\s*\)|\[\s*(\d+)\s*\])?\s*$")


def _expand_value(text: str, kind: type) -> list[Any]:
    """One comma-separated item: a number, a range (`1-5`, `1-9 (+2)`, `0-1 [5]`) or a word."""
    if kind is str:
        return [text]
    m = _RANGE.match(text)
    if not m:
        return [_number(text, kind)]
    a, b = _number(m[1], kind), _number(m[2], kind)
    if m[4] is not None:  # [n]: n values from a to b
        n = int(m[4])
        if n < 1:
            raise InvalidRequest(f"{text!r}: a range needs at least one value")
        vals = [a + (b - a) * i / max(n - 1, 1) for i in range(n)]
        return [round(v) if kind is int else round(v, 6) for v in vals]
    step = _number(m[3], kind) if m[3] is not None else (1 if b >= a else -1)
    if step == 0 or (b - a) * step < 0:
        raise InvalidRequest(f"{text!r}: the step must go from {a} towards {b}")
    out, v = [], a
    while (v <= b + 1e-9) if step > 0 else (v >= b - 1e-9):
        out.append(round(v, 6) if kind is float else v)
        v += step
        if len(out) > MAX_CELLS:
            raise InvalidRequest(f"{text!r} makes more than {MAX_CELLS} values")
    return out


def parse_axis(text: str) -> Axis:
    """`FIELD=V1,V2,…` (`FIELD:ARG=…` for lora, controlnet and plugin axes) into an `Axis`."""
    name, sep, rest = text.partition("=")
    if not sep or not name.strip():
        raise InvalidRequest(f"an axis looks like cfg=1,4,7, not {text!r}")
    key, _, arg = name.strip().partition(":")
    key = re.sub(r"\s+", "_", key.strip().lower())
    key = ALIASES.get(key, key)
    if key not in FIELDS:
        known = ", ".join(k for k in FIELDS if k not in ("plugin",))
        raise InvalidRequest(f"unknown plot axis {key!r}; choose one of: {known}, lora:NAME, plugin:NAME.KEY")
    field = FIELDS[key]
    kind = float if key == "plugin" else field.kind
    items = [v.strip() for row in csv.reader([rest], skipinitialspace=True) for v in row]
    items = [v for v in items if v != ""]
    if not items:
        raise InvalidRequest(f"the {key} axis has no values")
    values: list[Any] = []
    try:
        for item in items:
            values += _expand_value(item, kind)
    except InvalidRequest as exc:
        raise InvalidRequest(f"{key} axis: {exc.message}") from None
    if key == "prompt_sr" and len(values) < 2:
        raise InvalidRequest("Prompt S/R needs the phrase to find and at least one replacement: prompt_sr=red,green")
    labels = tuple(_label(v) for v in values)
    return Axis(key, arg.strip(), tuple(values), labels)


def _label(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def expand(request: GenerationRequest, axes: Sequence[Axis]) -> list[Cell]:
    """Every cell of the plot, x fastest, then y, then z; each request validated (a bad value is one
    message naming its axis and value)."""
    if not axes:
        raise InvalidRequest("a plot needs at least one axis")
    if len(axes) > MAX_AXES:
        raise InvalidRequest(f"a plot has at most {MAX_AXES} axes (x, y, z), not {len(axes)}")
    keys = [(a.key, a.arg) for a in axes]
    if len(set(keys)) != len(keys):
        raise InvalidRequest("the same field is on two axes")
    padded = list(axes) + [None] * (MAX_AXES - len(axes))
    sizes = [len(a.values) if a else 1 for a in padded]
    if sizes[0] * sizes[1] * sizes[2] > MAX_CELLS:
        raise InvalidRequest(f"the plot has {sizes[0] * sizes[1] * sizes[2]} cells; the most is {MAX_CELLS}")
    base = request.model_dump()
    cells: list[Cell] = []
    for z in range(sizes[2]):
        for y in range(sizes[1]):
            for x in range(sizes[0]):
                fields = {**base}
                for axis, i in zip(padded, (x, y, z)):
                    if axis is None:
                        continue
                    try:
                        _apply(fields, axis, i)
                    except StudioError as exc:
                        raise InvalidRequest(f"{axis.key}={axis.labels[i]}: {exc.message}") from None
                try:
                    cells.append(Cell(x, y, z, GenerationRequest.create(**fields)))
                except InvalidRequest as exc:
                    where = ", ".join(f"{a.key}={a.labels[i]}" for a, i in zip(padded, (x, y, z)) if a)
                    raise InvalidRequest(f"plot cell {where}: {exc.message}") from None
    return cells


def _apply(fields: dict[str, Any], axis: Axis, i: int) -> None:
    value = axis.values[i]
    if axis.key == "prompt_sr":
        find = str(axis.values[0])
        if find not in fields["prompt"] and find not in fields["negative_prompt"]:
            raise InvalidRequest(f"Prompt S/R: {find!r} is not in the prompt")
        fields["prompt"] = fields["prompt"].replace(find, str(value))
        fields["negative_prompt"] = fields["negative_prompt"].replace(find, str(value))
        return
    FIELDS[axis.key].apply(fields, value, axis.arg)


def shape(axes: Sequence[Axis]) -> tuple[int, int, int]:
    """(columns, rows, sub-grids) of a plot over `axes`."""
    sizes = [len(a.values) for a in axes] + [1] * (MAX_AXES - len(axes))
    return sizes[0], sizes[1], sizes[2]
