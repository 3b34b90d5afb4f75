"""The models library: settings (extra folders, defaults, preset), scanning everything together,
import (copy / link), rename, delete to the trash, recommended settings per family."""

import json
import os
from pathlib import Path

import pytest

from studio.core import library, recommend
from studio.core import settings as settings_mod
from studio.core.catalogue import CatalogueEntry


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def _checkpoint_file(path: Path) -> Path:
    """A header-only stand-in that the catalogue reads as a LoRA (no weights needed)."""
    import numpy as np
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(
        {
            "lora_unet_down_blocks_0_attentions_0_transformer_blocks_0_attn2_to_k.lora_down.weight": np.zeros(
                (4, 768), np.float16
            )
        },
        str(path),
    )
    return path


def test_settings_round_trip_and_a_damaged_file(home):
    s = settings_mod.load()
    assert s.model_folders == [] and s.memory_preset == "auto"
    assert s.add_folder(home / "a1111" / "models") and not s.add_folder(home / "a1111" / "models")
    s.set_default("vae", "sdxl", "/m/sdxl-vae")
    s.set_default("taesd", "sd1", "/m/taesd")
    s.memory_preset = "low memory"
    settings_mod.save(s)
    again = settings_mod.load()
    assert again.model_folders == [str((home / "a1111" / "models").resolve())]
    assert (
        again.vae_for("sdxl") == "/m/sdxl-vae" and again.taesd_for("sd1") == "/m/taesd" and again.vae_for("sd1") == ""
    )
    assert again.taesd_for("sdxl-refiner") == ""
    assert again.memory_preset == "low memory"
    settings_mod.settings_path().write_text("{ not json")
    assert settings_mod.load().model_folders == []  # defaults, and the damaged file is kept aside
    assert settings_mod.settings_path().with_name("studio.json.bad").is_file()


def test_scan_all_lists_library_and_extra_folders_once(home, tmp_path):
    from studio.core.paths import models_dir

    _checkpoint_file(models_dir() / "style.safetensors")
    extra = tmp_path / "webui" / "models"
    _checkpoint_file(extra / "Lora" / "detail.safetensors")
    (extra / "Stable-diffusion").mkdir(parents=True)
    (extra / "Stable-diffusion" / "old.ckpt").write_bytes(b"pickle")
    s = settings_mod.load()
    s.add_folder(extra)
    s.add_folder(models_dir())  # the library again: listed once
    s.add_folder(tmp_path / "gone")
    entries, problems = library.scan_all(s)
    by_name = {Path(e.path).name: e for e in entries}
    assert {"style.safetensors", "detail.safetensors", "old.ckpt"} <= set(by_name)
    assert len([e for e in entries if e.path.endswith("style.safetensors")]) == 1
    assert by_name["style.safetensors"].source == "Library"
    assert (
        by_name["detail.safetensors"].source.startswith("Extra folder") and by_name["detail.safetensors"].kind == "LoRA"
    )
    assert not by_name["old.ckpt"].usable and "pickle" in by_name["old.ckpt"].reason
    assert any("gone" in p for p in problems)


def test_cli_models_list_honours_extra_folders(home, tmp_path, capsys):
    from studio.cli import main

    extra = tmp_path / "comfy" / "models"
    _checkpoint_file(extra / "loras" / "ink.safetensors")
    assert main(["models", "folders", "--add", str(extra)]) == 0
    assert main(["models", "list", "--json"]) == 0
    out = capsys.readouterr().out
    listed = json.loads(out[out.index("[") :])
    assert any(e["path"].endswith("ink.safetensors") and e["source"].startswith("Extra folder") for e in listed)
    assert main(["models", "folders", "--remove", str(extra)]) == 0
    assert settings_mod.load().model_folders == []


def test_display_name_of_a_hugging_face_cache_snapshot():
    p = "/home/u/.cache/huggingface/hub/models--stabilityai--sd-turbo/snapshots/abc123"
    assert library.display_name(p) == "stabilityai/sd-turbo"
    assert library.display_name("/x/dreamshaper_8.safetensors") == "dreamshaper_8.safetensors"


