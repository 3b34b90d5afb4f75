"""The real CLIP BPE vocabulary, read from the `open-clip-torch` wheel, as a transformers tokenizer.

Nothing is downloaded: the wheel ships `open_clip/bpe_simple_vocab_16e6.txt.gz`. We locate it
without importing `open_clip` (which would import torchvision) and build the 49,408-token
vocabulary the way CLIP defines it: 256 byte symbols, the same with an end-of-word marker, the
48,894 merges, then the two special tokens.
"""

from __future__ import annotations

import functools
import gzip
import importlib.metadata
import importlib.util
from pathlib import Path

from studio.core.errors import StudioError

VOCAB_FILE = "bpe_simple_vocab_16e6.txt.gz"
N_MERGES = 49152 - 256 - 2
BOS, EOS = "<|startoftext|>", "<|endoftext|>"


def vocab_path() -> Path:
    """Where the CLIP BPE file lies (inside the installed open-clip-torch wheel, or bundled)."""
    here = Path(__file__).resolve().parent.parent.parent / "resources" / VOCAB_FILE
    if here.is_file():  # a packaged build copies it next to the app
        return here
    spec = importlib.util.find_spec("open_clip")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            p = Path(loc) / VOCAB_FILE
            if p.is_file():
                return p
    try:
        for f in importlib.metadata.files("open-clip-torch") or ():
            if f.name == VOCAB_FILE:
                return Path(f.locate())
    except importlib.metadata.PackageNotFoundError:
        pass
    raise StudioError(
        "The CLIP vocabulary was not found.",
        "Install it with: pip install --no-deps open-clip-torch",
    )


def _byte_symbols() -> list[str]:
    """GPT-2/CLIP's reversible byte -> printable character table, in id order."""
    printable = (
        list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return [chr(c) for c in chars]


@functools.lru_cache(maxsize=1)
def vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    lines = gzip.decompress(vocab_path().read_bytes()).decode("utf-8").split("\n")
    merges = [tuple(line.split()) for line in lines[1 : N_MERGES + 1]]
    symbols = _byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols] + ["".join(m) for m in merges] + [BOS, EOS]
    return {t: i for i, t in enumerate(tokens)}, [(a, b) for a, b in merges]


def build_clip_tokenizer(model_max_length: int = 77, pad_token: str = EOS):
    """A `transformers.CLIPTokenizer` with the real CLIP vocabulary.

    SD 1.x pads with `<|endoftext|>`; SD 2.x and SDXL's second encoder pad with `!` (id 0).
    """
    from transformers import CLIPTokenizer

    vocab, merges = vocab_and_merges()
    return CLIPTokenizer(
        vocab=dict(vocab),
        merges=list(merges),
        bos_token=BOS,
        eos_token=EOS,
        unk_token=EOS,
        pad_token=pad_token,
        model_max_length=model_max_length,
    )
