"""The models library and the folders scanned with it, and what a user does to the files in them.

Scanned together: the bundled demo model, the models library (`paths.models_dir()`, where imports
and downloads go) and every extra folder saved in the settings (an A1111 or ComfyUI `models/`,
the Hugging Face cache). Scanning reads headers and configs only (`studio.core.catalogue`).

Import copies or links a file or folder into the library; rename keeps the suffix; delete sends
to the operating system's trash (Send2Trash), never erases. The bundled demo model is read-only.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.core import embeddings, families
from studio.core import settings as settings_mod
from studio.core.catalogue import MODEL_SUFFIXES, CatalogueEntry, identify_file, identify_folder, scan
from studio.core.errors import StudioError
from studio.core.paths import demo_model_dir, models_dir, resources_dir

log = logging.getLogger(__name__)
HF_CACHE_PART = re.compile(r"^models--(.+)$")


class LibraryError(StudioError):
    code = "library"


@dataclass(frozen=True)
class Source:
    path: Path
    label: str  # "Demo model", "Library", "Extra folder"
    removable: bool  # an extra folder the user added (the others are always scanned)


def sources(settings: settings_mod.Settings | None = None) -> list[Source]:
    s = settings if settings is not None else settings_mod.load()
    out = [Source(demo_model_dir(), "Demo model", False), Source(models_dir(), "Library", False)]
    out += [Source(Path(f), "Extra folder", True) for f in s.model_folders]
    return out


def scan_all(settings: settings_mod.Settings | None = None) -> tuple[list[CatalogueEntry], list[str]]:
    """(entries of every source, problems such as a folder that is gone). Each entry is listed once."""
    entries: list[CatalogueEntry] = []
    problems: list[str] = []
    seen: set[str] = set()
    for src in sources(settings):
        if not src.path.exists():
            if src.removable:
                problems.append(f"Extra folder not found: {src.path}")
            continue
        try:
            found = scan(src.path)
        except (StudioError, OSError) as exc:
            problems.append(f"{src.path}: {exc}")
            continue
        for e in found:
            key = os.path.realpath(e.path)
            if key in seen:
                continue
            seen.add(key)
            e.source = (
                "Demo model"
                if src.label == "Demo model"
                else f"{src.label}: {src.path}"
                if src.removable
                else src.label
            )
            entries.append(e)
    s = settings if settings is not None else settings_mod.load()
    for folder in embeddings.folders(s.model_folders):  # A1111's embeddings/ lies beside its models/
        if not folder.is_dir():
            continue
        try:
            found = scan(folder)
        except (StudioError, OSError) as exc:
            problems.append(f"{folder}: {exc}")
            continue
        for e in found:
            key = os.path.realpath(e.path)
            if key in seen:
                continue
            seen.add(key)
            e.source = f"Embeddings: {folder}"
            entries.append(e)
    return entries, problems


# The bundled model's one name wherever the window shows a model (model box, Models dialog, status bar).
DEMO_LABEL = "Demo model (bundled)"


def _is_demo_dir(p: Path, any_name: bool = False) -> bool:
    """`p` is the bundled model's folder. Unless any_name, a path of another name is not looked up
    (cheap: the Models table asks for every row it paints; its demo row is the folder itself)."""
    demo = demo_model_dir()
    if p == demo:
        return True
    if p.name != demo.name and not any_name:
        return False
    try:
        return p.expanduser().resolve() == demo.resolve()
    except OSError:  # an unreadable path is simply not the demo model
        return False


def display_name(path: str | Path) -> str:
    """What to call a model: DEMO_LABEL for the bundled model's folder, else the file or folder name,
    or "org/name" inside a Hugging Face cache."""
    p = Path(path)
    if _is_demo_dir(p):
        return DEMO_LABEL
    for part in reversed(p.parts):
        m = HF_CACHE_PART.match(part)
        if m:
            return m[1].replace("--", "/")
    return p.name


def model_label(model: str) -> str:
    """A short human name for a model value ("demo", a folder or a file): DEMO_LABEL for the bundled
    model, else the folder's name or the file's name without its suffix ("org/name" in a Hugging Face
    cache)."""
    p = Path(model).expanduser()
    if model == "demo" or _is_demo_dir(p, any_name=True):  # a link to it, of any name, too
        return DEMO_LABEL
    name = display_name(p)
    if name == p.name and p.suffix.lower() in MODEL_SUFFIXES:
        return p.stem
    return name or model


def is_protected(path: str | Path) -> bool:
    """The bundled demo model and anything else shipped in resources/ cannot be renamed or deleted."""
    p = Path(path).resolve()
    return any(p == root or root in p.parents for root in (demo_model_dir().resolve(), resources_dir().resolve()))


def _check_name(name: str) -> str:
    name = name.strip()
    if not name or name in (".", "..") or any(c in name for c in "/\\\0") or name.startswith("."):
        raise LibraryError(f"“{name}” is not a usable file name.", "Use a plain name without slashes.")
    return name


def import_model(src: str | Path, mode: str = "copy", dest_dir: Path | None = None) -> Path:
    """Copy or link a model file or folder into the library; returns the new path.

    mode "link" makes a symbolic link (no extra disk space; the original must stay where it is)."""
    src = Path(src).expanduser()
    if not src.exists():
        raise LibraryError(f"Not found: {src}")
    if src.is_file() and src.suffix.lower() not in MODEL_SUFFIXES:
        raise LibraryError(f"{src.name} is not a model file (.safetensors, .ckpt …).")
    if mode not in ("copy", "link"):
        raise ValueError(mode)
    dest_dir = dest_dir or models_dir()
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / src.name
    if dest.exists() or dest.is_symlink():
        raise LibraryError(f"The library already has “{src.name}”.", "Rename one of them first.")
    if src.resolve() == dest_dir.resolve() or dest_dir.resolve() in src.resolve().parents:
        raise LibraryError(f"{src.name} is already in the library.")
    if mode == "link":
        try:
            os.symlink(src.resolve(), dest, target_is_directory=src.is_dir())
        except OSError as exc:
            raise LibraryError(
                f"Cannot link {src.name} into the library: {exc.strerror or exc}.", "Import a copy instead."
            ) from None
        return dest
    need = _size(src)
    free = shutil.disk_usage(dest_dir).free
    if free < need + 50 * 2**20:
        raise LibraryError(
            f"Not enough disk space to copy {src.name}: {need / 2**30:.2f} GB needed, {free / 2**30:.2f} GB free.",
            "Link it instead, or free some space.",
        )
    tmp = Path(tempfile.mkdtemp(prefix=".import-", dir=dest_dir))
    try:  # copy beside the target, then one rename: never a half-copied model in the library
        staged = tmp / src.name
        if src.is_dir():
            shutil.copytree(src, staged, symlinks=False)
        else:
            shutil.copy2(src, staged)
        os.replace(staged, dest)
    except OSError as exc:
        raise LibraryError(f"Copying {src.name} failed: {exc.strerror or exc}.") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return dest


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def rename_model(path: str | Path, new_name: str) -> Path:
    """Rename a model file or folder in place (a file keeps its suffix); returns the new path."""
    path = Path(path)
    if is_protected(path):
        raise LibraryError("The bundled demo model cannot be renamed.")
    if not (path.exists() or path.is_symlink()):
        raise LibraryError(f"Not found: {path}")
    name = _check_name(new_name)
    if path.is_file() and Path(name).suffix.lower() != path.suffix.lower():
        name += path.suffix
    target = path.with_name(name)
    if target == path:
        return path
    if target.exists() or target.is_symlink():
        raise LibraryError(f"“{name}” already exists in {path.parent}.", "Choose another name.")
    try:
        path.rename(target)
    except OSError as exc:
        raise LibraryError(f"Cannot rename {path.name}: {exc.strerror or exc}.") from None
    _update_settings(lambda s: s.rename_path(path, target))
    return target


def trash_model(path: str | Path) -> None:
    """Send a model file or folder to the trash (a link in the library is just removed)."""
    path = Path(path)
    if is_protected(path):
        raise LibraryError("The bundled demo model cannot be deleted.")
    if path.is_symlink():
        path.unlink()  # only the link: the original stays where the user keeps it
    elif not path.exists():
        raise LibraryError(f"Not found: {path}")
    else:
        from send2trash import send2trash
        from send2trash.exceptions import TrashPermissionError

        try:
            send2trash(str(path))
        except (OSError, TrashPermissionError) as exc:
            raise LibraryError(
                f"Cannot move {path.name} to the trash: {exc}.", "Delete it in your file manager."
            ) from None
    _update_settings(lambda s: s.forget_path(path))


def _update_settings(change: Callable[[settings_mod.Settings], Any]) -> None:
    s = settings_mod.load()
    before = s.to_dict()
    change(s)
    if s.to_dict() != before:
        settings_mod.save(s)


def identify(model: str) -> CatalogueEntry | None:
    """The catalogue entry of what a user typed or picked ("demo", a file or a folder), or None."""
    path = demo_model_dir() if model.strip().lower() == "demo" else Path(model).expanduser()
    try:
        if path.is_file():
            return identify_file(path)
        if path.is_dir():
            return identify_folder(path)
    except (OSError, StudioError) as exc:
        log.info("cannot identify %s: %s", model, exc)
    return None


def native_size(model: str) -> int | None:
    """The image size (pixels, square) a model was trained at, from its configs or file header
    alone (nothing loaded), as the engine reads it: the UNet's sample size × 8. None if unknown."""
    from studio.core.checkpoint import identify as identify_checkpoint

    path = demo_model_dir() if model.strip().lower() == "demo" else Path(model).expanduser()
    try:
        if path.is_dir():
            config = json.loads((path / "unet" / "config.json").read_text(encoding="utf-8"))
            return int(config["sample_size"]) * 8
        if path.is_file():
            return int(identify_checkpoint(path).configs["unet"]["sample_size"]) * 8
    except (OSError, ValueError, KeyError, TypeError, StudioError) as exc:
        log.info("no native size for %s: %s", model, exc)
    return None


