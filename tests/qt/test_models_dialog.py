"""Models ▸ Models…: the list of everything scanned with filters and details, rename, trash,
import, extra folders, default VAE / tiny autoencoder per architecture (honoured by requests and the
engine), downloads from a local fake hub with progress and Stop, recommended settings on "Use"."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PySide6.QtWidgets import QInputDialog, QMessageBox

from studio.core import recommend
from studio.core import settings as core_settings
from studio.qt.models.table import ENTRY_ROLE

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))
from fake_hub import FakeHub

TIMEOUT = 60_000


def header_file(path: Path, tensors: dict[str, tuple]) -> Path:
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: np.zeros(shape, np.float16) for k, shape in tensors.items()}, str(path))
    return path


def turbo_folder(path: Path) -> Path:
    """A diffusers folder the catalogue reads as SD 2.x Turbo from its configs alone (weights never read)."""
    (path / "unet").mkdir(parents=True)
    (path / "model_index.json").write_text(
        json.dumps({"_class_name": "StableDiffusionPipeline", "text_encoder": ["transformers", "CLIPTextModel"]})
    )
    (path / "unet" / "config.json").write_text(json.dumps({"cross_attention_dim": 1024, "in_channels": 4}))
    header_file(path / "unet" / "diffusion_pytorch_model.safetensors", {"w": (1,)})
    return path


@pytest.fixture
def extra(tmp_path, tiny_sd15):
    """An A1111-like models folder: a Turbo model, a LoRA, a VAE folder, a broken file, a pickle."""
    root = tmp_path / "webui" / "models"
    turbo_folder(root / "Stable-diffusion" / "sd-turbo-tiny")
    header_file(
        root / "Lora" / "ink.safetensors",
        {"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": (4, 768)},
    )
    (root / "VAE").mkdir()
    os.symlink(tiny_sd15 / "vae", root / "VAE" / "tiny-vae")
    (root / "Stable-diffusion" / "broken.safetensors").write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{bad")
    (root / "Stable-diffusion" / "old.ckpt").write_bytes(b"pickle")
    return root


def open_dialog(qtbot, window, extra_folder=None):
    if extra_folder is not None:
        core_settings.update(model_folders=[str(extra_folder)])
        window.model_setup.reload_settings()
    d = window.model_setup.open_models()
    qtbot.waitUntil(lambda: not d.busy and d.model.rowCount() > 0, timeout=TIMEOUT)
    return d


def visible_names(d) -> set[str]:
    return {Path(d.proxy.index(r, 0).data(ENTRY_ROLE).path).name for r in range(d.proxy.rowCount())}


def test_lists_everything_with_filters_and_reasons(qtbot, make_window, fake_engine, extra):
    w = make_window(engine_factory=fake_engine)
    d = open_dialog(qtbot, w, extra)
    names = visible_names(d)
    assert {"sd-turbo-tiny", "ink.safetensors", "tiny-vae", "broken.safetensors", "old.ckpt"} <= names
    assert "demo-model" in names or any("demo" in n for n in names)
    d.kind.setCurrentIndex(d.kind.findData("LoRA"))
    assert visible_names(d) == {"ink.safetensors"}
    d.kind.setCurrentIndex(0)
    d.arch.setCurrentIndex(d.arch.findData("sd2"))
    assert visible_names(d) == {"sd-turbo-tiny"}
    d.arch.setCurrentIndex(0)
    d.search.setText("ink")
    assert visible_names(d) == {"ink.safetensors"}
    d.search.clear()
    d.usable_only.setChecked(True)
    assert "broken.safetensors" not in visible_names(d) and "old.ckpt" not in visible_names(d)
    d.usable_only.setChecked(False)
    assert d.select_path(str(extra / "Stable-diffusion" / "broken.safetensors"))
    assert d.fields["Status"].text().startswith("✗") and "safetensors" in d.fields["Status"].text()
    assert not d.use_button.isEnabled()
    assert d.select_path(str(extra / "Stable-diffusion" / "old.ckpt"))
    assert "pickle" in d.fields["Status"].text()
    assert d.select_path(str(extra / "Stable-diffusion" / "sd-turbo-tiny"))
    assert d.fields["Kind"].text() == "checkpoint" and "SD 2.x" in d.fields["Architecture"].text()
    assert "1–4 steps" in d.fields["Recommended"].text() and d.use_button.isEnabled()
    assert "2 cannot be used" in d.summary.text()


def test_use_applies_the_recommended_settings_and_the_user_keeps_control(qtbot, make_window, fake_engine, extra):
    w = make_window(engine_factory=fake_engine)
    w.prompt.steps.setValue(30)
    w.prompt.guidance.setValue(7.0)
    d = open_dialog(qtbot, w, extra)
    d.select_path(str(extra / "Stable-diffusion" / "sd-turbo-tiny"))
    d.use_button.click()
    p = w.prompt
    assert p.model_name() == str(extra / "Stable-diffusion" / "sd-turbo-tiny")
    assert p.steps.value() == 4 and p.guidance.value() == 0.0 and (p.width_.value(), p.height_.value()) == (512, 512)
    assert "Recommended for SD-Turbo" in w.statusBar().currentMessage()
    assert p.guidance_end.value() == 1.0
    p.steps.setValue(2)  # the user changes them; choosing the same model again keeps the change
    w._model_chosen(p.model_name())
    assert p.steps.value() == 2 and p.fields()["steps"] == 2
    w._model_chosen("demo")  # the demo model guides its early steps only
    demo = recommend.for_model("demo")
    assert p.fields()["guidance_end"] == demo.cfg_end < 1 and p.guidance.value() == demo.cfg
    assert f"CFG {demo.cfg:g} for the first {demo.cfg_end:.0%} of the steps" in w.statusBar().currentMessage()


def test_rename_and_move_to_trash(qtbot, make_window, fake_engine, extra, tmp_path, monkeypatch):
    import send2trash.plat_other as po

    home = tmp_path / "userhome"
    (home / ".local" / "share").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    xdg = os.fsencode(home / ".local" / "share")
    monkeypatch.setattr(po, "XDG_DATA_HOME", xdg)
    monkeypatch.setattr(po, "HOMETRASH_B", os.path.join(xdg, b"Trash"))
    w = make_window(engine_factory=fake_engine)
    d = open_dialog(qtbot, w, extra)
    d.select_path(str(extra / "Lora" / "ink.safetensors"))
    monkeypatch.setattr(QInputDialog, "getText", lambda *a, **k: ("ink v2", True))
    d.rename_selected()
    new = extra / "Lora" / "ink v2.safetensors"
    qtbot.waitUntil(lambda: not d.busy and d.selected() is not None and d.selected().path == str(new), timeout=TIMEOUT)
    assert new.is_file() and not (extra / "Lora" / "ink.safetensors").exists()
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Ok)
    d.trash_selected()
    qtbot.waitUntil(lambda: not d.busy, timeout=TIMEOUT)
    assert not new.exists() and (home / ".local" / "share" / "Trash" / "files" / "ink v2.safetensors").is_file()
    assert "ink v2.safetensors" not in visible_names(d)


def test_import_a_file_into_the_library_and_extra_folders(qtbot, make_window, fake_engine, extra, tmp_path):
    from studio.core.paths import models_dir

    w = make_window(engine_factory=fake_engine)
    d = open_dialog(qtbot, w)
    src = header_file(
        tmp_path / "downloads" / "paper.safetensors",
        {"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": (4, 768)},
    )
    d.import_path(str(src), "copy")
    target = models_dir() / "paper.safetensors"
    qtbot.waitUntil(
        lambda: not d.busy and d.selected() is not None and d.selected().path == str(target), timeout=TIMEOUT
    )
    assert target.is_file() and not target.is_symlink() and d.fields["Found in"].text() == "Library"
    d.tabs.setCurrentIndex(1)
    assert d.add_folder(str(extra))
    qtbot.waitUntil(lambda: not d.busy and "ink.safetensors" in visible_names(d), timeout=TIMEOUT)
    assert core_settings.load().model_folders == [str(extra.resolve())]
    d.folders.setCurrentRow(d.folders.count() - 1)
    assert d.remove_folder_button.isEnabled()
    d.remove_selected_folder()
    qtbot.waitUntil(lambda: not d.busy and "ink.safetensors" not in visible_names(d), timeout=TIMEOUT)
    assert core_settings.load().model_folders == []
    d.folders.setCurrentRow(0)
    assert not d.remove_folder_button.isEnabled()  # the demo model and the library are always scanned


def test_default_vae_goes_into_requests_and_taesd_into_the_engine(qtbot, make_window, extra, tiny_sd15, tmp_path):
    from diffusers import AutoencoderTiny

    taesd = tmp_path / "webui" / "models" / "VAE-approx" / "taesd-tiny"
    AutoencoderTiny(
        encoder_block_out_channels=(8, 8, 8, 8),
        decoder_block_out_channels=(8, 8, 8, 8),
        num_encoder_blocks=(1, 1, 1, 1),
        num_decoder_blocks=(1, 1, 1, 1),
    ).save_pretrained(taesd)
    w = make_window()  # the real CPU engine
    w.prompt.set_model(str(tiny_sd15))
    assert "vae" not in w.prompt.build_requests()[0].model_dump(exclude_defaults=True)
    d = open_dialog(qtbot, w, extra)
    vae = str(extra / "VAE" / "tiny-vae")
    d.select_path(vae)
    assert d.default_row.isVisible() and d.default_arch.currentData() == "sd1"
    d.default_button.click()
    assert core_settings.load().vae_for("sd1") == vae and d.default_button.text() == "Is the default"
    assert w.prompt.build_requests()[0].vae == vae  # the recipe names the VAE it was made with
    d.select_path(str(taesd))
    d.default_arch.setCurrentIndex(d.default_arch.findData("sd1"))
    d.default_button.click()
    qtbot.waitUntil(
        lambda: w.bridge.worker.engine is not None and w.bridge.worker.engine.taesd_dirs.get("sd1") == taesd,
        timeout=TIMEOUT,
    )
    d.tabs.setCurrentIndex(1)
    assert d.defaults.count() == 2
    d.defaults.setCurrentRow(0)
    d.clear_default_button.click()
    assert len(core_settings.load().default_vae) + len(core_settings.load().default_taesd) == 1


@pytest.fixture
def hub(monkeypatch):
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(c, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    files = {
        # A pipeline's index names its components (the download fetches those folders only).
        "model_index.json": b'{"_class_name": "StableDiffusionPipeline", '
        b'"unet": ["diffusers", "UNet2DConditionModel"]}',
        "unet/config.json": b"{}",
        "unet/diffusion_pytorch_model.safetensors": os.urandom(2 * 2**20),
    }
    with FakeHub({"someone/tiny-turbo": files}) as h:
        monkeypatch.setenv("HF_ENDPOINT", h.url)
        yield h


def test_download_with_progress_stop_and_resume(qtbot, make_window, fake_engine, hub):
    from studio.core.paths import models_dir

    w = make_window(engine_factory=fake_engine)
    d = w.model_setup.open_models(tab=2)
    qtbot.waitUntil(lambda: not d.busy, timeout=TIMEOUT)
    panel = d.download
    assert panel.starters.count() >= 5
    panel.starters.setCurrentRow(1)
    assert "/" in panel.repo.text()
    hub.slow.add("unet/diffusion_pytorch_model.safetensors")
    hub.chunk_delay_s = 0.05  # 32 chunks: about 1.6 s for the big file
    panel.repo.setText("someone/tiny-turbo")
    values = []
    panel.bar.valueChanged.connect(values.append)
    panel.start_button.click()
    qtbot.waitUntil(lambda: any(0 < v < 1000 for v in values), timeout=TIMEOUT)
    panel.stop_button.click()
    qtbot.waitUntil(lambda: not panel.busy, timeout=TIMEOUT)
    assert panel.bar.format() == "Stopped" and "resumes" in panel.status.text()
    assert not (models_dir() / "someone--tiny-turbo").exists()  # nothing half-written in the library
    hub.slow.clear()
    panel.start_button.click()
    qtbot.waitUntil(
        lambda: not d.busy and d.selected() is not None and d.selected().path.endswith("someone--tiny-turbo"),
        timeout=TIMEOUT,
    )
    assert panel.bar.format() == "Done" and d.tabs.currentIndex() == 0
    assert (
        models_dir() / "someone--tiny-turbo" / "unet" / "diffusion_pytorch_model.safetensors"
    ).stat().st_size == 2 * 2**20


BIG = "unet/diffusion_pytorch_model.safetensors"


def test_a_download_goes_on_with_the_dialog_closed_and_ends_in_the_model_list(qtbot, make_window, fake_engine, hub):
    w = make_window(engine_factory=fake_engine)
    downloads, status = w.model_setup.downloads, w.model_setup.download_status
    chosen = w.prompt.model_name()
    d = w.model_setup.open_models(tab=2)
    qtbot.waitUntil(lambda: not d.busy, timeout=TIMEOUT)
    assert status.isHidden()
    hub.slow.add(BIG)
    hub.chunk_delay_s = 0.2  # 32 chunks: about 6 s, until the test lets it go (hub.slow.clear())
    d.download.repo.setText("someone/tiny-turbo")
    d.download.start_button.click()
    qtbot.waitUntil(lambda: d.download.bar.maximum() == 1000 and 0 < d.download.bar.value() < 1000, timeout=TIMEOUT)
    assert status.isHidden()  # the dialog shows it

    d.close()  # the download goes on, in the main window's status bar
    assert not d.isVisible() and downloads.busy and downloads.task.isRunning()
    assert status.isVisible() and "someone/tiny-turbo" in status.label.text()
    values = []
    status.bar.valueChanged.connect(values.append)
    qtbot.waitUntil(lambda: len(set(values)) >= 2, timeout=TIMEOUT)  # and moves there
    assert status.bar.maximum() == 1000 and " of " in status.bar.format()

    d.tabs.setCurrentIndex(0)
    status.show_button.click()  # reopened: the Download tab shows the same download, live
    assert w.model_setup.models_dialog is d and d.isVisible() and d.tabs.currentIndex() == 2 and status.isHidden()
    panel = d.download
    assert (
        panel.repo.text() == "someone/tiny-turbo"
        and panel.stop_button.isEnabled()
        and not panel.start_button.isEnabled()
    )
    assert (
        panel.bar.maximum() == 1000 and panel.bar.value() >= max(values) and "someone/tiny-turbo" in panel.status.text()
    )
    d.close()

    hub.slow.clear()
    qtbot.waitUntil(lambda: not downloads.busy, timeout=TIMEOUT)
    path = downloads.path
    assert downloads.phase == "done" and path.endswith("someone--tiny-turbo") and status.isHidden()
    assert "Downloaded someone/tiny-turbo" in w.statusBar().currentMessage()
    assert w.prompt.model.findData(path) >= 0 and w.prompt.model_name() == chosen  # listed, not chosen for you
    d = w.model_setup.open_models()  # and in the Models list, selected
    qtbot.waitUntil(lambda: not d.busy and d.selected() is not None and d.selected().path == path, timeout=TIMEOUT)
    assert d.download.bar.format() == "Done"


def test_quitting_during_a_download_asks_and_stops_it_cleanly(qtbot, make_window, fake_engine, hub, monkeypatch):
    from studio.core.paths import models_dir

    w = make_window(engine_factory=fake_engine)
    downloads = w.model_setup.downloads
    d = w.model_setup.open_models(tab=2)
    qtbot.waitUntil(lambda: not d.busy, timeout=TIMEOUT)
    hub.slow.add(BIG)
    hub.chunk_delay_s = 0.2
    d.download.repo.setText("someone/tiny-turbo")
    d.download.start_button.click()
    qtbot.waitUntil(lambda: downloads.phase == "downloading", timeout=TIMEOUT)
    d.close()
    task = downloads.task
    asked = []
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: asked.append(a[2]) or QMessageBox.StandardButton.No)
    assert not w.close()  # "No": the window stays, and so does the download
    assert w.isVisible() and downloads.busy and task.isRunning() and "someone/tiny-turbo" in asked[0]
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: QMessageBox.StandardButton.Yes)
    assert w.close()  # "Yes": stopped, its thread waited for
    assert not task.isRunning()
    assert not (models_dir() / "someone--tiny-turbo").exists()  # nothing half-written in the library


def test_a_download_that_fails_with_the_dialog_closed_is_said_in_the_window(qtbot, make_window, fake_engine, hub):
    w = make_window(engine_factory=fake_engine)
    downloads = w.model_setup.downloads
    assert w.model_setup.models_dialog is None
    downloads.start("someone/not-there", fp16=False)
    qtbot.waitUntil(lambda: not downloads.busy, timeout=TIMEOUT)
    assert downloads.phase == "failed" and w.messages.isVisible()
    assert "Downloading someone/not-there failed" in w.messages.message and "resume" in w.messages.hint
    assert w.model_setup.download_status.isHidden()


def test_download_offline_fails_at_once_with_a_message(qtbot, make_window, fake_engine, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    w = make_window(engine_factory=fake_engine)
    d = w.model_setup.open_models(tab=2)
    d.download.repo.setText("stabilityai/sd-turbo")
    d.download.start()
    qtbot.waitUntil(lambda: not d.busy, timeout=20_000)
    assert d.download.bar.format() == "Failed" and "Hugging Face Hub" in d.download.status.text()
    d.download.repo.setText("nonsense")
    d.download.start()
    assert "repository id" in d.download.status.text() and not d.download.busy


def test_reopening_the_dialog_rescans(qtbot, make_window, fake_engine, extra):
    w = make_window(engine_factory=fake_engine)
    d = open_dialog(qtbot, w, extra)
    d.close()
    header_file(
        extra / "Lora" / "new-one.safetensors",
        {"lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": (4, 768)},
    )
    d2 = w.model_setup.open_models()
    assert d2 is d and d2.isVisible()
    qtbot.waitUntil(lambda: not d2.busy and "new-one.safetensors" in visible_names(d2), timeout=TIMEOUT)


def test_the_demo_model_has_one_name_in_the_models_dialog_the_model_box_and_the_status_bar(
    qtbot, make_window, fake_engine, tiny_sd15, monkeypatch
):
    from studio.core import library

    monkeypatch.setenv("STUDIO_DEMO_MODEL", str(tiny_sd15))  # the tiny model stands in for the bundled one
    w = make_window(engine_factory=fake_engine)
    d = open_dialog(qtbot, w)
    rows = [d.proxy.index(r, 0) for r in range(d.proxy.rowCount())]
    demo_row = next(i for i in rows if Path(i.data(ENTRY_ROLE).path) == tiny_sd15)
    assert demo_row.data() == library.DEMO_LABEL  # the Models list …
    assert d.select_path(str(tiny_sd15))
    assert d.title.text() == f"<b>{library.DEMO_LABEL}</b>"  # … its details …
    assert w.prompt.model.currentText() == library.DEMO_LABEL  # … the model box …
    d.use_button.click()  # "Use this model" chooses it by its folder: the box keeps the name
    assert w.prompt.model.currentText() == library.DEMO_LABEL and w.prompt.model_name() == "demo"
    w.controller._model_loaded("demo", {"name": "demo", "arch": "sd1"})
    assert w.progress.bar.format() == f"Model ready: {library.DEMO_LABEL}"  # … and the status bar
    d.close()


def test_embeddings_are_listed_by_kind(qtbot, make_window, fake_engine, extra):
    """Textual-inversion embeddings beside an A1111 models/ folder show as embeddings, a pickled one refused."""
    emb = extra.parent / "embeddings"
    header_file(emb / "easyneg.safetensors", {"emb_params": (6, 768)})
    (emb / "old.pt").write_bytes(b"pickle")
    w = make_window(engine_factory=fake_engine)
    d = open_dialog(qtbot, w, extra)
    d.kind.setCurrentIndex(d.kind.findData("embedding"))
    assert visible_names(d) == {"easyneg.safetensors", "old.pt"}
    assert d.select_path(str(emb / "easyneg.safetensors"))
    assert d.fields["Kind"].text() == "embedding" and any("6 vectors" in f.text() for f in d.fields.values())
    assert d.select_path(str(emb / "old.pt")) and "pickle" in d.fields["Status"].text()
    assert not d.use_button.isEnabled()


def test_an_sd2_files_prediction_type_can_be_overridden_and_requests_carry_it(
    qtbot, make_window, fake_engine, extra, tiny_models
):
    import shutil

    sd2 = extra / "Stable-diffusion" / "v2-1_768-ema-pruned.safetensors"
    shutil.copy(tiny_models("sd2", "single-file"), sd2)
    w = make_window(engine_factory=fake_engine)
    d = open_dialog(qtbot, w, extra)
    assert d.select_path(str(extra / "Stable-diffusion" / "sd-turbo-tiny"))  # a folder: nothing to override
    assert d.prediction_row.isHidden()
    assert d.select_path(str(sd2))
    assert not d.prediction_row.isHidden() and d.prediction.currentData() == ""
    d.prediction.setCurrentIndex(d.prediction.findData("epsilon"))
    d.prediction.activated.emit(d.prediction.currentIndex())
    assert core_settings.load().prediction_for(sd2) == "epsilon"
    w.prompt.set_model(str(sd2))
    assert w.prompt.build_requests()[0].prediction_type == "epsilon"
    d.prediction.setCurrentIndex(d.prediction.findData(""))
    d.prediction.activated.emit(d.prediction.currentIndex())
    assert w.prompt.build_requests()[0].prediction_type == ""