def test_the_demo_model_has_one_name(tmp_path, monkeypatch):
    demo = tmp_path / "resources" / "demo-model"
    demo.mkdir(parents=True)
    monkeypatch.setenv("STUDIO_DEMO_MODEL", str(demo))
    (tmp_path / "linked").symlink_to(demo)
    names = {
        library.display_name(demo),
        library.model_label("demo"),
        library.model_label(str(demo)),
        library.model_label(str(tmp_path / "linked")),
    }
    assert names == {library.DEMO_LABEL}
    assert library.display_name(tmp_path / "other" / "demo-model") == "demo-model"  # another folder of that name


def test_import_copy_and_link(home, tmp_path):
    src = _checkpoint_file(tmp_path / "outside" / "ink.safetensors")
    copied = library.import_model(src, "copy")
    assert copied.parent == library.models_dir() and copied.read_bytes() == src.read_bytes() and not copied.is_symlink()
    with pytest.raises(library.LibraryError, match="already has"):
        library.import_model(src, "copy")
    folder = tmp_path / "outside" / "my-model"
    (folder / "unet").mkdir(parents=True)
    (folder / "model_index.json").write_text("{}")
    linked = library.import_model(folder, "link")
    assert linked.is_symlink() and (linked / "model_index.json").is_file()
    assert not any(p.name.startswith(".import-") for p in library.models_dir().iterdir())  # no staging left over
    with pytest.raises(library.LibraryError, match="not a model file"):
        library.import_model(tmp_path / "outside" / "my-model" / "model_index.json")


def test_rename_keeps_the_suffix_and_the_defaults(home, tmp_path):
    f = _checkpoint_file(tmp_path / "m" / "vae-ft-mse.safetensors")
    settings_mod.update(default_vae={"sd1": str(f)})
    new = library.rename_model(f, "my favourite vae")
    assert new.name == "my favourite vae.safetensors" and new.is_file() and not f.exists()
    assert settings_mod.load().vae_for("sd1") == str(new)
    other = _checkpoint_file(tmp_path / "m" / "other.safetensors")
    with pytest.raises(library.LibraryError, match="already exists"):
        library.rename_model(other, "my favourite vae")
    with pytest.raises(library.LibraryError, match="not a usable"):
        library.rename_model(other, "../escape")
    with pytest.raises(library.LibraryError, match="demo model"):
        library.rename_model(library.demo_model_dir(), "mine")


def test_delete_goes_to_the_trash(home, tmp_path, monkeypatch):
    import send2trash.plat_other as po

    fake_home = tmp_path / "userhome"
    (fake_home / ".local" / "share").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(fake_home))
    xdg = os.fsencode(fake_home / ".local" / "share")
    monkeypatch.setattr(po, "XDG_DATA_HOME", xdg)
    monkeypatch.setattr(po, "HOMETRASH_B", os.path.join(xdg, b"Trash"))
    monkeypatch.setattr(po, "HOMETRASH", os.fsdecode(os.path.join(xdg, b"Trash")))
    f = _checkpoint_file(tmp_path / "m" / "unwanted.safetensors")
    settings_mod.update(default_taesd={"sd1": str(f)})
    library.trash_model(f)
    assert not f.exists()
    assert (fake_home / ".local" / "share" / "Trash" / "files" / "unwanted.safetensors").is_file()  # recoverable
    assert settings_mod.load().taesd_for("sd1") == ""
    link = library.models_dir() / "linked.safetensors"
    target = _checkpoint_file(tmp_path / "keep" / "linked.safetensors")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    library.trash_model(link)  # only the link goes; the user's file stays
    assert not link.is_symlink() and target.is_file()
    with pytest.raises(library.LibraryError, match="demo model"):
        library.trash_model(library.demo_model_dir())


