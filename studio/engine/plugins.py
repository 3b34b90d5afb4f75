"""Finding, loading and calling plugins; a failing plugin is disabled, never fatal.

One way in for every plugin: the entry points of the group `studio.plugins` (the studio's own
LoRA and ControlNet plugins are registered there by its pyproject.toml, as any package registers
its plugins; a packaged build carries that metadata), and the folders of the user plugins folder.
Each plugin's `plugin.json` manifest, where there is one, is read before anything is imported: a
plugin made for a newer plugin API is refused without running its code.
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import logging
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.core.errors import StudioError
from studio.core.paths import data_dir
from studio.plugin_api import API_VERSION, MANIFEST_FILE, PipelineContext, PluginError, PluginManifest, read_manifest

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "studio.plugins"
FIRST_PARTY = "studio_plugins"  # the package of the studio's own plugins


class PluginFailed(StudioError):
    code = "plugin-failed"


@dataclass
class PluginRecord:
    name: str
    source: str  # "first-party" | "user" | "entry point"
    origin: str  # module or path
    plugin: Any = None
    enabled: bool = True
    error: str = ""
    manifest: PluginManifest | None = None  # read from plugin.json before import, else from the plugin

    @property
    def status(self) -> str:
        return "failed" if self.error else "enabled" if self.enabled else "disabled"


@dataclass(frozen=True)
class PluginEntry:
    """A plugin found but not yet imported: where its manifest file would be, how to load it."""

    name: str
    source: str
    origin: str
    folder: Path | None  # the plugin's package folder (its plugin.json), when known without importing
    load: Callable[[], Any]


@dataclass
class PluginHost:
    on_error: str = "fail"  # "fail": the run stops with a message; "skip": it goes on without the plugin
    records: dict[str, PluginRecord] = field(default_factory=dict)
    _prepared: list[tuple[PluginRecord, PipelineContext]] = field(default_factory=list, repr=False)

    # -- discovery --------------------------------------------------------------------------------
    def discover(self, user_dir: Path | None = None, first_party: bool = True) -> list[PluginRecord]:
        """Find every plugin (entry points, then the user plugins folder) and load the ones whose
        manifest allows it. `first_party=False` leaves out the studio's own plugins."""
        entries = [e for e in entry_point_plugins() if first_party or e.source != "first-party"]
        entries += user_folder_plugins(user_dir if user_dir is not None else data_dir() / "plugins")
        for entry in entries:
            self._load(entry)
        return list(self.records.values())

    def _load(self, entry: PluginEntry) -> None:
        rec = PluginRecord(entry.name, entry.source, entry.origin)
        try:
            manifest_file = entry.folder / MANIFEST_FILE if entry.folder is not None else None
            if manifest_file is not None and manifest_file.is_file():
                rec.manifest = read_manifest(manifest_file)
                rec.name = rec.manifest.name
                _check_api(rec.manifest)  # before any of its code runs
            obj = entry.load()
            obj = getattr(obj, "PLUGIN", obj)  # a module exposing PLUGIN, or the object itself
            plugin = obj() if isinstance(obj, type) or (callable(obj) and not hasattr(obj, "manifest")) else obj
            manifest = plugin.manifest
            if rec.manifest is not None and manifest.name != rec.manifest.name:
                raise PluginError(f"its {MANIFEST_FILE} names {rec.manifest.name!r}, the plugin {manifest.name!r}")
            _check_api(manifest)
            rec.name, rec.plugin, rec.manifest = manifest.name, plugin, manifest
        except Exception as exc:  # noqa: BLE001 — any failure disables the plugin, never the app
            rec.enabled, rec.error = False, f"failed to load: {exc.__class__.__name__}: {exc}"
            log.warning("plugin %s disabled: %s", entry.origin, rec.error)
        self.records[rec.name] = rec

    def add(self, plugin: Any, source: str = "first-party") -> PluginRecord:
        rec = PluginRecord(plugin.manifest.name, source, type(plugin).__module__, plugin, manifest=plugin.manifest)
        self.records[rec.name] = rec
        return rec

    def set_enabled(self, name: str, enabled: bool) -> None:
        rec = self.records[name]
        rec.enabled = enabled and not rec.error

    def enabled(self) -> list[PluginRecord]:
        return [r for r in self.records.values() if r.enabled and r.plugin is not None]

    def get(self, name: str) -> Any:
        rec = self.records.get(name)
        return rec.plugin if rec and rec.enabled else None

    # -- hooks ------------------------------------------------------------------------------------
    def prepare(self, ctx: PipelineContext) -> None:
        for rec in self.enabled():
            hook = getattr(rec.plugin, "prepare", None)
            if hook is None:
                continue
            self._prepared.append((rec, ctx))  # its finish hook runs after the run, whatever happens
            try:
                hook(ctx)
            except (PluginError, StudioError) as exc:  # the user's input was wrong: say so, keep the plugin
                raise PluginFailed(f"{rec.name}: {exc}") from None
            except Exception as exc:  # noqa: BLE001 — a broken plugin: disable it
                rec.enabled, rec.error = False, f"raised while preparing a run: {exc.__class__.__name__}: {exc}"
                log.warning("plugin %s disabled: %s", rec.name, rec.error)
                if self.on_error == "fail":
                    raise PluginFailed(
                        f"The {rec.name} plugin failed and was disabled ({exc.__class__.__name__}: {exc}).",
                        "Run again to continue without it, or re-enable it in the plugin manager.",
                    ) from None
                ctx.notes.append(f"The {rec.name} plugin failed and was disabled; the run went on without it.")

    def finish(self) -> None:
        """After a run (done, cancelled or failed): each plugin that prepared it undoes what it changed,
        latest first. A plugin whose undo fails is disabled (the pipeline may keep its change)."""
        prepared, self._prepared = self._prepared, []
        for rec, ctx in reversed(prepared):
            hook = getattr(rec.plugin, "finish", None)
            if hook is None:
                continue
            try:
                hook(ctx)
            except Exception as exc:  # noqa: BLE001 — never let an undo hide the run's own outcome
                rec.enabled, rec.error = False, f"raised while finishing a run: {exc.__class__.__name__}: {exc}"
                log.warning("plugin %s disabled: %s", rec.name, rec.error)

    def parameters(self, request: Any) -> dict[str, str]:
        out: dict[str, str] = {}
        for rec in self.enabled():
            hook = getattr(rec.plugin, "parameters", None)
            if hook is not None:
                try:
                    out.update(hook(request) or {})
                except Exception as exc:  # noqa: BLE001
                    rec.enabled, rec.error = False, f"raised in parameters(): {exc}"
        return out


