"""The plugin widgets on their own: plugin manager dialog, LoRA panel, ControlNet panel."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QLabel

from studio.core.hashing import sha256_file
from studio.core.request import ControlNetRef, ImageRef, LoraRef
from studio.plugin_api import PluginError, PluginManifest

pytestmark = pytest.mark.usefixtures("themed_app", "studio_home")


# -- fixtures ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lora_dir(tmp_path_factory) -> Path:
    from studio.testing import save_tiny_lora

    d = tmp_path_factory.mktemp("loras")
    save_tiny_lora(d / "stripes_kohya.safetensors", "sd15", "kohya")
    save_tiny_lora(d / "sub" / "plain_peft.safetensors", "sd15", "peft", seed=1)
    (d / "not_a_lora.safetensors").write_bytes(b"garbage")  # skipped by the scan, not fatal
    from PIL import Image

    Image.new("RGB", (32, 32), (200, 80, 40)).save(d / "stripes_kohya.preview.png")
    return d


@pytest.fixture(scope="module")
def controlnet_file(tmp_path_factory) -> Path:
    from studio.testing import save_tiny_controlnet

    return save_tiny_controlnet(tmp_path_factory.mktemp("cn") / "tiny_cn.safetensors", fmt="single")


@pytest.fixture
def settings(tmp_path) -> QSettings:
    return QSettings(str(tmp_path / "plugins.ini"), QSettings.Format.IniFormat)


@pytest.fixture
def square_png(tmp_path) -> Path:
    from PIL import Image

    a = np.zeros((96, 96, 3), np.uint8)
    a[24:72, 24:72] = 255  # a white square: Canny edges lie on its border only
    path = tmp_path / "square.png"
    Image.fromarray(a).save(path)
    return path


class FakeControlNet:
    """The preprocess API of ControlNetPlugin, recording where and how often it runs."""

    manifest = PluginManifest(name="controlnet", version="0")

    def __init__(self) -> None:
        self.calls: list[tuple[str, int]] = []

    def preprocessors(self):
        return {"none": None, "invert": None, "boom": None}

    def preprocess(self, name, image):
        self.calls.append((name, threading.get_ident()))
        if name == "boom":
            raise PluginError("the boom preprocessor needs weights that are not here")
        return 255 - image if name == "invert" else image


# -- plugin manager ---------------------------------------------------------------------------------
def test_manager_lists_failed_plugin_and_toggles(qtbot, monkeypatch):
    from studio.engine.plugins import PluginHost, PluginRecord
    from studio.qt.plugins.manager import PluginManagerDialog
    from studio_plugins.lora import LoraPlugin

    host = PluginHost()
    host.add(LoraPlugin(folders=[]))
    host.records["broken"] = PluginRecord(
        "broken",
        "entry point",
        "broken_pkg:PLUGIN",
        enabled=False,
        error="failed to load: ImportError: No module named 'numpyy'",
    )
    calls = []
    orig = host.set_enabled
    monkeypatch.setattr(host, "set_enabled", lambda n, on: (calls.append((n, on)), orig(n, on)))

    dlg = PluginManagerDialog(host)
    qtbot.addWidget(dlg)
    dlg.show()
    assert not dlg.isModal()
    assert set(dlg.rows) == {"lora", "broken"}
    broken = dlg.rows["broken"]
    assert broken.status == "failed" and broken.badge.text() == "failed"
    assert broken.error.isVisible() and "No module named 'numpyy'" in broken.error.text()
    assert not broken.toggle.isEnabled()  # a failed plugin cannot be switched on
    lora = dlg.rows["lora"]
    assert lora.badge.text() == "enabled" and not lora.error.isVisible()
    assert any("v1.0" in label.text() for label in lora.findChildren(QLabel))

    with qtbot.waitSignal(dlg.changed, timeout=1000):
        lora.toggle.click()
    assert calls == [("lora", False)]
    assert host.records["lora"].status == "disabled" and lora.badge.text() == "disabled"
    assert host.get("lora") is None
    lora.toggle.click()
    assert calls[-1] == ("lora", True) and host.records["lora"].enabled


def test_manager_reload_keeps_choices_and_survives_a_failing_discovery(qtbot):
    from studio.engine.plugins import PluginHost
    from studio.qt.plugins.manager import PluginManagerDialog
    from studio_plugins.lora import LoraPlugin

    class Extra:
        manifest = PluginManifest(name="extra", version="2.1", title="Extra")

    def discover(h):
        h.records.clear()  # discovery makes fresh records, as PluginHost.discover does
        h.add(LoraPlugin(folders=[]))
        h.add(Extra(), source="user")

    host = PluginHost()
    host.add(LoraPlugin(folders=[]))
    dlg = PluginManagerDialog(host, discover=discover)
    qtbot.addWidget(dlg)
    dlg.rows["lora"].toggle.click()
    with qtbot.waitSignal(dlg.changed, timeout=1000):
        dlg.reload_button.click()
    assert set(dlg.rows) == {"lora", "extra"}
    assert host.records["lora"].status == "disabled" and not dlg.rows["lora"].toggle.isChecked()

    dlg._discover = lambda h: (_ for _ in ()).throw(RuntimeError("entry points unreadable"))
    dlg.reload()
    assert "Reload failed" in dlg.summary.text() and "entry points unreadable" in dlg.summary.text()


# -- LoRA panel -------------------------------------------------------------------------------------
def test_lora_panel_finds_files_with_trigger_words_and_persists_folders(qtbot, lora_dir, settings):
    from studio_plugins.lora import LoraPlugin
    from studio_plugins.lora.panel import LoraPanel

    panel = LoraPanel(LoraPlugin(folders=[]), settings=settings)
    qtbot.addWidget(panel)
    panel.show()
    assert panel.library.count() == 0 and "no LoRA folders" in panel.count.text()
    panel.add_folder(lora_dir)
    assert sorted(panel.visible_names()) == ["plain_peft", "stripes_kohya"]  # the junk file is skipped
    item = next(panel.library.item(i) for i in range(2) if panel.library.item(i).text().startswith("stripes_kohya"))
    assert "trigger: striped, outlined" in item.text() and "rank 4" in item.text()
    assert "Tags: striped, outlined" in item.toolTip()
    assert item.icon().pixmap(16, 16).toImage().pixelColor(8, 8).red() > 150  # the preview next to the file

    panel.search.setText("outlined")
    assert sorted(panel.visible_names()) == ["plain_peft", "stripes_kohya"]
    panel.search.setText("kohya")
    assert panel.visible_names() == ["stripes_kohya"] and panel.count.text() == "1 of 2"
    panel.search.setText("nothing-like-this")
    assert panel.visible_names() == []

    again = LoraPanel(LoraPlugin(folders=[]), settings=settings)  # the added folder was remembered
    qtbot.addWidget(again)
    assert sorted(f.name for f in again.files) == ["plain_peft", "stripes_kohya"]

    panel.add_folder(lora_dir / "missing")
    assert panel.message.isVisible() and "is not a folder" in panel.message.message


def test_lora_panel_active_loras_and_weights(qtbot, lora_dir, settings):
    from studio_plugins.lora import LoraPlugin
    from studio_plugins.lora.panel import LoraPanel

    panel = LoraPanel(LoraPlugin(folders=[lora_dir]), settings=settings)
    qtbot.addWidget(panel)
    panel.show()
    by_name = {f.name: f for f in panel.files}
    assert panel.loras() == ()
    with qtbot.waitSignal(panel.changed, timeout=1000):
        panel.add_file(by_name["stripes_kohya"])
    panel.add_file(by_name["plain_peft"], weight=0.5)
    panel.add_file(by_name["plain_peft"])  # twice: ignored
    with qtbot.waitSignal(panel.changed, timeout=1000):
        panel.active[0].weight.setValue(-1.25)
    assert panel.loras() == (
        LoraRef(name="stripes_kohya", path=str(lora_dir / "stripes_kohya.safetensors"), weight=-1.25),
        LoraRef(name="plain_peft", path=str(lora_dir / "sub" / "plain_peft.safetensors"), weight=0.5),
    )
    with qtbot.waitSignal(panel.insertText, timeout=1000) as sig:
        panel.active[1].insert_button.click()
    assert sig.args == ["<lora:plain_peft:0.5>"]

    panel.active[1].weight.setValue(9.0)  # clamped to −2…2, snapped to 0.05 steps
    assert panel.loras()[1].weight == 2.0
    panel.active[1].weight.setValue(0.512)
    assert panel.loras()[1].weight == 0.5
    panel.active[0].remove_button.click()
    assert [r.name for r in panel.loras()] == ["plain_peft"]

    panel.set_loras((LoraRef(name="stripes_kohya", weight=2.0), LoraRef(name="gone", weight=1.0)))
    refs = panel.loras()
    assert refs[0] == LoraRef(name="stripes_kohya", path=str(lora_dir / "stripes_kohya.safetensors"), weight=2.0)
    assert refs[1].name == "gone" and panel.message.isVisible() and "gone" in panel.message.message


# -- ControlNet panel -------------------------------------------------------------------------------
def test_controlnet_units_reflect_controls_and_canny_preview_runs_off_thread(
    qtbot, controlnet_file, square_png, settings, _no_thread_left_running
):
    from studio_plugins.controlnet import ControlNetPlugin
    from studio_plugins.controlnet.panel import ControlNetPanel, PreviewThread

    panel = ControlNetPanel(ControlNetPlugin(), settings=settings)
    qtbot.addWidget(panel)
    panel.show()
    assert panel.units() == () and not panel.guess_mode()
    assert {"none", "canny", "hed"} <= set(panel.preprocessor_names)
    unit = panel.unit(0)
    unit.set_model(controlnet_file)
    assert not unit.message.isVisible()
    assert panel.units() == ()  # no image yet: not a usable unit
    assert panel.set_image_from_path(square_png)
    unit.preprocessor.setCurrentText("canny")
    unit.weight.setValue(0.8)
    unit.span.setValue((0.1, 0.9))
    panel.guess.setChecked(True)

    qtbot.waitUntil(unit.has_preview, timeout=15_000)
    panel.wait_idle()
    assert any(isinstance(t, PreviewThread) for t in _no_thread_left_running)  # the guard watches them
    edges = unit.preview_array
    assert edges.shape == (96, 96, 3) and edges.max() == 255
    assert edges[40:56, 40:56].max() == 0 and edges[0:16, 0:16].max() == 0  # edges only on the border
    assert edges[20:28, 20:76].max() == 255

    assert panel.units() == (
        ControlNetRef(
            model=str(controlnet_file),
            image=ImageRef(path=str(square_png.resolve()), sha256=sha256_file(square_png)),
            preprocessor="canny",
            weight=0.8,
            start=0.1,
            end=0.9,
        ),
    )
    assert panel.guess_mode()
    assert panel.recent_models()[0] == str(controlnet_file)  # remembered for the next unit / next start

    second = panel.add_unit()
    assert second.model.findText(str(controlnet_file)) >= 0
    second.enabled.setChecked(False)
    assert len(panel.units()) == 1
    unit.enabled.setChecked(False)
    assert panel.units() == ()


def test_controlnet_array_image_saved_by_content_hash(qtbot, settings, studio_home):
    from studio.core import paths
    from studio_plugins.controlnet.panel import ControlNetPanel

    plugin = FakeControlNet()
    panel = ControlNetPanel(plugin, settings=settings)
    qtbot.addWidget(panel)
    panel.show()
    studio_home.mkdir(parents=True, exist_ok=True)
    panel.unit(0).set_model(studio_home)  # any folder: the message says it is no ControlNet folder
    assert panel.unit(0).message.isVisible() and "config.json" in panel.unit(0).message.message
    (studio_home / "config.json").write_text("{}")
    panel.unit(0).set_model(studio_home)
    assert not panel.unit(0).message.isVisible()

    a = np.zeros((40, 60, 3), np.uint8)
    a[:, :30] = 200
    assert panel.set_image_from_array(a)
    qtbot.waitUntil(lambda: not panel.busy(), timeout=10_000)
    (ref,) = panel.units()
    p = Path(ref.image.path)
    assert p.parent == paths.data_dir() / "inputs" and p.name.startswith("control-") and ref.image.sha256[:16] in p.name
    assert sha256_file(p) == ref.image.sha256
    assert not list(p.parent.glob("*.tmp*"))  # written atomically, nothing left behind
    from PIL import Image

    assert np.array_equal(np.asarray(Image.open(p)), a)
    panel.set_image_from_array(a.copy())
    assert panel.units()[0].image == ref.image  # same pixels, same file
    qtbot.waitUntil(lambda: not panel.busy(), timeout=10_000)
    assert all(tid != threading.get_ident() for _, tid in plugin.calls)  # never on the GUI thread


def test_controlnet_bad_inputs_give_messages_in_the_panel(qtbot, settings, tmp_path, square_png):
    from studio_plugins.controlnet.panel import ControlNetPanel

    plugin = FakeControlNet()
    panel = ControlNetPanel(plugin, settings=settings)
    qtbot.addWidget(panel)
    panel.show()
    unit = panel.unit(0)
    bad = tmp_path / "notes.png"
    bad.write_text("this is not an image")
    assert not panel.set_image_from_path(bad)
    assert unit.message.isVisible() and "notes.png is not an image" in unit.message.message
    assert not panel.set_image_from_path(tmp_path / "missing.png")
    assert "does not exist" in unit.message.message
    unit.set_model(tmp_path / "nowhere.safetensors")
    assert "ControlNet model not found" in unit.message.message
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 32)
    unit.set_model(junk)
    assert "junk.safetensors" in unit.message.message
    assert panel.units() == ()

    # a preprocessor that raises PluginError: its message, in the unit, and the panel keeps working
    assert panel.set_image_from_path(square_png)
    assert not unit.message.isVisible()
    unit.preprocessor.setCurrentText("boom")
    qtbot.waitUntil(lambda: unit.message.isVisible(), timeout=10_000)
    assert "needs weights that are not here" in unit.message.message and not unit.has_preview()
    qtbot.waitUntil(lambda: not panel.busy(), timeout=10_000)
    unit.preprocessor.setCurrentText("invert")
    qtbot.waitUntil(unit.has_preview, timeout=10_000)
    assert not unit.message.isVisible() and unit.preview_array[48, 48].tolist() == [0, 0, 0]
    panel.wait_idle()


def test_controlnet_preview_is_debounced(qtbot, settings, square_png):
    from studio_plugins.controlnet.panel import ControlNetPanel

    plugin = FakeControlNet()
    panel = ControlNetPanel(plugin, settings=settings)
    qtbot.addWidget(panel)
    panel.show()
    unit = panel.unit(0)
    unit.preprocessor.setCurrentText("none")
    panel.set_image_from_path(square_png)
    for name in ("invert", "none", "invert", "none", "invert"):
        unit.preprocessor.setCurrentText(name)
    qtbot.waitUntil(unit.has_preview, timeout=10_000)
    qtbot.waitUntil(lambda: not panel.busy(), timeout=10_000)
    assert [n for n, _ in plugin.calls] == ["invert"]  # one run, for the last choice
    assert unit.preview_array[48, 48].tolist() == [0, 0, 0]


def test_plugin_widgets_do_not_import_torch():
    code = (
        "import sys; import studio.qt.plugins.manager, studio_plugins.lora.panel, "
        "studio_plugins.controlnet.panel;"
        "bad = [m for m in ('torch', 'diffusers') if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr


def test_set_units_round_trip(qtbot, settings, controlnet_file, square_png):
    from studio_plugins.controlnet.panel import ControlNetPanel

    panel = ControlNetPanel(FakeControlNet(), settings=settings)
    qtbot.addWidget(panel)
    refs = (
        ControlNetRef(
            model=str(controlnet_file),
            image=ImageRef(path=str(square_png.resolve()), sha256="ab" * 32),
            preprocessor="invert",
            weight=1.5,
            start=0.0,
            end=0.5,
        ),
        ControlNetRef(
            model=str(controlnet_file),
            image=ImageRef(path=str(square_png.resolve()), sha256="cd" * 32),
            preprocessor="none",
            weight=0.25,
            start=0.25,
            end=1.0,
        ),
    )
    panel.set_units(refs, guess_mode=True)
    assert panel.units() == refs and panel.guess_mode() and len(panel.unit_widgets) == 2
    qtbot.waitUntil(lambda: not panel.busy(), timeout=10_000)


def test_panel_deleted_while_its_preview_runs_does_not_crash(qtbot, settings, square_png):
    import time

    from PySide6.QtCore import QCoreApplication, QEvent

    from studio_plugins.controlnet.panel import ControlNetPanel, wait_all_previews

    class Slow(FakeControlNet):
        def preprocess(self, name, image):
            time.sleep(0.5)
            return image

    panel = ControlNetPanel(Slow(), settings=settings)
    panel.set_image_from_path(square_png)
    qtbot.waitUntil(lambda: panel.unit(0)._thread is not None, timeout=5000)
    panel.deleteLater()
    QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)
    wait_all_previews()
    qtbot.wait(50)  # the finished/done signals arrive for a panel that is gone: dropped, no crash


def test_lora_folders_default_to_plugins_ini(qtbot, lora_dir, studio_home):
    from studio.core.paths import config_dir
    from studio_plugins.lora import LoraPlugin
    from studio_plugins.lora.panel import LoraPanel

    panel = LoraPanel(LoraPlugin(folders=[]))
    qtbot.addWidget(panel)
    panel.add_folder(lora_dir)
    assert str(lora_dir) in (config_dir() / "plugins.ini").read_text()
    again = LoraPanel(LoraPlugin(folders=[]))
    qtbot.addWidget(again)
    assert len(again.files) == 2
