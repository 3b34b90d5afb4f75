"""The files a request names, by content: found on a worker by SHA-256, or sent to it once.

A request names its model (a file or a diffusers folder), and perhaps a VAE, text encoders,
LoRAs, ControlNets, an upscaler, an input image and a mask, all by paths on the machine that
queued it. A worker never reads those paths: each file is known by its SHA-256 (a folder by the
SHA-256 of its manifest: every file's relative path, size and SHA-256), and the worker looks for
it in its own models library and folders (`Settings.model_folders`, the bundled demo model) and
in its cache of files it was sent (`cache_dir()/cluster-files/<sha256>/<name>`). What it does
not have is sent through Ray's object store, in chunks (so the sender can show progress), checked
against its hash and kept, so it is sent once. Plain Python, no Ray: `worker.py` and
`remote.py` do the Ray calls.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import tarfile
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.core import paths
from studio.core.errors import ModelNotFound, StudioError
from studio.core.hashing import file_sha256
from studio.core.request import GenerationRequest

CHUNK = 16 << 20  # bytes per object-store chunk of a transfer
_SKIP = (".git", "__pycache__")


@dataclass(frozen=True)
class FileRef:
    """One file or folder a request needs, by content."""

    sha256: str
    name: str  # its file or folder name (kept on the worker, so the model's name stays the same)
    size: int  # bytes (a folder: all its files)
    is_dir: bool
    path: str = ""  # where it is on the sending machine


def _files_under(folder: Path) -> Iterator[Path]:
    for root, dirs, names in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP)
        for n in sorted(names):
            yield Path(root) / n


def folder_sha256(folder: Path) -> tuple[str, int]:
    """A folder's content hash (of its manifest: relative path, size and SHA-256 of each file) and size."""
    h, total = hashlib.sha256(), 0
    for f in _files_under(folder):
        size = f.stat().st_size
        total += size
        h.update(f"{f.relative_to(folder).as_posix()}\0{size}\0{file_sha256(f)}\n".encode())
    return h.hexdigest(), total


def folder_size(folder: Path) -> int:
    return sum(f.stat().st_size for f in _files_under(folder))


def ref_for(path: Path) -> FileRef:
    path = path.expanduser().resolve()
    if path.is_dir():
        sha, size = folder_sha256(path)
        return FileRef(sha, path.name, size, True, str(path))
    return FileRef(file_sha256(path), path.name, path.stat().st_size, False, str(path))


def _model_path(model: str) -> Path:
    return paths.demo_model_dir() if model.strip().lower() == "demo" else Path(model).expanduser()


def request_paths(request: GenerationRequest) -> list[tuple[str, str]]:
    """(role, path) of every local file the request names (the model first)."""
    out = [("model", str(_model_path(request.model)))]
    if request.vae:
        out.append(("VAE", request.vae))
    out += [("text encoder", p) for p in request.text_encoders]
    out += [("LoRA", lo.path) for lo in request.loras if lo.path]
    for cn in request.controlnets:
        out += [("ControlNet", cn.model), ("control image", cn.image.path)]
    if request.init_image is not None:
        out.append(("input image", request.init_image.path))
    if request.mask is not None:
        out.append(("mask", request.mask.path))
    if request.upscale is not None:
        out.append(("upscaler", request.upscale.model))
    if request.hires is not None and request.hires.upscaler not in ("latent", "lanczos"):
        out.append(("hires upscaler", request.hires.upscaler))
    return out


def request_files(request: GenerationRequest) -> dict[str, FileRef]:
    """path as the request names it -> its FileRef. A file that is not on this machine cannot be
    sent to a worker: that is said here, before any worker is asked."""
    refs: dict[str, FileRef] = {}
    for role, value in request_paths(request):
        path = Path(value).expanduser()
        if value in refs:
            continue
        if not path.exists():
            if role == "LoRA" or (role in ("VAE", "hires upscaler") and not path.suffix and "/" not in value):
                continue  # a name the worker resolves in its own library, as a local run would
            raise ModelNotFound(
                f"The {role} {value} is not on this machine, so no worker can be sent it.",
                "Check the path, or put the file back and retry the job.",
            )
        refs[value] = ref_for(path)
    return refs


def rewrite(request: GenerationRequest, where: dict[str, str]) -> GenerationRequest:
    """The request with every path in `where` (as the request names it) replaced by the worker's."""
    if not where:
        return request

    def sub(p: str) -> str:
        return where.get(p, p)

    data: dict[str, Any] = request.model_dump()
    model_key = str(_model_path(request.model)) if request.model.strip().lower() == "demo" else request.model
    if model_key in where:
        data["model"] = where[model_key]
    data["vae"] = sub(request.vae) if request.vae else ""
    data["text_encoders"] = tuple(sub(p) for p in request.text_encoders)
    data["loras"] = [{**lo, "path": sub(lo["path"])} for lo in data["loras"]]
    data["controlnets"] = [
        {**cn, "model": sub(cn["model"]), "image": {**cn["image"], "path": sub(cn["image"]["path"])}}
        for cn in data["controlnets"]
    ]
    for key in ("init_image", "mask"):
        if data.get(key):
            data[key] = {**data[key], "path": sub(data[key]["path"])}
    if data.get("upscale"):
        data["upscale"] = {**data["upscale"], "model": sub(data["upscale"]["model"])}
    if data.get("hires") and data["hires"]["upscaler"] not in ("latent", "lanczos"):
        data["hires"] = {**data["hires"], "upscaler": sub(data["hires"]["upscaler"])}
    return GenerationRequest.create(**data)


