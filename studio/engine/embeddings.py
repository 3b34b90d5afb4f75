"""Textual-inversion embeddings for a run: which files a prompt names, their vectors, their hashes.

studio.core.embeddings finds the files and reads their headers; here the named ones are loaded
(safetensors only; tensors kept in a small cache keyed by path, size and modification time) and
handed to the prompt encoder as {name: {tensor name: vectors}}.
"""

from __future__ import annotations

from pathlib import Path

import torch

from studio.core import embeddings as core_embeddings
from studio.core.embeddings import EmbeddingFile


class EmbeddingLibrary:
    """The embeddings in the search folders, re-read when asked for (headers only) and loaded on use."""

    def __init__(self, folders: list[Path] | None = None) -> None:
        self.folders = folders  # None: studio.core.embeddings.folders() at each look-up
        self._tensors: dict[tuple[str, int, int], dict[str, torch.Tensor]] = {}

    def available(self) -> dict[str, EmbeddingFile]:
        found, _ = core_embeddings.find(self.folders)
        return found

    def named_in(self, *texts: str) -> dict[str, EmbeddingFile]:
        """The embeddings whose names appear in the texts (CLIP reads without case; the prompt encoder
        then places only those whose tokens it finds, as A1111 does)."""
        found = self.available()
        joined = " ".join(texts).lower()
        return {n: e for n, e in found.items() if n.lower() in joined}

    def load(self, files: dict[str, EmbeddingFile]) -> dict[str, dict[str, torch.Tensor]]:
        from safetensors.torch import load_file

        out: dict[str, dict[str, torch.Tensor]] = {}
        for name, e in files.items():
            st = e.path.stat()
            key = (str(e.path), st.st_size, st.st_mtime_ns)
            if key not in self._tensors:
                tensors = load_file(str(e.path))
                self._tensors[key] = {k: tensors[k].float() for k in e.tensors}
            out[name] = self._tensors[key]
        return out


def hashes(files: dict[str, EmbeddingFile], used: list[str]) -> dict[str, str]:
    """{name: SHA-256 of the file} of the embeddings a run used (A1111's "TI hashes" are its first 12)."""
    from studio.core.hashing import file_sha256

    return {name: file_sha256(files[name].path) for name in used if name in files}
