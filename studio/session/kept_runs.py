"""A gallery image's kept steps back into the session's step history (after a restart, or for an
image made by `studio generate`), so the Steps strip scrubs and branches them as any run of the
session: the same preview pixels, the same latents (studio.core.gallery.steps).

A branched run's first steps are its parent's: the parent run is brought back too (as far up as
runs are kept), so the strip shows them greyed as it does in the session.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from studio.core.gallery.steps import StepStore, StoredRun
from studio.core.results import StepPreview
from studio.session.step_history import RunRecord, StepHistory

ReadImages = Callable[[str], tuple[list[np.ndarray], list[str]]]  # run id -> (final images, gallery ids)


def restore_run(history: StepHistory, store: StepStore, run_id: str, read_images: ReadImages) -> RunRecord | None:
    """The run `run_id` in `history`: as it is when the session has it, else from the kept steps
    (None when none are kept). `read_images(run_id)` gives the run's finished pictures and their
    gallery ids, in batch order."""
    seen: set[str] = set()
    first = _restore_one(history, store, run_id, read_images)
    rec = first
    while rec is not None and rec.parent_id and rec.parent_id not in seen:  # the runs it branched from
        seen.add(rec.run_id)
        rec = _restore_one(history, store, rec.parent_id, read_images)
    return first


def _restore_one(history: StepHistory, store: StepStore, run_id: str, read_images: ReadImages) -> RunRecord | None:
    rec = history.get(run_id)
    if rec is not None:
        return rec
    kept = store.get(run_id)
    if kept is None:
        return None
    rec = history.add_run(run_id, kept.request)
    rec.status = "done"
    rec.restored = True
    for step in sorted(kept.steps):
        history.add_step(run_id, _preview(kept, step))
    images, ids = read_images(run_id)
    if images:
        history.set_images(run_id, images)
    rec.gallery_ids = ids
    return rec


def _preview(kept: StoredRun, step: int) -> StepPreview:
    s = kept.steps[step]
    return StepPreview(
        step=step,
        total=kept.total,
        timestep=s.timestep,
        image=kept.image(step),
        latent=kept.latent(step),
        mode=str(kept.request.preview.value),
        elapsed_s=s.elapsed_s,
        decoder=s.decoder,
    )