def check_model(model: str) -> None:
    """Say now, not when a queued job runs, that a model named by path is not there."""
    from studio.core.errors import ModelNotFound

    if model.strip().lower() == "demo":
        if not (demo_model_dir() / "model_index.json").is_file():
            raise ModelNotFound(
                "The bundled demo model is missing from this installation.", f"Expected it at {demo_model_dir()}."
            )
        return
    path = Path(model).expanduser()
    if not path.exists():
        raise ModelNotFound(f"Model not found: {path}", "Check the path, or pick the model again.")


def tiny_autoencoders(settings: settings_mod.Settings | None = None) -> dict[str, str]:
    """The tiny autoencoder for each architecture's previews: the default set in the Models dialog,
    else a published one (TAESD, TAESDXL, TAESD3, TAEF1) found by name in the models library or an
    extra folder (a download lands as `madebyollin--taesd`; ComfyUI keeps them in `vae_approx`,
    A1111 in `VAE-taesd`)."""
    s = settings if settings is not None else settings_mod.load()
    out: dict[str, str] = {}
    roots = [src.path for src in sources(s)[1:]]
    for arch in families.ARCHES:
        chosen = s.taesd_for(arch) or _find_tiny_autoencoder(arch, roots)
        if chosen:
            out[arch] = str(chosen)
    return out


def _find_tiny_autoencoder(arch: str, roots: list[Path]) -> Path | None:
    wanted = families.FAMILIES[arch].tiny_autoencoder
    for root in roots:
        for folder in (root, root / "vae_approx", root / "VAE-taesd"):
            try:
                entries = sorted(folder.iterdir()) if folder.is_dir() else []
            except OSError:
                continue
            for entry in entries:
                name = entry.name.lower()
                if families.tiny_autoencoder_name(entry)[0] != wanted or ("encoder" in name and "decoder" not in name):
                    continue  # another family's, or taesd_encoder.safetensors
                if entry.is_file() and entry.suffix.lower() == ".safetensors":
                    return entry
                if entry.is_dir() and (any(entry.glob("*.safetensors")) or (entry / "vae").is_dir()):
                    return entry
    return None
