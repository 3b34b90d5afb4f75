"""Download a model from the Hugging Face Hub (only when the user asks), with huggingface_hub.

Only the files the pipeline needs are fetched: for a pipeline repository, the components its
`model_index.json` names (not the safety checker or its feature extractor, which the studio does
not run), each with its configs, tokenizer files and one set of `.safetensors` weights — the fp16
variant when asked and present, never the non-EMA training weights, never pickles — and none of
the single-file checkpoints a repository may keep in its root (SD 1.5's root holds 12 GB of them).
A variant is stored under the plain name (`diffusion_pytorch_model.safetensors`), so the folder
loads like any diffusers folder. The free disk is
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
import re
import shutil
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.core.errors import StudioError
from studio.core.paths import cache_dir, models_dir

WANTED = ("*.json", "*.txt", "*.safetensors", "*.model", "*.md", "LICENSE*", "LICENCE*", "NOTICE*")
NEVER = ("*.bin", "*.ckpt", "*.pt", "*.pth", "*.msgpack", "*.onnx", "*.onnx_data", "*.h5", "*.ot", "*.gguf")
# Pipeline components the studio never runs (it has no safety checker): left out of a download.
SKIPPED_COMPONENTS = ("safety_checker", "feature_extractor")
_NON_EMA = re.compile(r"[._-]non[._-]?ema\b", re.IGNORECASE)
_SHARD = re.compile(r"-\d{5}-of-\d{5}\.safetensors$")

STARTERS = {
    "SD 1.5": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "SD-Turbo": "stabilityai/sd-turbo",
    "SDXL base": "stabilityai/stable-diffusion-xl-base-1.0",
    "TAESD": "madebyollin/taesd",
    "TAESDXL": "madebyollin/taesdxl",
    "TAESD3": "madebyollin/taesd3",
    "TAEF1": "madebyollin/taef1",
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
    skipped: list[tuple[str, int]] = field(default_factory=list)  # listed but not needed

    @property
    def total_bytes(self) -> int:
        return sum(size for _, size in self.files)

    @property
    def skipped_bytes(self) -> int:
        return sum(size for _, size in self.skipped)


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


def _is_weights(name: str) -> bool:
    return name.endswith(".safetensors") or fnmatch.fnmatch(Path(name).name, "*.safetensors.index*.json")


def _variant(name: str) -> str:
    base = Path(name).name
    return "fp16" if ".fp16." in base or ".fp16-" in base or base.endswith(".fp16.json") else ""


def local_name(name: str) -> str:
    """Where a chosen file goes in the model folder: a variant's weights under the plain name (shards
    keep theirs: their index names them)."""
    if _variant(name) and _is_weights(name) and not _SHARD.search(name):
        return name.replace(".fp16.safetensors", ".safetensors").replace(".index.fp16.json", ".index.json")
    return name


def choose_files(
    names_sizes: list[tuple[str, int]], fp16: bool, components: list[str] | None = None
) -> list[tuple[str, int]]:
    """What a model needs of a repository's files (see the module's docstring). `components`: the
    pipeline components model_index.json names (None: a single-component repository)."""

    def place_ok(name: str) -> bool:
        folder = name.split("/", 1)[0] if "/" in name else ""
        if components is None:
            return True
        if folder == "":
            return not _is_weights(name)  # the root's single-file checkpoints are not the pipeline
        return folder in components and folder not in SKIPPED_COMPONENTS

    keep = [
        (n, s)
        for n, s in names_sizes
        if any(fnmatch.fnmatch(Path(n).name, p) for p in WANTED)
        and not any(fnmatch.fnmatch(n, p) for p in NEVER)
        and not _NON_EMA.search(n)
        and place_ok(n)
    ]
    by_folder: dict[str, set[str]] = {}
    for n, _ in keep:
        if _is_weights(n):
            by_folder.setdefault(str(Path(n).parent), set()).add(_variant(n))
    pick = {
        folder: ("fp16" if fp16 and "fp16" in v else "" if "" in v else sorted(v)[0]) for folder, v in by_folder.items()
    }
    chosen = [(n, s) for n, s in keep if not _is_weights(n) or _variant(n) == pick[str(Path(n).parent)]]
    if components is None:  # one component in the root: only diffusers' own weights, if it has them
        names = {Path(n).name for n, _ in chosen if _is_weights(n) and "/" not in n}
        own = {n for n in names if n.startswith(("diffusion_pytorch_model", "model."))}
        if own:
            chosen = [(n, s) for n, s in chosen if not (_is_weights(n) and "/" not in n) or Path(n).name in own]
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
    revision = info.sha or "main"
    if files:
        sizes = dict(listed)
        missing = [f for f in files if f not in sizes]
        if missing:
            raise DownloadError(f"Not in “{repo_id}”: {', '.join(missing)}")
        chosen = [(f, sizes[f]) for f in files]
    else:
        components = None
        if "model_index.json" in dict(listed):
            components = pipeline_components(repo_id, revision, endpoint=endpoint, token=token)
        chosen = choose_files(listed, fp16, components)
    if not any(n.endswith(".safetensors") for n, _ in chosen):
        raise DownloadError(f"“{repo_id}” has no .safetensors weights; this studio does not download pickled models.")
    names = {n for n, _ in chosen}
    return DownloadPlan(repo_id, revision, chosen, [(n, s) for n, s in listed if n not in names])


def pipeline_components(
    repo_id: str, revision: str, *, endpoint: str | None = None, token: str | None = None
) -> list[str]:
    """The components a pipeline repository's model_index.json names (fetched into the staging folder)."""
    import json

    from huggingface_hub import hf_hub_download

    staging = cache_dir() / "downloads" / repo_id.replace("/", "--")
    try:
        path = hf_hub_download(
            repo_id,
            "model_index.json",
            revision=revision,
            local_dir=staging,
            endpoint=_endpoint(endpoint),
            token=token,
            etag_timeout=15,
        )
        index = json.loads(Path(path).read_text(encoding="utf-8"))
    except ValueError as exc:
        raise DownloadError(f"“{repo_id}” has a model_index.json that is not valid JSON: {exc}") from None
    except Exception as exc:  # noqa: BLE001
        raise _explain(exc, repo_id) from None
    if not isinstance(index, dict):
        raise DownloadError(f"“{repo_id}” has a model_index.json that is not a JSON object")
    return [
        k
        for k, v in index.items()
        if not k.startswith("_") and isinstance(v, list) and len(v) == 2 and v[0] is not None
    ]


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
        target = dest / local_name(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging / name), str(target))  # a rename on the same disk
    shutil.rmtree(staging, ignore_errors=True)
    if on_progress is not None:
        on_progress(plan.total_bytes, plan.total_bytes, "")
    return dest
