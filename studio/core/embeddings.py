"""Textual-inversion embeddings: where they are and what each file holds (headers only, no torch).

A prompt uses an embedding by its file name, as in A1111 (`easynegative`), or ComfyUI's
`embedding:easynegative`. Files are `.safetensors` in the layouts users have:

- SD 1.x / 2.x from A1111 or kohya: one tensor `emb_params` (or `string_to_param.*`), vectors × width;
- SDXL: `clip_l` (vectors × 768) and `clip_g` (vectors × 1280), one per text encoder;
- diffusers' textual-inversion training: one tensor named after its token.

Pickled embeddings (`.pt`, `.bin`) are refused like every pickle (they can run code when loaded).

Folders searched, first name wins: `STUDIO_EMBEDDING_DIRS` (os.pathsep-separated), the models
library's `embeddings/`, and for every extra model folder its `embeddings/` (ComfyUI's `models/`
holds `embeddings/`), `models/embeddings/` and its parent's `embeddings/` (A1111 keeps `embeddings/`
beside `models/`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from studio.core.checkpoint import TensorInfo, read_header
from studio.core.errors import StudioError

SUFFIXES = (".safetensors",)
PICKLE_SUFFIXES = (".pt", ".bin", ".ckpt", ".pth")
WIDTH_ARCH = {768: "sd1", 1024: "sd2"}


class EmbeddingError(StudioError):
    code = "embedding"


@dataclass(frozen=True)
class EmbeddingFile:
    path: Path
    name: str  # what a prompt writes: the file name without its suffix
    vectors: int
    tensors: dict[str, int] = field(default_factory=dict)  # tensor name -> width of one vector
    arch: str = ""  # sd1 | sd2 | sdxl | "" (a width no known model has: tiny test models)

    def widths(self) -> set[int]:
        return set(self.tensors.values())


def embedding_keys(tensors: dict[str, TensorInfo]) -> dict[str, TensorInfo]:
    """The tensors of an embedding file that hold vectors, by the layouts above (empty: not one)."""
    if "clip_l" in tensors and "clip_g" in tensors:
        return {k: tensors[k] for k in ("clip_l", "clip_g")}
    if "emb_params" in tensors:
        return {"emb_params": tensors["emb_params"]}
    found = {k: t for k, t in tensors.items() if k.startswith("string_to_param")}
    if len(found) == 1:
        return found
    if len(tensors) == 1:
        ((k, t),) = tensors.items()
        if 1 <= len(t.shape) <= 2 and not any(p in k for p in ("lora", "weight", "bias", ".")):
            return {k: t}
    return {}


def looks_like_embedding(tensors: dict[str, TensorInfo]) -> bool:
    return bool(embedding_keys(tensors))


def read_embedding(path: str | Path) -> EmbeddingFile:
    """What an embedding file holds, from its header; EmbeddingError if it is not one we can use."""
    p = Path(path)
    if p.suffix.lower() in PICKLE_SUFFIXES:
        raise EmbeddingError(
            f"The embedding {p.name} is a pickle ({p.suffix}); pickles are refused because loading one can run code.",
            "Use the .safetensors version of the embedding.",
        )
    tensors, _ = read_header(p)
    keys = embedding_keys(tensors)
    if not keys:
        raise EmbeddingError(f"{p.name} is not a textual-inversion embedding.")
    shapes = {k: t.shape if len(t.shape) == 2 else (1, *t.shape) for k, t in keys.items()}
    counts = {s[0] for s in shapes.values()}
    if len(counts) != 1:
        raise EmbeddingError(f"The embedding {p.name} has a different number of vectors per text encoder.")
    widths = {k: s[1] for k, s in shapes.items()}
    arch = "sdxl" if set(keys) == {"clip_l", "clip_g"} else WIDTH_ARCH.get(next(iter(widths.values())), "")
    return EmbeddingFile(p, p.stem, counts.pop(), widths, arch)


def folders(model_folders: list[str] | None = None) -> list[Path]:
    """Every folder embeddings are looked for in, in order (existing or not)."""
    from studio.core import settings as settings_mod
    from studio.core.paths import models_dir

    if model_folders is None:
        model_folders = settings_mod.load().model_folders
    env = [Path(p) for p in os.environ.get("STUDIO_EMBEDDING_DIRS", "").split(os.pathsep) if p]
    out = [*env, models_dir() / "embeddings"]
    for f in map(Path, model_folders):
        out += [f / "embeddings", f / "models" / "embeddings", f.parent / "embeddings"]
    return list(dict.fromkeys(out))  # each once, in order


def find(search: list[Path] | None = None) -> tuple[dict[str, EmbeddingFile], list[str]]:
    """{name: file} of every usable embedding in the folders (first of a name wins), and one line
    for each file that was skipped and why."""
    found: dict[str, EmbeddingFile] = {}
    skipped: list[str] = []
    for folder in folders() if search is None else search:
        if not folder.is_dir():
            continue
        for p in sorted(folder.rglob("*")):
            if not p.is_file() or p.suffix.lower() not in SUFFIXES + PICKLE_SUFFIXES:
                continue
            try:
                e = read_embedding(p)
            except StudioError as exc:
                skipped.append(f"{p}: {exc.message}")
                continue
            found.setdefault(e.name, e)
    return found, skipped


def for_widths(found: dict[str, EmbeddingFile], widths: list[int]) -> dict[str, EmbeddingFile]:
    """The embeddings a model whose text encoders are `widths` wide can use (one tensor per encoder,
    or one tensor for a one-encoder model)."""
    want = sorted(widths)
    return {n: e for n, e in found.items() if sorted(e.tensors.values()) == want}
