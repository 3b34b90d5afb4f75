"""Finding, loading and calling plugins; a failing plugin is disabled, never fatal."""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import logging
import pkgutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.core.errors import StudioError
from studio.core.paths import data_dir
from studio.plugin_api import API_VERSION, PipelineContext, PluginError

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "studio.plugins"


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

    @property
    def status(self) -> str:
        return "failed" if self.error else "enabled" if self.enabled else "disabled"


@dataclass
class PluginHost:
    on_error: str = "fail"  # "fail": the run stops with a message; "skip": it goes on without the plugin
    records: dict[str, PluginRecord] = field(default_factory=dict)

    # -- discovery --------------------------------------------------------------------------------
    def discover(self, user_dir: Path | None = None, first_party: bool = True) -> list[PluginRecord]:
        pkg = _first_party() if first_party else None
        if pkg is not None:
            for info in pkgutil.iter_modules(pkg.__path__):
                self._load(
                    f"studio_plugins.{info.name}",
                    "first-party",
                    lambda n=info.name: importlib.import_module(f"studio_plugins.{n}"),
                )
        user_dir = user_dir if user_dir is not None else data_dir() / "plugins"
        if user_dir.is_dir():
            for d in sorted(p for p in user_dir.iterdir() if (p / "__init__.py").is_file()):
                self._load(str(d), "user", lambda d=d: _import_path(d))
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            self._load(ep.value, "entry point", ep.load, name=ep.name)
        return list(self.records.values())

    def _load(self, origin: str, source: str, loader, name: str | None = None) -> None:
        key = name or origin.rsplit(".", 1)[-1].rsplit("/", 1)[-1]
        rec = PluginRecord(key, source, origin)
        try:
            obj = loader()
            obj = getattr(obj, "PLUGIN", obj)  # a module exposing PLUGIN, or the object itself
            plugin = obj() if isinstance(obj, type) or (callable(obj) and not hasattr(obj, "manifest")) else obj
            manifest = plugin.manifest
            if manifest.api_version > API_VERSION:
                raise PluginError(f"needs plugin API {manifest.api_version}; this studio has {API_VERSION}")
            rec.name, rec.plugin = manifest.name, plugin
        except Exception as exc:  # noqa: BLE001 — any failure disables the plugin, never the app
            rec.enabled, rec.error = False, f"failed to load: {exc.__class__.__name__}: {exc}"
            log.warning("plugin %s disabled: %s", origin, rec.error)
        self.records[rec.name] = rec

    def add(self, plugin: Any, source: str = "first-party") -> PluginRecord:
        rec = PluginRecord(plugin.manifest.name, source, type(plugin).__module__, plugin)
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
            try:
                hook(ctx)
            except PluginError as exc:  # the user's input was wrong: say so, keep the plugin
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


def _first_party():
    """The `studio_plugins` package (a folder in a checkout, frozen modules in a packaged build)."""
    try:
        import studio_plugins
    except ImportError:
        return None
    return studio_plugins


def _import_path(folder: Path):
    name = f"studio_user_plugin_{folder.name}"
    spec = importlib.util.spec_from_file_location(
        name, folder / "__init__.py", submodule_search_locations=[str(folder)]
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
