"""The public plugin API. First-party plugins (`studio_plugins`) use only this (and, for their
window panels, `studio.plugin_ui`), as third-party ones do.

A plugin is an object with a `manifest` and any of the hooks below. The studio finds plugins in
one way for all of them: the entry-point group `studio.plugins` (value `module:OBJECT`, an
instance or a zero-argument factory; the studio's own LoRA and ControlNet plugins are registered
there in its pyproject.toml like any other package's), plus folders in the user plugins folder
(`<data dir>/plugins/<name>/__init__.py`, object `PLUGIN`). Beside the module, a `plugin.json`
manifest (the fields of `PluginManifest`) lets the studio read what a plugin is — and refuse one
made for a newer API — without importing it; without that file the manifest is read from the
imported object. A plugin that fails to import or raises in a hook is disabled, logged and shown
to the user; a run then fails cleanly or goes on without it, as the user chose.

Hooks (all optional):
- `prepare(ctx: PipelineContext)` — before sampling, on the engine thread: load adapters, change
  the effective prompt, add pipeline call arguments, record metadata.
- `finish(ctx: PipelineContext)` — after the run (done, cancelled or failed; a hires fix's two passes
  are one run: each pass prepares, every prepared context is finished at the end), on the engine
  thread: undo what `prepare` changed on the shared, cached pipeline (attention processors, hooks).
- `parameters(request) -> dict[str, str]` — extra `Key: value` pairs for the A1111 `parameters` text.
- `preprocessors() -> dict[str, Callable[[np.ndarray], np.ndarray]]` — named image preprocessors.
- `panel(host: PanelHost)` (or `panel()`) — a Qt widget the window docks beside the Prompt panel
  (only called by the window, on the GUI thread). The widget may have `request_fields() -> dict`
  (fields it adds to every request the Prompt panel builds), `load_request(request)` (Recreate
  puts a recipe back) and `shutdown()` (the window closes).
Plugin settings that belong to the recipe go in `GenerationRequest.plugins[manifest.name]`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Protocol

API_VERSION = 1
MANIFEST_FILE = "plugin.json"


@dataclass(frozen=True)
class PluginManifest:
    name: str  # unique, lower-case: the key under GenerationRequest.plugins
    version: str
    api_version: int = API_VERSION
    title: str = ""
    contributes: tuple[str, ...] = ()  # e.g. ("prepare", "parameters", "panel")
    description: str = ""
    order: int = 100  # where its panel's tab goes beside the Prompt panel: lower first, then by discovery

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PluginManifest:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise PluginError(f"unknown manifest fields: {', '.join(unknown)}")
        if not isinstance(data.get("name"), str) or not isinstance(data.get("version"), str):
            raise PluginError("a manifest needs a name and a version (strings)")
        values = dict(data)
        values["contributes"] = tuple(values.get("contributes", ()))
        values["api_version"] = int(values.get("api_version", API_VERSION))
        return cls(**values)


def read_manifest(path: Path) -> PluginManifest:
    """The manifest in a `plugin.json` file (the plugin is not imported)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PluginError(f"cannot read {path.name}: {exc}") from None
    if not isinstance(data, dict):
        raise PluginError(f"{path.name} is not a JSON object")
    return PluginManifest.from_dict(data)


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


class PanelHost(Protocol):
    """What the window offers a plugin's panel (handed to `panel(host)`)."""

    def insert_prompt_text(self, text: str) -> None:
        """Insert text at the cursor of the Prompt panel's prompt (e.g. `<lora:name:0.8>`)."""

    def edit_canvas_image(self) -> Any:
        """The picture on the Edit canvas as an (H, W, 3) uint8 array, or None when it is empty."""

    def show_message(self, message: str, hint: str = "", kind: str = "warning") -> None:
        """Say something in the window's message bar (kind: "error" | "warning" | "info")."""

    def add_action(self, text: str, callback: Callable[[], None], tip: str = "") -> None:
        """Add an entry to the window's Plugins menu."""

    def raise_panel(self, widget: Any) -> None:
        """Bring the dock holding `widget` to the front."""


class PluginError(Exception):
    """Raise this from a hook for an error the user caused (the message is shown as is)."""
