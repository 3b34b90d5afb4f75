"""Download a model from the Hugging Face Hub (only when the user asks), with huggingface_hub.

Only the files a diffusers model needs are fetched (configs, tokenizer files, `.safetensors`;
never pickles), the fp16 variant when the device runs fp16 and the repo has one. The free disk is
checked first. Files land in a staging folder under the cache and move into the models library
only when all are complete, so a cancel or a cut never leaves a partial file in the library. A
connection cut mid-file is resumed within the same attempt (huggingface_hub retries with a Range
request); after a cancel, the files already complete are kept and the next attempt fetches only
the rest (huggingface_hub 2.x discards a partial file when its download call ends). `HF_ENDPOINT` (or
`endpoint=`) points it at a mirror or at the tests' local fake hub.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.core.errors import StudioError
from studio.core.paths import cache_dir, models_dir

WANTED = ("*.json", "*.txt", "*.safetensors", "*.model", "*.md")
NEVER = ("*.bin", "*.ckpt", "*.pt", "*.pth", "*.msgpack", "*.onnx", "*.onnx_data", "*.h5", "*.ot", "*.gguf")

STARTERS = {
    "SD 1.5": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "SD-Turbo": "stabilityai/sd-turbo",
    "SDXL base": "stabilityai/stable-diffusion-xl-base-1.0",
    "TAESD": "madebyollin/taesd",
    "TAESDXL": "madebyollin/taesdxl",
    "ControlNet Canny (SD 1.5)": "lllyasviel/control_v11p_sd15_canny",
    "ControlNet HED (SD 1.5)": "lllyasviel/control_v11p_sd15_softedge",
}


class DownloadError(StudioError):
    code = "download-failed"


class DownloadCancelled(StudioError):
    code = "download-cancelled"


@dataclass
class DownloadPlan:
    repo_id: str
    revision: str
    files: list[tuple[str, int]]  # (path in repo, size in bytes)

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in self.files)


ProgressFn = Callable[[int, int, str], None] | None  # (bytes done, bytes total, current file)


def _endpoint(endpoint: str | None) -> str | None:
    return endpoint or os.environ.get("HF_ENDPOINT") or None


def _explain(exc: Exception, repo_id: str) -> StudioError:
    from huggingface_hub import errors

    if isinstance(exc, StudioError):
        return exc
    if isinstance(exc, errors.RepositoryNotFoundError):
        return DownloadError(f"No model “{repo_id}” on the Hub (or it is private).", "Check the repository id.")
    if isinstance(exc, errors.EntryNotFoundError):
        return DownloadError(f"A file asked for is not in “{repo_id}”: {exc}")
    if isinstance(exc, errors.GatedRepoError):
        return DownloadError(f"“{repo_id}” needs you to accept its licence on the Hub and log in first.")
    return DownloadError(
        f"Cannot reach the Hugging Face Hub to download “{repo_id}” ({exc.__class__.__name__}).",
        "Check the internet connection, or import a model file you already have.",
    )


def choose_files(names_sizes: list[tuple[str, int]], fp16: bool) -> list[tuple[str, int]]:
    """Configs, tokenizer files and safetensors weights; the fp16 variant when asked and present."""
    keep = [
        (n, s)
        for n, s in names_sizes
        if any(fnmatch.fnmatch(Path(n).name, p) for p in WANTED) and not any(fnmatch.fnmatch(n, p) for p in NEVER)
    ]
    weights = [n for n, _ in keep if n.endswith(".safetensors")]
    fp16_names = {n for n in weights if ".fp16." in n}
    chosen = []
    for n, s in keep:
        if n.endswith(".safetensors"):
            twin = n.replace(".safetensors", ".fp16.safetensors")
            if fp16 and twin in fp16_names:
                continue  # the fp16 twin is taken instead
            if n in fp16_names and not fp16 and n.replace(".fp16.", ".") in weights:
                continue  # the full-precision one is taken instead
        chosen.append((n, s))
    return chosen


def plan_download(
    repo_id: str,
    files: list[str] | None = None,
    *,
    fp16: bool = False,
    endpoint: str | None = None,
    token: str | None = None,
) -> DownloadPlan:
    from huggingface_hub import HfApi

    try:
        info = HfApi(endpoint=_endpoint(endpoint), token=token).model_info(repo_id, files_metadata=True, timeout=15)
    except Exception as exc:  # noqa: BLE001
        raise _explain(exc, repo_id) from None
    listed = [(s.rfilename, int(s.size or 0)) for s in info.siblings or []]
    if files:
        sizes = dict(listed)
        missing = [f for f in files if f not in sizes]
        if missing:
            raise DownloadError(f"Not in “{repo_id}”: {', '.join(missing)}")
        chosen = [(f, sizes[f]) for f in files]
    else:
        chosen = choose_files(listed, fp16)
    if not any(n.endswith(".safetensors") for n, _ in chosen):
        raise DownloadError(f"“{repo_id}” has no .safetensors weights; this studio does not download pickled models.")
    return DownloadPlan(repo_id, info.sha or "main", chosen)


def download(
    plan: DownloadPlan,
    dest: Path | None = None,
    *,
    on_progress: ProgressFn = None,
    cancel: threading.Event | None = None,
    endpoint: str | None = None,
    token: str | None = None,
) -> Path:
    """Fetch the plan's files and move them into `dest` (default: models library / repo name)."""
    from huggingface_hub import hf_hub_download
    from tqdm import tqdm

    dest = dest or models_dir() / plan.repo_id.replace("/", "--")
    dest.parent.mkdir(parents=True, exist_ok=True)
    free = shutil.disk_usage(dest.parent).free
    if free < plan.total_bytes * 1.05 + 50 * 2**20:
        raise DownloadError(
            f"Not enough disk space: {plan.total_bytes / 2**30:.2f} GB needed, {free / 2**30:.2f} GB free.",
            "Free some space or choose another models folder.",
        )
    staging = cache_dir() / "downloads" / plan.repo_id.replace("/", "--")
    staging.mkdir(parents=True, exist_ok=True)
    done_before = 0

    for name, size in plan.files:

        class _Progress(tqdm):  # type: ignore[misc]  # tqdm has no type information; huggingface_hub drives it
            def __init__(self, *a: Any, **k: Any) -> None:
                k["disable"] = True
                super().__init__(*a, **k)
                self._bytes = int(k.get("initial") or 0)
                _tick(self._bytes)

            def update(self, n: float | None = 1) -> Any:
                self._bytes += int(n or 0)
                _tick(self._bytes)
                return super().update(n)

        def _tick(in_file: int, name: str = name, base: int = done_before) -> None:
            if cancel is not None and cancel.is_set():
                raise DownloadCancelled("Download cancelled.", "Start it again to resume where it stopped.")
            if on_progress is not None:
                on_progress(base + in_file, plan.total_bytes, name)

        try:
            hf_hub_download(
                plan.repo_id,
                name,
                revision=plan.revision,
                local_dir=staging,
                endpoint=_endpoint(endpoint),
                token=token,
                etag_timeout=15,
                tqdm_class=_Progress,
            )
        except Exception as exc:  # noqa: BLE001
            raise _explain(exc, plan.repo_id) from None
        done_before += size
    for name, _ in plan.files:  # complete: move into the library, file by file (atomic renames)
        target = dest / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging / name), str(target))  # a rename on the same disk
    shutil.rmtree(staging, ignore_errors=True)
    if on_progress is not None:
        on_progress(plan.total_bytes, plan.total_bytes, "")
    return dest
