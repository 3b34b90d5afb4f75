"""The plugins in the window: LoRA and ControlNet docks, the plugin manager, and Help ▸ About.

The window discovers plugins once (GUI thread; plugin modules import no torch) and hands the same
`PluginHost` to the engine it starts, so enabling or disabling a plugin in the manager, or adding
a LoRA folder in the panel, is what the engine uses on the next run.
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QDockWidget, QMainWindow

from studio.engine.plugins import PluginHost

log = logging.getLogger(__name__)


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


class PluginDocks:
    def __init__(self, window: QMainWindow, host: PluginHost) -> None:
        self.window = window
        self.host = host
        self.lora_panel = self.cn_panel = None
        self.lora_dock = self.cn_dock = None
        self._dialogs: list[Any] = []
        lora, cn = host.get("lora"), host.get("controlnet")
        if lora is not None:
            from studio.qt.plugins.lora_panel import LoraPanel

            self.lora_panel = LoraPanel(lora)
            self.lora_panel.insertText.connect(lambda text: window.prompt.prompt.insertPlainText(f" {text}"))
            self.lora_dock = self._dock("LoRA", self.lora_panel)
        if cn is not None:
            from studio.qt.plugins.controlnet_panel import ControlNetPanel

            self.cn_panel = ControlNetPanel(cn)
            self.cn_dock = self._dock("ControlNet", self.cn_panel)
        self.extra_docks: list[QDockWidget] = []
        for rec in host.enabled():  # third-party plugins contribute panels through the API's panel() hook
            if rec.name in ("lora", "controlnet") or not hasattr(rec.plugin, "panel"):
                continue
            try:
                widget = rec.plugin.panel()
            except Exception as exc:  # noqa: BLE001 — a broken panel disables its plugin, never the window
                rec.enabled, rec.error = False, f"raised in panel(): {exc.__class__.__name__}: {exc}"
                log.warning("plugin %s disabled: %s", rec.name, rec.error)
                continue
            if widget is not None:
                self.extra_docks.append(self._dock(rec.plugin.manifest.title or rec.name, widget))
        window.prompt.field_contributors.append(self.request_fields)
        self._menus()

    def _dock(self, title: str, widget) -> QDockWidget:
        w = self.window
        dock = QDockWidget(title, w)
        dock.setObjectName(f"{title}Dock")
        dock.setWidget(widget)
        w.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, dock)
        w.tabifyDockWidget(w.prompt_dock, dock)  # a tab beside the Prompt panel
        w.prompt_dock.raise_()
        return dock

    def _menus(self) -> None:
        w = self.window
        plugins = w.menuBar().addMenu("&Plugins")
        w._action(
            plugins,
            "Plugin manager…",
            self.open_manager,
            tip="See every plugin, its status and errors; enable or disable it.",
        )
        if self.cn_panel is not None:
            w._action(
                plugins,
                "Use Edit canvas as control image",
                self.control_from_canvas,
                tip="Send the image on the Edit canvas to the first ControlNet unit.",
            )
        for dock in (self.lora_dock, self.cn_dock, *self.extra_docks):
            if dock is not None:
                plugins.addAction(dock.toggleViewAction())
        help_menu = w.menuBar().addMenu("&Help")
        w._action(help_menu, "About Studio", self.open_about)

    # -- actions --------------------------------------------------------------------------------------
    def open_manager(self) -> None:
        from studio.qt.plugins.manager import PluginManagerDialog

        dlg = PluginManagerDialog(self.host, self.window)
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.show()
        self._dialogs.append(dlg)

    def open_about(self) -> None:
        from studio.qt.common.about import AboutDialog

        label = getattr(getattr(self.window, "progress", None), "device", None)  # status bar: device · dtype
        dlg = AboutDialog(label.text() if label is not None else "", self.window)
        dlg.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dlg.show()
        self._dialogs.append(dlg)

    def control_from_canvas(self) -> None:
        canvas = self.window.edit.canvas
        if not self.window.edit.has_image():
            self.window.messages.show_message(
                "The Edit canvas is empty.", "Open or paste an image there first.", kind="warning"
            )
            return
        self.cn_panel.set_image_from_array(canvas.image(), 0)
        self.cn_dock.raise_()

    # -- requests --------------------------------------------------------------------------------------
    def request_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = {}
        if self.lora_panel is not None:
            fields["loras"] = self.lora_panel.loras()
        if self.cn_panel is not None:
            fields["controlnets"] = self.cn_panel.units()
            if self.cn_panel.guess_mode():
                fields["plugins"] = {"controlnet": {"guess_mode": True}}
        return fields

    def load_request(self, request) -> None:
        """Recreate: put a recipe's LoRAs and ControlNet units back into the panels."""
        if self.lora_panel is not None:
            self.lora_panel.set_loras(tuple(request.loras))
        if self.cn_panel is not None:
            guess = bool(request.plugins.get("controlnet", {}).get("guess_mode", False))
            self.cn_panel.set_units(tuple(request.controlnets), guess_mode=guess)

    def shutdown(self) -> None:
        if self.cn_panel is not None:
            self.cn_panel.shutdown()
