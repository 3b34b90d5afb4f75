"""Shared fixtures: an isolated STUDIO_HOME, and tiny models built once per session (nothing downloaded)."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import warnings
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # any attempt to reach the hub fails loudly
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")  # test clusters stay on 127.0.0.1
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
def tiny_flow(tmp_path_factory):
    """Build (lazily, once) tiny FLUX/SD3 models: tiny_flow(arch, fmt) -> studio.testing_flow.FlowFiles."""
    root = tmp_path_factory.mktemp("tiny-flow")
    made: dict[tuple[str, str], object] = {}

    def get(arch: str = "flux-dev", fmt: str = "diffusers"):
        from studio.testing_flow import save_tiny_flow

        if (arch, fmt) not in made:
            made[(arch, fmt)] = save_tiny_flow(root / f"{arch}-{fmt}", arch, fmt)
        return made[(arch, fmt)]

    return get


@pytest.fixture(scope="session")
def tiny_sd15(tiny_models) -> Path:
    return tiny_models("sd15", "diffusers")


@pytest.fixture(scope="session")
def engine():
    from studio.engine.engine import Engine

    return Engine(device="cpu")


@pytest.fixture
def xvfb_display(request):
    """A private Xvfb display (":N") for real-window (xcb) tests; skips when Xvfb is not installed.
    The screen size is the test module's XVFB_SCREEN, or 1680×1050."""
    exe = shutil.which("Xvfb")
    if exe is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb); the real-window test needs it")
    width, height = getattr(request.module, "XVFB_SCREEN", (1680, 1050))
    r, w = os.pipe()
    proc = subprocess.Popen(
        [exe, "-displayfd", str(w), "-screen", "0", f"{width}x{height}x24", "-nolisten", "tcp"],
        pass_fds=(w,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(w)
    number, deadline = b"", time.monotonic() + 20
    with os.fdopen(r, "rb") as f:
        while time.monotonic() < deadline:
            ch = f.read(1)
            if not ch or ch == b"\n":
                break
            number += ch
    if not number:
        proc.kill()
        proc.wait()
        pytest.fail("Xvfb did not report a display number")
    yield f":{int(number)}"
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
