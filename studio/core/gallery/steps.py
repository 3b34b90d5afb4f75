"""Steps that last: a run's step previews and the latents to branch from, kept beside the gallery.

Layout, in the library folder (one folder per run; a run's images are the gallery rows whose
`run_id` is that run's):

    .steps/<run_id>/manifest.json       the run: recipe, steps made, and per step its files' hashes
    .steps/<run_id>/p0005.png           step 5's preview (lossless: the same pixels as in the session)
    .steps/<run_id>/latents/l0005.npy   step 5's latent (float32, variance-preserving form)

Previews are kept as long as an image of the run is in the gallery (they are small). Latents — what
"Branch from here" and a resumed queue job start from — are kept for the newest runs within a
budget (`Budget`: a number of images and a size; the settings hold the user's), the oldest runs'
dropped first. Every file is written atomically (studio.core.files); the manifest last, so a file
the manifest names is complete. Trashing or deleting the last image of a run removes its folder;
`check()` (run by `studio gallery check`) finds missing or changed files and runs no image owns,
and with `repair` forgets the steps whose files are bad and removes the orphan folders.

Steps are kept once the run's images are in the gallery (`save_run`, from `record_result` and the
durable queue's runner); resuming an interrupted queue job is the queue's own business
(studio.core.queue keeps its job's latest latent).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from studio.core.files import atomic_write
from studio.core.hashing import sha256_bytes
from studio.core.request import GenerationRequest

STEPS_DIR = ".steps"
MANIFEST = "manifest.json"
LATENTS = "latents"
MAX_PREVIEW_SIDE = 512  # a kept preview larger than this is scaled down (previews are meant small)
FORMAT = 1
STALE_S = 600.0  # a folder without a readable manifest younger than this may be a run starting now


class StepLike(Protocol):
    """What a step needs to be kept: a `StepPreview` or the window's `KeptStep` (read-only fields)."""

    @property
    def step(self) -> int: ...
    @property
    def total(self) -> int: ...
    @property
    def timestep(self) -> float: ...
    @property
    def image(self) -> np.ndarray | None: ...
    @property
    def latent(self) -> np.ndarray | None: ...
    @property
    def elapsed_s(self) -> float: ...


@dataclass(frozen=True)
class Budget:
    """Latents are kept for the newest runs holding at most `images` images and `bytes` bytes."""

    images: int = 200
    bytes: int = 2 * 1024**3

    @classmethod
    def from_settings(cls, settings: Any) -> Budget:
        return cls(int(settings.steps_keep_images), int(float(settings.steps_keep_gb) * 1024**3))


@dataclass
class StoredStep:
    step: int
    timestep: float = 0.0
    elapsed_s: float = 0.0
    decoder: str = ""
    preview: str = ""  # file name in the run's folder ("" when the step had no picture)
    preview_sha256: str = ""
    latent: str = ""  # path under the run's folder ("" when not kept)
    latent_sha256: str = ""
    latent_bytes: int = 0


@dataclass
class StoredRun:
    run_id: str
    folder: Path
    request: GenerationRequest
    total: int
    created_at: float
    images: int = 1  # how many images the run made (its batch)
    latents_dropped: bool = False  # the budget took them
    steps: dict[int, StoredStep] = field(default_factory=dict)

    @property
    def latent_bytes(self) -> int:
        return sum(s.latent_bytes for s in self.steps.values() if s.latent)

    def image(self, step: int) -> np.ndarray | None:
        """Step `step`'s preview pixels (None when not kept or unreadable)."""
        s = self.steps.get(step)
        if s is None or not s.preview:
            return None
        from PIL import Image

        try:
            with Image.open(self.folder / s.preview) as im:
                return np.asarray(im.convert("RGB"))
        except (OSError, ValueError):
            return None

    def latent(self, step: int) -> np.ndarray | None:
        """Step `step`'s latent (None when not kept or unreadable)."""
        s = self.steps.get(step)
        if s is None or not s.latent:
            return None
        try:
            out: np.ndarray = np.load(self.folder / s.latent, allow_pickle=False)
            return out
        except (OSError, ValueError):
            return None

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "run_id": self.run_id,
            "request": self.request.to_dict(),
            "total": self.total,
            "created_at": self.created_at,
            "images": self.images,
            "latents_dropped": self.latents_dropped,
            "steps": [s.__dict__ for s in sorted(self.steps.values(), key=lambda s: s.step)],
        }


