"""The public plugin API. First-party plugins (`studio_plugins/`) use only this, as third-party ones do.

A plugin is an object with a `manifest` and any of the hooks below; the studio finds plugins in
the `studio_plugins` package, the user plugins folder (`<data dir>/plugins/<name>/__init__.py`) and
the entry-point group `studio.plugins` (value: `module:OBJECT`, an instance or a zero-argument
factory). A plugin that fails to import or raises in a hook is disabled, logged and shown to the
user; a run then fails cleanly or goes on without it, as the user chose.

Hooks (all optional):
- `prepare(ctx: PipelineContext)` — before sampling, on the engine thread: load adapters, change
  the effective prompt, add pipeline call arguments, record metadata.
- `parameters(request) -> dict[str, str]` — extra `Key: value` pairs for the A1111 `parameters` text.
- `preprocessors() -> dict[str, Callable[[np.ndarray], np.ndarray]]` — named image preprocessors.
- `panel()` — a Qt widget for the window (only called by `studio.qt`).
Plugin settings that belong to the recipe go in `GenerationRequest.plugins[manifest.name]`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

API_VERSION = 1


@dataclass(frozen=True)
class PluginManifest:
    name: str  # unique, lower-case: the key under GenerationRequest.plugins
    version: str
    api_version: int = API_VERSION
    title: str = ""
    contributes: tuple[str, ...] = ()  # e.g. ("prepare", "parameters", "panel")
    description: str = ""


@dataclass
class PipelineContext:
    """What `prepare` hooks see and may change, for one run."""

    pipe: Any  # the diffusers pipeline about to run (shared and cached: undo what you change)
    request: Any  # the GenerationRequest (frozen)
    arch: str  # "sd1" | "sd2" | "sdxl" | "sdxl-refiner"
    device: str
    prompt: str  # the prompt the text encoder will see (plugins may strip their own syntax)
    negative_prompt: str
    size: tuple[int, int] = (512, 512)  # (width, height) the pipeline generates at
    call_kwargs: dict[str, Any] = field(default_factory=dict)  # extra arguments for pipe(...)
    metadata: dict[str, Any] = field(default_factory=dict)  # recorded in the result (provenance)
    notes: list[str] = field(default_factory=list)  # messages for the user


class PluginError(Exception):
    """Raise this from a hook for an error the user caused (the message is shown as is)."""