def _check_api(manifest: PluginManifest) -> None:
    if manifest.api_version > API_VERSION:
        raise PluginError(f"needs plugin API {manifest.api_version}; this studio has {API_VERSION}")


def entry_point_plugins() -> list[PluginEntry]:
    """The plugins registered under the `studio.plugins` entry-point group, first-party ones first."""
    found = []
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        module = ep.value.split(":", 1)[0].strip()
        source = "first-party" if module.split(".")[0] == FIRST_PARTY else "entry point"
        found.append(PluginEntry(ep.name, source, ep.value, _package_folder(module), ep.load))
    found.sort(key=lambda e: e.source != "first-party")  # stable: each group keeps the registered order
    return found


def user_folder_plugins(user_dir: Path) -> list[PluginEntry]:
    """Plugins dropped into the user plugins folder: one folder with an `__init__.py` each."""
    if not user_dir.is_dir():
        return []
    folders = sorted(p for p in user_dir.iterdir() if (p / "__init__.py").is_file())
    return [PluginEntry(d.name, "user", str(d), d, functools.partial(_import_path, d)) for d in folders]


def _package_folder(module: str) -> Path | None:
    """The folder of a plugin package, found without importing the package itself (only its parents)."""
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _import_path(folder: Path) -> Any:
    name = f"studio_user_plugin_{folder.name}"
    spec = importlib.util.spec_from_file_location(
        name, folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    if spec is None or spec.loader is None:
        raise PluginError(f"{folder} cannot be imported")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
