"""`record_result`: the one call the generator and the window make after a generation finishes."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from studio.core.gallery.steps import Budget, StepLike
from studio.core.gallery.store import Gallery, GalleryItem
from studio.core.results import GenerationResult

log = logging.getLogger(__name__)


def result_info(result: GenerationResult, index: int = 0) -> dict[str, Any]:
    """What the metadata writers need from a result besides its request.

    Image `index` of a batch is recorded with the request exactly as run (so re-running it
    reproduces the whole batch bit for bit) plus its batch position and its own seed.
    """
    info: dict[str, Any] = {"batch_index": index}
    if index < len(result.seeds):
        info["image_seed"] = int(result.seeds[index])
    if result.model_hash:
        info["model_sha256"] = result.model_hash
    if result.model_name:
        info["model_name"] = result.model_name
    if result.kind:
        info["kind"] = result.kind
    if result.guidance:
        info["guidance"] = result.guidance  # FLUX dev's distilled guidance is written as such
    # what the LoRA plugin and the parameters() hooks recorded
    for key in ("lora_hashes", "lora_addnet_hashes", "plugin_parameters"):
        if key in result.plugin_metadata:
            info[key] = result.plugin_metadata[key]
    if result.worker:  # run by a cluster worker: which one, on what device (the provenance says so)
        info["worker"] = result.worker
        info["device"] = result.device
    if result.ti_hashes:
        info["ti_hashes"] = result.ti_hashes  # the textual-inversion embeddings the prompt used
    return info


def complete_model_hash(result: GenerationResult) -> None:
    """Fill in the checkpoint file's SHA-256 when the engine did not know it yet (cached by path,
    size and mtime, so a model is hashed once)."""
    model_path = Path(result.model_path)
    if not result.model_hash and result.model_path and model_path.is_file():
        from studio.core.hashing import file_sha256

        result.model_hash = file_sha256(model_path)


def out_path_for(out_path: Path, index: int, count: int) -> Path:
    """`studio generate --out` naming: the path itself for one image, else name-1, name-2, …"""
    suffix = out_path.suffix or ".png"
    if count == 1:
        return out_path.with_suffix(suffix)
    return out_path.with_name(f"{out_path.stem}-{index + 1}{suffix}")


def record_result(
    result: GenerationResult,
    *,
    library: Path | None = None,
    out_path: Path | None = None,
    parent_id: str | None = None,
    steps: Sequence[StepLike] | None = None,
) -> list[GalleryItem]:
    """Save every image of `result` once, with all provenance, into the gallery.

    - `library`: the library folder (default: `paths.library_dir()`);
    - `out_path`: also write the same file there (a batch writes name-1, name-2, … as
      `studio generate` does; a .jpg/.webp suffix exports with the same infotext, XMP and C2PA);
    - `parent_id`: the gallery item the input image came from (found from the init image's
      hash or path when not given);
    - `steps`: the run's step previews (with their latents), kept beside the gallery
      (studio.core.gallery.steps) so the steps can be scrubbed and branched from after a restart; the
      latents within the budget in the settings, the oldest runs' dropped first. Keeping them never
      fails the recording: a problem is logged and the images stay.
    Cancelled results with no images record nothing.
    """
    items: list[GalleryItem] = []
    run_id = result.run_id or uuid.uuid4().hex
    with Gallery(library) as gallery:
        for i, image in enumerate(result.images):
            items.append(
                gallery.add_image(
                    image,
                    result.request,
                    info=result_info(result, i),
                    parent_id=parent_id,
                    run_id=run_id,
                    batch_index=i,
                    out_path=out_path_for(Path(out_path), i, len(result.images)) if out_path else None,
                )
            )
        if items and steps:
            keep_steps(gallery, run_id, result, steps)
    return items


def keep_steps(gallery: Gallery, run_id: str, result: GenerationResult, steps: Sequence[StepLike]) -> None:
    from studio.core import settings

    try:
        gallery.steps.save_run(
            run_id, result.request, steps, total=result.total_steps or len(steps), images=len(result.images)
        )
        gallery.steps.enforce(Budget.from_settings(settings.load()))
    except (OSError, ValueError) as exc:
        log.warning("the steps of run %s were not kept: %s", run_id, exc)