# -- the worker's side -------------------------------------------------------------------------------
class TransferRefused(StudioError):
    code = "transfer-refused"


class FileStore:
    """A worker's files: its own library and folders, searched by hash, and the files it was sent."""

    def __init__(self, accept_transfers: bool = True, cache: Path | None = None) -> None:
        self.accept_transfers = accept_transfers
        self.cache = Path(cache) if cache else paths.cache_dir() / "cluster-files"
        self._incoming: dict[str, Path] = {}

    def roots(self) -> list[Path]:
        from studio.core import settings

        found = [paths.models_dir(), *(Path(f) for f in settings.load().model_folders)]
        return [r for r in found if r.is_dir()]

    def find(self, ref: FileRef) -> str | None:
        """Where this worker has the file, or None."""
        cached = self.cache / ref.sha256 / ref.name
        if cached.exists():
            return str(cached)
        if ref.is_dir:
            return self._find_folder(ref)
        for root in self.roots():
            for f in _files_under(root):
                try:
                    if f.stat().st_size == ref.size and file_sha256(f) == ref.sha256:
                        return str(f)
                except (OSError, StudioError):
                    continue
        return None

    def _find_folder(self, ref: FileRef) -> str | None:
        candidates = [paths.demo_model_dir()]
        for root in self.roots():
            candidates += [p.parent for p in root.rglob("model_index.json")]
        for folder in candidates:
            try:
                if folder.is_dir() and folder_size(folder) == ref.size and folder_sha256(folder)[0] == ref.sha256:
                    return str(folder)
            except (OSError, StudioError):
                continue
        return None

    # transfers: begin, chunks in order, end (checked against the hash, then kept)
    def begin(self, ref: FileRef) -> None:
        if not self.accept_transfers:
            raise TransferRefused(f"this worker takes no transfers ({ref.name} is not in its library)")
        free = shutil.disk_usage(paths.ensure(self.cache)).free
        if free < 2 * ref.size + (256 << 20):
            raise TransferRefused(f"this worker has {free >> 20} MB free, too little for {ref.name}")
        fd, tmp = tempfile.mkstemp(prefix=f".in-{ref.sha256[:12]}-", dir=self.cache)
        os.close(fd)
        self._incoming[ref.sha256] = Path(tmp)

    def chunk(self, ref: FileRef, data: bytes) -> None:
        with open(self._incoming[ref.sha256], "ab") as fh:
            fh.write(data)

    def end(self, ref: FileRef) -> str:
        tmp = self._incoming.pop(ref.sha256)
        stage = self.cache / f".stage-{uuid.uuid4().hex}"
        try:
            stage.mkdir(parents=True)
            if ref.is_dir:
                with tarfile.open(tmp) as tar:
                    tar.extractall(stage / ref.name, filter="data")
                got = folder_sha256(stage / ref.name)[0]
            else:
                os.replace(tmp, stage / ref.name)
                got = file_sha256(stage / ref.name)
            if got != ref.sha256:
                raise StudioError(f"{ref.name} arrived damaged (its SHA-256 does not match); it was not kept")
            target = self.cache / ref.sha256
            try:
                os.replace(stage, target)  # atomic; another worker on this machine may have kept it first
            except OSError:
                if not (target / ref.name).exists():
                    raise
            return str(target / ref.name)
        finally:
            tmp.unlink(missing_ok=True)
            shutil.rmtree(stage, ignore_errors=True)


def pack(ref: FileRef) -> Iterator[tuple[bytes, int]]:
    """A file's or folder's bytes in chunks (a folder as an uncompressed tar), with bytes sent so far."""
    path = Path(ref.path)
    if ref.is_dir:
        tmp = tempfile.TemporaryFile()  # noqa: SIM115 — closed below, after the last chunk
        with tarfile.open(fileobj=tmp, mode="w") as tar:
            for f in _files_under(path):
                tar.add(f, arcname=f.relative_to(path).as_posix())
        tmp.seek(0)
        fh: io.BufferedIOBase | Any = tmp
    else:
        fh = open(path, "rb")  # noqa: SIM115 — closed below, after the last chunk
    sent = 0
    try:
        for block in iter(lambda: fh.read(CHUNK), b""):
            sent += len(block)
            yield block, sent
    finally:
        fh.close()
