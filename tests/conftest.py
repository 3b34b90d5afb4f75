"""Shared fixtures: an isolated STUDIO_HOME, and tiny models built once per session (nothing downloaded)."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # any attempt to reach the hub fails loudly
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
warnings.filterwarnings("ignore", message=".*torchvision.*")


@pytest.fixture(scope="session", autouse=True)
def studio_home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("studio-home")
    os.environ["STUDIO_HOME"] = str(home)
    return home


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """Build (lazily, once) tiny models: tiny_models(arch, fmt) -> Path."""
    root = tmp_path_factory.mktemp("tiny-models")
    made: dict[tuple[str, str], Path] = {}

    def get(arch: str = "sd15", fmt: str = "diffusers") -> Path:
        from studio.testing import save_tiny_model

        if (arch, fmt) not in made:
            out = root / f"{arch}-{fmt}"
            made[(arch, fmt)] = save_tiny_model(out if fmt == "diffusers" else out / "model.safetensors", arch, fmt)
        return made[(arch, fmt)]

    return get


@pytest.fixture(scope="session")
def tiny_sd15(tiny_models) -> Path:
    return tiny_models("sd15", "diffusers")


@pytest.fixture(scope="session")
def engine():
    from studio.engine.engine import Engine

    return Engine(device="cpu")
