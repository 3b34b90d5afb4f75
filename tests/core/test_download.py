"""Model downloads against a local fake hub: file choice, resume after a cut, cancel, offline."""

import json
import os
import socket
import threading
import time
from pathlib import Path

import pytest
from fake_hub import FakeHub

from studio.core.download import (
    DownloadCancelled,
    DownloadError,
    choose_files,
    download,
    local_name,
    plan_download,
)

REPO = "someone/tiny-sd"
BIG = os.urandom(3 * 2**20)
FILES = {
    "model_index.json": b'{"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"], '
    b'"tokenizer": ["transformers", "CLIPTokenizer"], "safety_checker": [null, null]}',
    "unet/config.json": b"{}",
    "unet/diffusion_pytorch_model.safetensors": BIG,
    "unet/diffusion_pytorch_model.fp16.safetensors": BIG[: 2**20],
    "unet/diffusion_pytorch_model.bin": b"pickle!",
    "tokenizer/merges.txt": b"#version: 0.2\n",
    "flax_model.msgpack": b"nope",
}


@pytest.fixture()
def hub(monkeypatch):
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", False)  # the suite runs offline; this server is local
    monkeypatch.setattr(c, "DOWNLOAD_CHUNK_SIZE", 256 * 1024)  # resume granularity (10 MB by default)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with FakeHub({REPO: dict(FILES)}) as h:
        yield h


def test_only_needed_files_and_the_fp16_variant():
    listed = [(n, len(d)) for n, d in FILES.items()]
    full = {n for n, _ in choose_files(listed, fp16=False, components=["unet", "tokenizer"])}
    half = {n for n, _ in choose_files(listed, fp16=True, components=["unet", "tokenizer"])}
    assert full == {
        "model_index.json",
        "unet/config.json",
        "unet/diffusion_pytorch_model.safetensors",
        "tokenizer/merges.txt",
    }
    assert (
        "unet/diffusion_pytorch_model.fp16.safetensors" in half
        and "unet/diffusion_pytorch_model.safetensors" not in half
    )


SD15 = json.loads((Path(__file__).parent / "data" / "sd15_repo.json").read_text())


@pytest.mark.parametrize("fp16", [False, True])
def test_the_recorded_sd15_repository_downloads_only_the_pipeline(fp16):
    """stable-diffusion-v1-5's 47 GB of files: the pipeline's components from model_index.json, one
    set of weights each; no safety checker, no non-EMA UNet, no root single-file checkpoints."""
    listed = list(SD15["files"].items())
    components = [k for k, v in SD15["model_index"].items() if not k.startswith("_") and v[0] is not None]
    chosen = dict(choose_files(listed, fp16=fp16, components=components))
    v = ".fp16" if fp16 else ""
    assert set(chosen) == {
        "README.md",
        "model_index.json",
        "scheduler/scheduler_config.json",
        "text_encoder/config.json",
        f"text_encoder/model{v}.safetensors",
        "tokenizer/merges.txt",
        "tokenizer/special_tokens_map.json",
        "tokenizer/tokenizer_config.json",
        "tokenizer/vocab.json",
        "unet/config.json",
        f"unet/diffusion_pytorch_model{v}.safetensors",
        "vae/config.json",
        f"vae/diffusion_pytorch_model{v}.safetensors",
    }
    total = sum(chosen.values())
    # UNet + text encoder + VAE (+ 1.6 MB of configs and tokenizer): 4.27 GB in fp32, 2.13 GB in fp16,
    # of the 47.3 GB the repository lists.
    assert round(total / 1e9, 2) == (2.13 if fp16 else 4.27)
    assert sum(SD15["files"].values()) / total > 10
    assert {local_name(n) for n in chosen} >= {
        "unet/diffusion_pytorch_model.safetensors",
        "vae/diffusion_pytorch_model.safetensors",
    }


def test_single_component_repositories_keep_their_own_weights():
    """A ControlNet or TAESD repository (config.json at the root, no model_index.json): diffusers'
    weights in the chosen precision, not the other programs' files beside them."""
    listed = [
        ("config.json", 1),
        ("diffusion_pytorch_model.safetensors", 100),
        ("diffusion_pytorch_model.fp16.safetensors", 50),
        ("diffusion_pytorch_model.bin", 100),
        ("taesd_decoder.safetensors", 10),
        ("images/example.png", 5),
    ]
    assert {n for n, _ in choose_files(listed, fp16=False)} == {"config.json", "diffusion_pytorch_model.safetensors"}
    assert {n for n, _ in choose_files(listed, fp16=True)} == {
        "config.json",
        "diffusion_pytorch_model.fp16.safetensors",
    }
    only_half = [("config.json", 1), ("diffusion_pytorch_model.fp16.safetensors", 50)]
    assert {n for n, _ in choose_files(only_half, fp16=False)} == {
        "config.json",
        "diffusion_pytorch_model.fp16.safetensors",
    }


