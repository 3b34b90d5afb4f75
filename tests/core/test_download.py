"""Model downloads against a local fake hub: file choice, resume after a cut, cancel, offline."""

import os
import socket
import threading
import time

import pytest
from fake_hub import FakeHub

from studio.core.download import DownloadCancelled, DownloadError, choose_files, download, plan_download

REPO = "someone/tiny-sd"
BIG = os.urandom(3 * 2**20)
FILES = {
    "model_index.json": b'{"_class_name": "StableDiffusionPipeline"}',
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
    full = {n for n, _ in choose_files(listed, fp16=False)}
    half = {n for n, _ in choose_files(listed, fp16=True)}
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
    import json

    from studio.cli import main

    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    assert main(["models", "download", REPO, "--fp16", "--to", str(tmp_path / "m"), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "unet/diffusion_pytorch_model.fp16.safetensors" in out["files"]
    assert (tmp_path / "m" / "unet" / "diffusion_pytorch_model.fp16.safetensors").is_file()
    assert main(["models", "download", "nobody/nothing"]) == 2
    assert "No model" in capsys.readouterr().err
