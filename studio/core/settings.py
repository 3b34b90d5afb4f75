"""Studio settings shared by the window and the CLI (plain JSON, `config_dir()/studio.json`).

What lives here is what more than the window needs: the extra model folders the user added
(their A1111 or ComfyUI `models/`, the Hugging Face cache), the default VAE and tiny autoencoder
per architecture, the memory preset, and how many gallery images keep the latents of their steps.
Window layout and the last request stay in the window's own `window.ini` (`studio.qt.app.settings`).

Every change is written at once, atomically (temp file + rename), so a crash never leaves half a
file; a damaged file is set aside as `studio.json.bad` and the defaults are used.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from studio.core import families
from studio.core.files import atomic_write
from studio.core.paths import config_dir

log = logging.getLogger(__name__)
FILE_NAME = "studio.json"
ARCHES = families.ARCHES  # one table for every model family (studio.core.families)
ARCH_LABELS = families.ARCH_LABELS
MEMORY_PRESETS = ("auto", "fast", "balanced", "low memory")
WORKER_MODES = ("local", "gpus", "cluster")


@dataclass
class Settings:
    model_folders: list[str] = field(default_factory=list)  # extra folders scanned with the library
    default_vae: dict[str, str] = field(default_factory=dict)  # arch -> VAE file or folder
    default_taesd: dict[str, str] = field(default_factory=dict)  # arch -> tiny autoencoder file or folder
    memory_preset: str = "auto"  # auto | fast | balanced | low memory
    oom_fallback: bool = False  # on out-of-memory, retry once with the next lower preset
    device: str = "auto"  # the device the window's engine runs on: auto | cuda:N | mps | cpu (from the next start)
    fast_path: bool = False  # the window's runs use the device's fast path (studio.engine.fast.recommended)
    draft: bool = False  # "draft speed": step caching on the window's runs
    # model file -> "epsilon" | "v_prediction": the user's answer where an SD 2.x file's own is wrong
    prediction: dict[str, str] = field(default_factory=dict)
    # Where the queue runs (Device dialog ▸ Workers): "local" (this process's engine), "gpus" (one
    # Ray worker per GPU of this machine) or "cluster" (the Ray cluster at `cluster_address`).
    workers: str = "local"
    cluster_address: str = ""
    # Steps kept with gallery images (studio.core.gallery.steps): previews always, and the latents
    # to branch from for the newest images within both of these.
    steps_keep_images: int = 200
    steps_keep_gb: float = 2.0

    def engine_device(self) -> str | None:
        """The device the Device dialog chose for the window's engine (None: automatic, or STUDIO_DEVICE set)."""
        return None if self.device == "auto" or os.environ.get("STUDIO_DEVICE") else self.device

    # -- model folders ----------------------------------------------------------------------------
    def add_folder(self, folder: str | Path) -> bool:
        """Add an extra model folder (absolute, ~ expanded); False when it was already there."""
        path = str(Path(folder).expanduser().resolve())
        if path in self.model_folders:
            return False
        self.model_folders.append(path)
        return True

    def remove_folder(self, folder: str | Path) -> bool:
        path = str(Path(folder).expanduser().resolve())
        keep = [f for f in self.model_folders if f not in (path, str(folder))]
        changed = len(keep) != len(self.model_folders)
        self.model_folders = keep
        return changed

    # -- defaults per architecture ----------------------------------------------------------------
    def vae_for(self, arch: str) -> str:
        return _by_arch(self.default_vae, arch)

    def taesd_for(self, arch: str) -> str:
        return _by_arch(self.default_taesd, arch)

    def set_default(self, what: str, arch: str, path: str | Path | None) -> None:
        """what: "vae" or "taesd"; path None or "" clears it."""
        table = self.default_vae if what == "vae" else self.default_taesd
        if what not in ("vae", "taesd"):
            raise ValueError(what)
        if path:
            table[arch] = str(path)
        else:
            table.pop(arch, None)

    def prediction_for(self, model: str | Path) -> str:
        """The ε/v override saved for a model file ("" when none)."""
        return self.prediction.get(str(model), "")

    def set_prediction(self, model: str | Path, prediction: str) -> None:
        """ "epsilon" or "v_prediction"; "" takes the override away."""
        if prediction not in ("", "epsilon", "v_prediction"):
            raise ValueError(prediction)
        if prediction:
            self.prediction[str(model)] = prediction
        else:
            self.prediction.pop(str(model), None)

    def rename_path(self, old: str | Path, new: str | Path) -> None:
        """A model file or folder was renamed or moved: keep the defaults pointing at it."""
        if str(old) in self.prediction:
            self.prediction[str(new)] = self.prediction.pop(str(old))
        for table in (self.default_vae, self.default_taesd):
            for arch, p in list(table.items()):
                if p == str(old):
                    table[arch] = str(new)

    def forget_path(self, path: str | Path) -> None:
        self.prediction.pop(str(path), None)
        for table in (self.default_vae, self.default_taesd):
            for arch, p in list(table.items()):
                if p == str(path):
                    del table[arch]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _by_arch(table: dict[str, str], arch: str) -> str:
    return table.get(arch) or table.get(arch.split("-")[0], "") if arch else ""


def settings_path() -> Path:
    return config_dir() / FILE_NAME


def load() -> Settings:
    """The saved settings (defaults when there are none, or when the file is damaged)."""
    path = settings_path()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Settings()
    except (OSError, ValueError) as exc:
        log.warning("settings file %s is damaged (%s); using defaults and keeping it as %s.bad", path, exc, path.name)
        with contextlib.suppress(OSError):
            os.replace(path, path.with_name(path.name + ".bad"))
        return Settings()
    if not isinstance(data, dict):
        return Settings()
    s = Settings()
    known = {f.name for f in fields(Settings)}
    for key, value in data.items():
        if key in known and isinstance(value, type(getattr(s, key))):
            setattr(s, key, value)
    s.model_folders = [f for f in s.model_folders if isinstance(f, str)]
    if s.memory_preset not in MEMORY_PRESETS:
        s.memory_preset = "auto"
    if s.workers not in WORKER_MODES:
        s.workers = "local"
    if isinstance(data.get("steps_keep_gb"), int):  # written as a whole number
        s.steps_keep_gb = float(data["steps_keep_gb"])
    s.steps_keep_images = max(0, int(s.steps_keep_images))
    s.steps_keep_gb = max(0.0, float(s.steps_keep_gb))
    return s


def save(settings: Settings) -> Path:
    path = settings_path()
    atomic_write(path, json.dumps(settings.to_dict(), indent=1).encode("utf-8"))
    return path


def update(**changes: Any) -> Settings:
    """Load, change some fields, save; returns the saved settings."""
    s = load()
    for key, value in changes.items():
        setattr(s, key, value)
    save(s)
    return s
