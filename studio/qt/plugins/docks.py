"""The plugins in the window: a dock for each plugin's `panel()`, the plugin manager, and Help ▸ About.

The window discovers plugins once (GUI thread; plugin modules import no torch) and hands the same
`PluginHost` to the engine it starts, so enabling or disabling a plugin in the manager, or adding
a LoRA folder in the panel, is what the engine uses on the next run.

Every panel comes the same way, the studio's own LoRA and ControlNet ones included: the plugin's
`panel(host)` hook (studio.plugin_api) returns a widget, docked as a tab beside the Prompt panel;
`host` (`WindowPanelHost`) is all it sees of the window. A panel's optional `request_fields()`,
`load_request(request)` and `shutdown()` are called for every request, Recreate and close.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDockWidget, QWidget

from studio.engine.plugins import PluginHost
from studio.qt.common.window import StudioWindow

log = logging.getLogger(__name__)
CONTROL_FROM_CANVAS = "Use Edit canvas as control image"  # the ControlNet panel's Plugins menu entry


def discover_plugins() -> PluginHost:
    host = PluginHost()
    try:
        host.discover()
    except Exception as exc:  # noqa: BLE001 — discovery must never stop the window
        log.warning("plugin discovery failed: %s", exc)
    return host


def engine_factory(host: PluginHost):
    def make() -> Any:  # runs on the engine thread: torch is imported there, not here
        from studio.engine.engine import Engine

        return Engine(plugins=host)

    return make


class WindowPanelHost:
    """What a plugin panel may ask of the window (`studio.plugin_api.PanelHost`)."""

    def __init__(self, docks: PluginDocks, plugin: str) -> None:
        self._docks, self._plugin = docks, plugin

    def insert_prompt_text(self, text: str) -> None:
        self._docks.window.session.insert_prompt_text(text)

    def edit_canvas_image(self) -> Any:
        return self._docks.window.edit_image()

    def show_message(self, message: str, hint: str = "", kind: str = "warning") -> None:
        self._docks.window.session.say(message, hint, kind)

    def add_action(self, text: str, callback: Callable[[], None], tip: str = "") -> None:
        self._docks.actions.append((self._plugin, text, callback, tip))

    def raise_panel(self, widget: Any) -> None:
        for name, panel in self._docks.panels.items():
            if panel is widget:
                self._docks.docks[name].raise_()


class PluginDocks:
    def __init__(self, window: StudioWindow, host: PluginHost) -> None:
        self.window = window
        self.host = host
        self.panels: dict[str, QWidget] = {}  # plugin name -> its panel, in discovery order
        self.docks: dict[str, QDockWidget] = {}
        self.actions: list[tuple[str, str, Callable[[], None], str]] = []  # (plugin, text, callback, tip)
        self._dialogs: list[Any] = []
        enabled = host.enabled()  # panels in the manifests' order (LoRA, ControlNet), then as discovered
        for rec in sorted(enabled, key=lambda r: getattr(r.manifest or r.plugin.manifest, "order", 100)):
            if not hasattr(rec.plugin, "panel"):
                continue
            try:
                widget = _make_panel(rec.plugin, WindowPanelHost(self, rec.name))
            except Exception as exc:  # noqa: BLE001 — a broken panel disables its plugin, never the window
                rec.enabled, rec.error = False, f"raised in panel(): {exc.__class__.__name__}: {exc}"
                log.warning("plugin %s disabled: %s", rec.name, rec.error)
                self.actions = [a for a in self.actions if a[0] != rec.name]
                continue
            if widget is not None:
                manifest = rec.manifest or rec.plugin.manifest
                self.panels[rec.name] = widget
                self.docks[rec.name] = self._dock(manifest.title or rec.name, widget)
        window.session.field_contributors.append(self.request_fields)
        self._menus()

    # The studio's own panels by name (for scripts and tests; the window treats every panel alike).
    @property
    def lora_panel(self) -> Any:
        return self.panels.get("lora")

    @property
    def cn_panel(self) -> Any:
        return self.panels.get("controlnet")

    @property
    def lora_dock(self) -> QDockWidget | None:
        return self.docks.get("lora")

    @property
    def cn_dock(self) -> QDockWidget | None:
        return self.docks.get("controlnet")

    @property
    def extra_docks(self) -> list[QDockWidget]:
        """The docks of plugins that are not the studio's own."""
        first = {n for n, r in self.host.records.items() if r.source == "first-party"}
        return [d for n, d in self.docks.items() if n not in first]

    def _dock(self, title: str, widget) -> QDockWidget:
        w = self.window
        dock = QDockWidget(title, w.window())
        dock.setObjectName(f"{title}Dock")
        dock.setWidget(widget)
        w.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)
        w.tabifyDockWidget(w.prompt_dock, dock)  # a tab beside the Prompt panel
        w.prompt_dock.raise_()
        return dock

    def _menus(self) -> None:
        w = self.window
        plugins = w.menuBar().addMenu("&Plugins")
        w.add_menu_action(
            plugins,
            "Plugin manager…",
            self.open_manager,
            tip="See every plugin, its status and errors; enable or disable it.",
        )
        for _plugin, text, callback, tip in self.actions:
            w.add_menu_action(plugins, text, callback, tip=tip)
        for dock in self.docks.values():
            plugins.addAction(dock.toggleViewAction())
        help_menu = w.menuBar().addMenu("&Help")
        w.add_menu_action(help_menu, "About Studio", self.open_about)

    # -- actions --------------------------------------------------------------------------------------
    def open_manager(self) -> None:
        from studio.qt.plugins.manager import PluginManagerDialog

        dlg = PluginManagerDialog(self.host, self.window.window())
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.show()
        self._dialogs.append(dlg)

    def open_about(self) -> None:
        from studio.qt.common.about import AboutDialog

        dlg = AboutDialog(self.window.device_text(), self.window.window())
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.show()
        self._dialogs.append(dlg)

    def run_action(self, text: str) -> None:
        """Run a Plugins menu entry that a panel added (as choosing it in the menu does)."""
        for _plugin, label, callback, _tip in self.actions:
            if label == text:
                callback()
                return

    def control_from_canvas(self) -> None:
        """Plugins ▸ Use Edit canvas as control image (added by the ControlNet panel)."""
        self.run_action(CONTROL_FROM_CANVAS)

    # -- requests --------------------------------------------------------------------------------------
    def request_fields(self) -> dict[str, Any]:
        """What every panel adds to a request; `plugins` entries are merged per plugin."""
        fields: dict[str, Any] = {}
        for panel in self.panels.values():
            hook = getattr(panel, "request_fields", None)
            if hook is None:
                continue
            for key, value in hook().items():
                if key == "plugins":
                    fields.setdefault("plugins", {}).update(value)
                else:
                    fields[key] = value
        return fields

    def load_request(self, request) -> None:
        """Recreate: every panel puts its part of a recipe back (LoRAs, ControlNet units …)."""
        for panel in self.panels.values():
            hook = getattr(panel, "load_request", None)
            if hook is not None:
                hook(request)

    def shutdown(self) -> None:
        for panel in self.panels.values():
            hook = getattr(panel, "shutdown", None)
            if hook is not None:
                hook()


def _make_panel(plugin: Any, host: WindowPanelHost) -> Any:
    """`panel(host)`, or `panel()` for a plugin written before panels were handed the host."""
    try:
        takes_host = bool(inspect.signature(plugin.panel).parameters)
    except (TypeError, ValueError):
        takes_host = True
    return plugin.panel(host) if takes_host else plugin.panel()
