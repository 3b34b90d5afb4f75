"""SHA-256 of model, LoRA and ControlNet files, computed once and cached by path + size + mtime.

Hashing a 2–7 GB checkpoint takes seconds, so the result is kept in a small JSON file under the
cache folder (`cache_dir()/hashes.json`) and recomputed only when the file's size or modification
time changes. `hash_in_background()` runs the work on a single worker thread and returns a
`concurrent.futures.Future`, so a window can ask for hashes without waiting on them.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

from studio.core import paths
from studio.core.errors import StudioError

_CHUNK = 1 << 20
_CACHE_VERSION = 1
ADDNET = "#addnet"  # the cache's key suffix for addnet hashes


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The SHA-256 (hex) of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(_CHUNK), b""):
                h.update(block)
    except OSError as exc:
        raise StudioError(f"cannot read {path} to hash it: {exc.strerror or exc}") from None
    return h.hexdigest()


def addnet_sha256_file(path: str | os.PathLike[str]) -> str:
    """The "addnet" SHA-256 of a safetensors file: of the tensor data after its header only (the
    8-byte header length and the JSON header are left out), as A1111's "Lora hashes" and model sites
    hash LoRAs, so that editing a file's metadata keeps its hash."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                raise StudioError(f"{Path(path).name} is too short to be a safetensors file")
            fh.seek(8 + int.from_bytes(head, "little"))
            for block in iter(lambda: fh.read(_CHUNK), b""):
                h.update(block)
    except OSError as exc:
        raise StudioError(f"cannot read {path} to hash it: {exc.strerror or exc}") from None
    return h.hexdigest()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def a1111_model_hash(sha256: str) -> str:
    """AUTOMATIC1111's "Model hash": the first 10 hex digits of the file's SHA-256."""
    return sha256[:10].lower()


def a1111_lora_hash(sha256: str) -> str:
    """AUTOMATIC1111's short hash in "Lora hashes" (of the addnet SHA-256) and "TI hashes" (of the
    file's SHA-256): its first 12 hex digits."""
    return sha256[:12].lower()


class HashCache:
    """A thread-safe path → (size, mtime_ns, sha256) cache stored as one JSON file."""

    def __init__(self, file: Path | None = None) -> None:
        self.file = Path(file) if file else paths.cache_dir() / "hashes.json"
        self._lock = threading.RLock()
        self._entries: dict[str, dict[str, object]] | None = None

    def _load(self) -> dict[str, dict[str, object]]:
        if self._entries is None:
            entries: dict[str, dict[str, object]] = {}
            try:
                data = json.loads(self.file.read_text("utf-8"))
                if isinstance(data, dict) and data.get("version") == _CACHE_VERSION:
                    raw = data.get("files", {})
                    if isinstance(raw, dict):
                        entries = {k: v for k, v in raw.items() if isinstance(v, dict)}
            except (OSError, ValueError):
                pass  # a missing or damaged cache is only a slower start
            self._entries = entries
        return self._entries

    def _save(self) -> None:
        entries = self._load()
        self.file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_name(f".{self.file.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps({"version": _CACHE_VERSION, "files": entries}), "utf-8")
        os.replace(tmp, self.file)

    def lookup(self, path: str | os.PathLike[str], kind: str = "") -> str | None:
        """The cached hash if the file is unchanged since it was hashed, else None."""
        p = Path(path).resolve()
        try:
            st = p.stat()
        except OSError:
            return None
        with self._lock:
            entry = self._load().get(str(p) + kind)
        if entry and entry.get("size") == st.st_size and entry.get("mtime_ns") == st.st_mtime_ns:
            sha = entry.get("sha256")
            return sha if isinstance(sha, str) else None
        return None

    def sha256(self, path: str | os.PathLike[str], kind: str = "") -> str:
        """The file's SHA-256 (kind "#addnet": its addnet hash), from the cache when size and mtime still match."""
        p = Path(path).resolve()
        cached = self.lookup(p, kind)
        if cached:
            return cached
        try:
            st = p.stat()
        except OSError as exc:
            raise StudioError(f"cannot hash {p}: {exc.strerror or exc}") from None
        digest = addnet_sha256_file(p) if kind == ADDNET else sha256_file(p)
        with self._lock:
            self._load()[str(p) + kind] = {
                "size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
                "sha256": digest,
            }
            with contextlib.suppress(OSError):  # caching is an optimisation; the hash itself is right
                self._save()
        return digest


_default_cache: HashCache | None = None
_default_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None


def default_cache() -> HashCache:
    """The process-wide cache (re-created if STUDIO_HOME changed, as tests do)."""
    global _default_cache
    with _default_lock:
        want = paths.cache_dir() / "hashes.json"
        if _default_cache is None or _default_cache.file != want:
            _default_cache = HashCache(want)
        return _default_cache


def file_sha256(path: str | os.PathLike[str], cache: HashCache | None = None) -> str:
    """SHA-256 of a model/LoRA/ControlNet file, cached by path + size + mtime."""
    return (cache or default_cache()).sha256(path)


def addnet_sha256(path: str | os.PathLike[str], cache: HashCache | None = None) -> str:
    """The addnet SHA-256 of a safetensors file (see `addnet_sha256_file`), cached like `file_sha256`."""
    return (cache or default_cache()).sha256(path, ADDNET)


def cached_sha256(path: str | os.PathLike[str], cache: HashCache | None = None) -> str | None:
    """The cached hash without computing anything (None when not known yet)."""
    return (cache or default_cache()).lookup(path)


def hash_in_background(
    files: Iterable[str | os.PathLike[str]],
    on_done: Callable[[Path, str], None] | None = None,
    cache: HashCache | None = None,
) -> Future[dict[str, str]]:
    """Hash files on one background thread; the future's result maps path → sha256.

    `on_done(path, sha)` is called (on the worker thread) after each file. Files that cannot be
    read are left out of the result.
    """
    global _executor
    with _default_lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="studio-hash")
    todo = [Path(f) for f in files]
    the_cache = cache or default_cache()

    def work() -> dict[str, str]:
        out: dict[str, str] = {}
        for f in todo:
            try:
                sha = the_cache.sha256(f)
            except StudioError:
                continue
            out[str(f)] = sha
            if on_done is not None:
                on_done(f, sha)
        return out

    return _executor.submit(work)
