"""Recommended settings per model family (steps, guidance and the share of steps it acts on, size, scheduler).

The table is `resources/recommended_settings.json`; the family comes from what the catalogue
reads in the model's header or configs (architecture, v-prediction) and its name (Turbo,
Lightning, LCM). The window applies them when a model is chosen; the user can change them after.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from studio.core import samplers
from studio.core.catalogue import CatalogueEntry
from studio.core.paths import demo_model_dir, resources_dir
from studio.core.request import guidance_span

CHECKPOINT_KINDS = ("checkpoint", "inpaint checkpoint")


@dataclass(frozen=True)
class Recommendation:
    family: str
    label: str
    steps: int
    steps_range: tuple[int, int]
    cfg: float
    cfg_range: tuple[float, float]
    width: int
    height: int
    scheduler: str
    note: str = ""
    cfg_end: float = 1.0  # guidance on this share of the steps (GenerationRequest.guidance_end)
    guidance: str = "cfg"  # what the number means: cfg | distilled (FLUX dev/Fill) | none (FLUX schnell)
    schedule_type: str = samplers.AUTOMATIC

    @property
    def sampler_label(self) -> str:
        """ "DPM++ 2M Karras": the sampler with its schedule type, as a recipe's scheduler may name both."""
        return samplers.label(self.scheduler, self.schedule_type)

    def summary(self) -> str:
        lo, hi = self.steps_range
        clo, chi = self.cfg_range
        if self.guidance == "none":
            what = "no guidance"
        elif self.guidance == "distilled":
            what = f"guidance {self.cfg:g} (distilled)"
        else:
            what = f"CFG {clo:g}–{chi:g}{guidance_span(self.cfg_end)}"
        return f"{self.label}: {lo}–{hi} steps, {what}, {self.width}×{self.height}, {self.sampler_label}"


@lru_cache(maxsize=4)
def _table(path: str) -> dict[str, dict[str, Any]]:
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    return {k: v for k, v in data.items() if not k.startswith("_")}


def table() -> dict[str, dict[str, Any]]:
    return _table(str(resources_dir() / "recommended_settings.json"))


def family_of(entry: CatalogueEntry) -> str:
    """The table key for a checkpoint entry ("" for anything that is not a checkpoint)."""
    if entry.kind not in CHECKPOINT_KINDS:
        return ""
    if Path(entry.path).resolve() == demo_model_dir().resolve():  # "demo", or its folder by any path
        return "demo"
    variant = entry.variant.lower()
    if entry.arch == "flux":
        return "flux-schnell" if "schnell" in variant else "flux-fill" if "fill" in variant else "flux-dev"
    if entry.arch == "sd3":
        if "3.5 large" in variant:
            return "sd35-large-turbo" if "turbo" in variant else "sd35-large"
        return "sd35-medium" if "3.5 medium" in variant else "sd3-medium"
    xl = entry.arch.startswith("sdxl")
    if "turbo" in variant:
        return "sdxl-turbo" if xl else "sd-turbo"
    if "lcm" in variant:
        return "sdxl-lcm" if xl else "lcm"
    if entry.arch == "sd2":
        return "sd2-v" if "v-prediction" in variant else "sd2"
    if entry.arch in ("sd1", "sdxl", "sdxl-refiner"):
        return entry.arch
    return ""


def for_family(family: str) -> Recommendation | None:
    row = table().get(family)
    if row is None:
        return None
    return Recommendation(
        family=family,
        label=row.get("label", family),
        steps=int(row["steps"]),
        steps_range=tuple(row.get("steps_range", (row["steps"], row["steps"]))),
        cfg=float(row["cfg"]),
        cfg_range=tuple(row.get("cfg_range", (row["cfg"], row["cfg"]))),
        width=int(row["size"][0]),
        height=int(row["size"][1]),
        scheduler=samplers.split(row["scheduler"])[0],
        note=row.get("note", ""),
        cfg_end=float(row.get("cfg_end", 1.0)),
        guidance=row.get("guidance", "cfg"),
        schedule_type=row.get("schedule_type") or samplers.split(row["scheduler"])[1] or samplers.AUTOMATIC,
    )


def for_entry(entry: CatalogueEntry | None) -> Recommendation | None:
    return for_family(family_of(entry)) if entry is not None else None


def for_model(model: str) -> Recommendation | None:
    """Recommended settings for "demo", a file or a folder (reads only its header or configs)."""
    from studio.core.library import identify

    return for_entry(identify(model))