def test_a_plan_says_what_it_leaves_out(hub):
    hub.repos[REPO]["safety_checker/model.safetensors"] = b"x" * 1000
    plan = plan_download(REPO, endpoint=hub.url)
    left = dict(plan.skipped)
    assert "safety_checker/model.safetensors" in left and "unet/diffusion_pytorch_model.bin" in left
    assert plan.skipped_bytes >= 1000 and "unet/diffusion_pytorch_model.safetensors" in dict(plan.files)


def test_download_completes_and_resumes_after_a_cut(hub, tmp_path):
    hub.drop_once.add("unet/diffusion_pytorch_model.safetensors")
    seen = []
    plan = plan_download(REPO, endpoint=hub.url)
    dest = download(plan, tmp_path / "lib" / "tiny", endpoint=hub.url, on_progress=lambda d, t, f: seen.append((d, t)))
    assert (dest / "unet/diffusion_pytorch_model.safetensors").read_bytes() == BIG
    assert not (dest / "unet/diffusion_pytorch_model.bin").exists() and not (dest / "flax_model.msgpack").exists()
    ranged = [r for m, p, r in hub.requests if m == "GET" and p.endswith("model.safetensors") and r]
    assert ranged and int(ranged[-1].split("=")[1].rstrip("-")) > 0  # the second GET resumed mid-file
    assert seen[-1] == (plan.total_bytes, plan.total_bytes)


def test_cancel_leaves_nothing_in_the_library_and_the_next_run_resumes(hub, tmp_path):
    hub.slow.add("unet/diffusion_pytorch_model.safetensors")
    cancel = threading.Event()

    def on_progress(done, total, name):
        if name.endswith(".safetensors") and done > 2**20:
            cancel.set()

    plan = plan_download(REPO, endpoint=hub.url)
    dest = tmp_path / "lib" / "tiny"
    with pytest.raises(DownloadCancelled):
        download(plan, dest, endpoint=hub.url, on_progress=on_progress, cancel=cancel)
    assert not dest.exists() or not any(p.is_file() for p in dest.rglob("*"))
    hub.requests.clear()
    download(plan, dest, endpoint=hub.url)
    assert (dest / "unet/diffusion_pytorch_model.safetensors").read_bytes() == BIG
    fetched = [p.rsplit("/", 1)[1] for m, p, r in hub.requests if m == "GET" and "/resolve/" in p]
    # Files finished before the cancel are kept and not fetched again; the cancelled one is
    # fetched anew (huggingface_hub 2.x discards a partial file when a download call ends).
    assert "model_index.json" not in fetched and "config.json" not in fetched
    assert "diffusion_pytorch_model.safetensors" in fetched


def test_unknown_repo_and_missing_file(hub):
    with pytest.raises(DownloadError, match="No model"):
        plan_download("nobody/nothing", endpoint=hub.url)
    with pytest.raises(DownloadError, match="Not in"):
        plan_download(REPO, files=["nope.safetensors"], endpoint=hub.url)


def test_not_enough_disk(hub, tmp_path, monkeypatch):
    import shutil

    plan = plan_download(REPO, endpoint=hub.url)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10, 10, 1000))
    with pytest.raises(DownloadError, match="disk space"):
        download(plan, tmp_path / "x", endpoint=hub.url)


def test_offline_fails_fast_with_a_clear_message(monkeypatch):
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", False)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now
    t = time.perf_counter()
    with pytest.raises(DownloadError, match="Cannot reach"):
        plan_download(REPO, endpoint=f"http://127.0.0.1:{port}")
    assert time.perf_counter() - t < 10


def test_cli_download(hub, tmp_path, monkeypatch, capsys):
    from studio.cli import main

    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    assert main(["models", "download", REPO, "--fp16", "--to", str(tmp_path / "m"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in out["files"]
    # The variant is stored under the plain name, so the folder loads as any diffusers folder.
    assert (tmp_path / "m" / "unet" / "diffusion_pytorch_model.safetensors").read_bytes() == BIG[: 2**20]
    assert not (tmp_path / "m" / "unet" / "diffusion_pytorch_model.fp16.safetensors").exists()
    assert main(["models", "download", "nobody/nothing"]) == 2
    assert "No model" in capsys.readouterr().err
