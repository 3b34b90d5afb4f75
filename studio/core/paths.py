"""Where the studio keeps things (platformdirs), overridable by environment for tests and portable use.

- STUDIO_HOME: one folder that holds config, data, cache and library (tests set it to a temp dir).
- STUDIO_LIBRARY: the gallery library folder only.
"""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "studio"
REPO_ROOT = Path(__file__).resolve().parent.parent.parent


def _home() -> Path | None:
    home = os.environ.get("STUDIO_HOME")
    return Path(home) if home else None


def config_dir() -> Path:
    h = _home()
    return h / "config" if h else Path(platformdirs.user_config_dir(APP, appauthor=False))


def data_dir() -> Path:
    h = _home()
    return h / "data" if h else Path(platformdirs.user_data_dir(APP, appauthor=False))


def cache_dir() -> Path:
    h = _home()
    return h / "cache" if h else Path(platformdirs.user_cache_dir(APP, appauthor=False))


def library_dir() -> Path:
    lib = os.environ.get("STUDIO_LIBRARY")
    if lib:
        return Path(lib)
    h = _home()
    return h / "library" if h else Path(platformdirs.user_pictures_dir()) / "Studio"


def models_dir() -> Path:
    return data_dir() / "models"


def resources_dir() -> Path:
    """The `resources/` folder (next to the package in a checkout; bundled beside it when packaged)."""
    return REPO_ROOT / "resources"


def demo_model_dir() -> Path:
    """The bundled demo model (STUDIO_DEMO_MODEL points elsewhere, e.g. a tiny model in tests)."""
    env = os.environ.get("STUDIO_DEMO_MODEL")
    return Path(env) if env else resources_dir() / "demo-model"


def demo_adapters_dir() -> Path:
    """The demo model's bundled adapters: the outline LoRA and the Canny ControlNet."""
    return resources_dir() / "demo-adapters"


def demo_controlnet() -> Path:
    return demo_adapters_dir() / "demo-canny-controlnet"


def ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path
