"""Plugin panels take their place beside the Prompt panel by their manifests' order (LoRA, then
ControlNet, then IP-Adapter, then others), whatever order discovery found them in."""

from studio.engine.plugins import PluginHost
from studio.plugin_api import PluginManifest


def test_panels_follow_the_manifest_order_not_discovery(make_window, fake_engine, monkeypatch):
    from PySide6.QtWidgets import QLabel

    from studio.qt.plugins import docks as plugin_docks

    class Extra:
        manifest = PluginManifest(name="extra", version="1", title="Extra", contributes=("panel",))

        def panel(self):
            return QLabel("extra")

    real = plugin_docks.discover_plugins

    def discover() -> PluginHost:
        found = real()
        host = PluginHost()
        host.add(Extra(), source="entry point")
        for name in reversed(list(found.records)):  # discovery order reversed: controlnet before lora
            host.records[name] = found.records[name]
        return host

    monkeypatch.setattr("studio.qt.app.main_window.discover_plugins", discover)
    w = make_window(engine_factory=fake_engine)
    assert list(w.plugin_docks.docks) == ["lora", "controlnet", "ip_adapter", "extra"]
    titles = [d.windowTitle() for d in w.plugin_docks.docks.values()]
    assert titles == ["LoRA", "ControlNet", "IP-Adapter", "Extra"]