@pytest.mark.parametrize(
    "arch, variant, name, family, steps, cfg, size",
    [
        ("sd2", "Turbo", "sd_turbo.safetensors", "sd-turbo", 4, 0.0, 512),
        ("sdxl", "Turbo", "sdxl_turbo.safetensors", "sdxl-turbo", 4, 0.0, 512),
        ("sd1", "LCM", "lcm-dreamshaper.safetensors", "lcm", 6, 1.5, 512),
        ("sd1", "", "v1-5.safetensors", "sd1", 25, 7.0, 512),
        ("sd2", "v-prediction", "v2-1_768.safetensors", "sd2-v", 25, 7.0, 768),
        ("sdxl", "", "sdxl_base.safetensors", "sdxl", 30, 6.0, 1024),
    ],
)
def test_recommended_settings_per_family(arch, variant, name, family, steps, cfg, size):
    e = CatalogueEntry(f"/m/{name}", "checkpoint", arch=arch, variant=variant)
    r = recommend.for_entry(e)
    assert recommend.family_of(e) == family and (r.steps, r.cfg, r.width, r.height) == (steps, cfg, size, size)
    assert r.steps_range[0] <= r.steps <= r.steps_range[1] and r.cfg_range[0] <= r.cfg <= r.cfg_range[1]
    assert r.cfg_end == 1.0 and "first" not in r.summary()  # a user's model is guided on every step
    if family == "lcm":
        assert r.scheduler == "LCM"
    assert recommend.for_entry(CatalogueEntry("/m/x.safetensors", "LoRA", arch=arch)) is None


def test_the_demo_model_recommends_its_native_size(monkeypatch, tiny_sd15):
    monkeypatch.setenv("STUDIO_DEMO_MODEL", str(tiny_sd15))
    r = recommend.for_model("demo")
    assert r.family == "demo" and (r.width, r.height) == (128, 128)
    assert 0 < r.cfg_end < 1 and f"for the first {r.cfg_end:.0%} of the steps" in r.summary()


def test_the_demo_models_recommendation_uses_the_one_demo_name():
    """The status bar's "Recommended for …" line names the demo model as the model box does."""
    from studio.core import recommend

    assert recommend.for_model("demo").label == library.DEMO_LABEL


def test_the_demo_model_by_its_folder_gets_its_recommendation(monkeypatch, tmp_path):
    """`studio generate --model resources/demo-model` (a relative path) is the demo model too."""
    demo = library.demo_model_dir().resolve()
    monkeypatch.chdir(demo.parent)
    assert recommend.for_model(demo.name).family == "demo"
    assert recommend.for_model(str(demo)).family == "demo"


def _embedding_file(path: Path, **tensors) -> Path:
    import numpy as np
    from safetensors.numpy import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: np.zeros(shape, np.float16) for k, shape in tensors.items()}, str(path))
    return path


def test_embeddings_are_found_where_a1111_comfyui_and_the_library_keep_them(home, tmp_path, capsys):
    """A1111 keeps embeddings/ beside models/, ComfyUI in models/embeddings; both are listed with the
    library's own, as embeddings with their vector count, a pickled one unusable."""
    from studio.cli import main
    from studio.core import embeddings
    from studio.core.paths import models_dir

    _embedding_file(models_dir() / "embeddings" / "mine.safetensors", emb_params=(4, 768))
    webui = tmp_path / "webui"
    _embedding_file(webui / "embeddings" / "easyneg.safetensors", clip_l=(8, 768), clip_g=(8, 1280))
    (webui / "embeddings" / "old.pt").write_bytes(b"pickle")
    (webui / "models" / "Stable-diffusion").mkdir(parents=True)
    comfy = tmp_path / "ComfyUI" / "models"
    _embedding_file(comfy / "embeddings" / "style.safetensors", **{"string_to_param.*": (2, 1024)})
    s = settings_mod.load()
    s.add_folder(webui / "models")
    s.add_folder(comfy)
    settings_mod.save(s)
    entries, _ = library.scan_all(s)
    by_name = {Path(e.path).name: e for e in entries}
    got = {n: (e.kind, e.arch, e.variant, e.usable) for n, e in by_name.items() if e.kind == "embedding"}
    assert got == {
        "mine.safetensors": ("embedding", "sd1", "4 vectors", True),
        "easyneg.safetensors": ("embedding", "sdxl", "8 vectors", True),
        "style.safetensors": ("embedding", "sd2", "2 vectors", True),
        "old.pt": ("embedding", "", "", False),
    }
    assert "pickle" in by_name["old.pt"].reason
    found, skipped = embeddings.find()
    assert set(found) == {"mine", "easyneg", "style"} and any("old.pt" in line for line in skipped)
    assert main(["models", "scan", str(webui / "embeddings")]) == 0
    out = capsys.readouterr().out
    assert "embedding sdxl (8 vectors)" in out and "✗ embedding" in out