@dataclass
class Usage:
    runs: int = 0
    runs_with_latents: int = 0
    images_with_latents: int = 0
    latent_bytes: int = 0
    preview_bytes: int = 0


@dataclass
class StepsReport:
    """What `StepStore.check()` found (and, with repair, did)."""

    bad_files: list[str] = field(default_factory=list)  # "<run>/<file>": missing, or not what was written
    orphan_runs: list[str] = field(default_factory=list)  # kept steps of runs no gallery image owns
    unreadable: list[str] = field(default_factory=list)  # run folders whose manifest cannot be read
    repaired: list[str] = field(default_factory=list)
    checked: int = 0  # runs checked


def _png(image: np.ndarray) -> bytes:
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    if max(im.size) > MAX_PREVIEW_SIDE:
        k = MAX_PREVIEW_SIDE / max(im.size)
        im = im.resize((max(1, round(im.width * k)), max(1, round(im.height * k))), Image.Resampling.BOX)
    buf = io.BytesIO()
    im.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _npy(latent: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(latent, dtype=np.float32), allow_pickle=False)
    return buf.getvalue()


class StepStore:
    """The `.steps` folder of one library. Cheap to make; every method opens what it needs."""

    def __init__(self, library_root: str | os.PathLike[str]) -> None:
        self.root = Path(library_root) / STEPS_DIR

    def folder(self, run_id: str) -> Path:
        if not run_id or "/" in run_id or "\\" in run_id or run_id.startswith("."):
            raise ValueError(f"not a run id: {run_id!r}")
        return self.root / run_id

    # -- writing ---------------------------------------------------------------------------------------
    def save_run(
        self,
        run_id: str,
        request: GenerationRequest,
        steps: Iterable[StepLike],
        *,
        total: int,
        images: int = 1,
        keep_latents: bool = True,
    ) -> StoredRun:
        """Keep a finished run's steps (files already kept with the same content are not written again)."""
        run = self.get(run_id) or self._new(run_id, request, total, images)
        run.total, run.images = total, images
        for s in steps:
            self._write_step(run, s, keep_latents and s.step < total)
        self._write_manifest(run)
        return run

    def _new(self, run_id: str, request: GenerationRequest, total: int, images: int) -> StoredRun:
        return StoredRun(run_id, self.folder(run_id), request, total, time.time(), images=images)

    def _write_step(self, run: StoredRun, s: StepLike, with_latent: bool) -> None:
        old = run.steps.get(s.step)
        entry = StoredStep(s.step, float(s.timestep), float(s.elapsed_s), str(getattr(s, "decoder", "") or ""))
        if s.image is not None:
            data = _png(s.image)
            entry.preview, entry.preview_sha256 = f"p{s.step:04d}.png", sha256_bytes(data)
            if old is None or old.preview_sha256 != entry.preview_sha256:
                atomic_write(run.folder / entry.preview, data)
        if with_latent and s.latent is not None and not run.latents_dropped:
            data = _npy(s.latent)
            entry.latent, entry.latent_sha256 = f"{LATENTS}/l{s.step:04d}.npy", sha256_bytes(data)
            entry.latent_bytes = len(data)
            if old is None or old.latent_sha256 != entry.latent_sha256:
                atomic_write(run.folder / entry.latent, data)
        run.steps[s.step] = entry

    def _write_manifest(self, run: StoredRun) -> None:
        atomic_write(run.folder / MANIFEST, json.dumps(run.to_json(), indent=0).encode("utf-8"))

    # -- reading ---------------------------------------------------------------------------------------
    def get(self, run_id: str) -> StoredRun | None:
        """A run's kept steps, or None (not kept, or its manifest cannot be read)."""
        try:
            folder = self.folder(run_id)
            data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
            run = StoredRun(
                run_id,
                folder,
                GenerationRequest.from_dict(data["request"]),
                int(data["total"]),
                float(data["created_at"]),
                int(data.get("images", 1)),
                bool(data.get("latents_dropped", False)),
            )
            for s in data.get("steps", []):
                step = StoredStep(**{k: v for k, v in s.items() if k in StoredStep.__dataclass_fields__})
                run.steps[step.step] = step
            return run
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        except Exception:  # noqa: BLE001 — a recipe that no longer reads (InvalidRequest): as unreadable
            return None

    def run_ids(self) -> list[str]:
        try:
            return sorted(p.name for p in self.root.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            return []

    def usage(self) -> Usage:
        u = Usage()
        for run_id in self.run_ids():
            folder = self.root / run_id
            u.runs += 1
            with contextlib.suppress(OSError):
                u.preview_bytes += sum(p.stat().st_size for p in folder.glob("p*.png"))
            if (folder / LATENTS).is_dir():
                run = self.get(run_id)
                if run is not None and run.latent_bytes:
                    u.runs_with_latents += 1
                    u.images_with_latents += run.images
                    u.latent_bytes += run.latent_bytes
        return u

    # -- removing --------------------------------------------------------------------------------------
    def remove(self, run_id: str) -> bool:
        try:
            folder = self.folder(run_id)
        except ValueError:
            return False
        if not folder.exists():
            return False
        shutil.rmtree(folder, ignore_errors=True)
        return True

    def drop_latents(self, run_id: str) -> int:
        """Forget a run's latents (its previews stay); the bytes freed."""
        run = self.get(run_id)
        if run is None:
            return 0
        freed = run.latent_bytes
        for s in run.steps.values():
            s.latent, s.latent_sha256, s.latent_bytes = "", "", 0
        run.latents_dropped = True
        self._write_manifest(run)  # first: the manifest never names a file that is gone
        shutil.rmtree(run.folder / LATENTS, ignore_errors=True)
        return freed

    def enforce(self, budget: Budget, keep: Iterable[str] = ()) -> list[str]:
        """Drop the latents of the oldest runs until the newest fit the budget; `keep`: runs never
        touched. Returns the runs whose latents were dropped, oldest first."""
        keep = set(keep)
        runs = []
        for run_id in self.run_ids():
            if run_id in keep or not (self.root / run_id / LATENTS).is_dir():
                continue
            run = self.get(run_id)
            if run is not None and run.latent_bytes:
                runs.append(run)
        runs.sort(key=lambda r: r.created_at, reverse=True)  # newest first
        images = nbytes = 0
        dropped = []
        for run in runs:
            images += run.images
            nbytes += run.latent_bytes
            if images > budget.images or nbytes > budget.bytes:
                dropped.append(run)
        for run in reversed(dropped):  # oldest first
            self.drop_latents(run.run_id)
        return [r.run_id for r in reversed(dropped)]

    # -- checking --------------------------------------------------------------------------------------
    def check(self, owned: set[str], repair: bool = False, verify_hashes: bool = True) -> StepsReport:
        """Each kept run's files against its manifest; runs no gallery image owns (`owned`: the run
        ids the gallery's images have). With `repair`, bad steps are forgotten (a bad latent: that
        step can no longer be branched from; a bad preview: it shows no picture) and orphans removed."""
        from studio.core.hashing import sha256_file

        report = StepsReport()
        for run_id in self.run_ids():
            folder = self.root / run_id
            run = self.get(run_id)
            if run is None:
                with contextlib.suppress(OSError):
                    if time.time() - folder.stat().st_mtime < STALE_S:
                        continue  # a run's first step is being written (its manifest comes last)
                report.unreadable.append(run_id)
                if repair:
                    shutil.rmtree(folder, ignore_errors=True)
                    report.repaired.append(f"removed unreadable kept steps {run_id}")
                continue
            report.checked += 1
            if run_id not in owned:
                report.orphan_runs.append(run_id)
                if repair:
                    self.remove(run_id)
                    report.repaired.append(f"removed kept steps of {run_id} (no image of that run)")
                continue
            bad_here = []
            for s in run.steps.values():
                for name, sha in ((s.preview, s.preview_sha256), (s.latent, s.latent_sha256)):
                    if not name:
                        continue
                    path = folder / name
                    if not path.is_file() or (verify_hashes and sha256_file(path) != sha):
                        bad_here.append((s, name))
                        report.bad_files.append(f"{run_id}/{name}")
            if repair and bad_here:
                for s, name in bad_here:
                    (folder / name).unlink(missing_ok=True)
                    if name == s.preview:
                        s.preview, s.preview_sha256 = "", ""
                    else:
                        s.latent, s.latent_sha256, s.latent_bytes = "", "", 0
                    report.repaired.append(f"forgot {run_id}/{name}")
                self._write_manifest(run)
        return report
