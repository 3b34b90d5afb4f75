"""Autosave for the mask canvas: image, mask and undo history written atomically to a folder
(by default `data_dir()/session`), debounced after edits and on a clean close; `restore()` brings
a canvas back after a crash."""

from __future__ import annotations

import io
import json
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PySide6.QtCore import QCoreApplication, QObject, QTimer, Signal

from studio.core import paths
from studio.core.files import atomic_write
from studio.session.mask_ops import BadInput, encode_png, read_image, read_mask


class CanvasSession(QObject):
    """Autosaves a canvas (image, mask, undo history and its position) to a folder.

    Saves are debounced after edits and run on a background thread (the GUI thread only copies the
    layers); `save_now()` and `close()` save synchronously. Every file is written atomically under a
    new name and `state.json`, written last, names the current set, so a crash at any moment leaves
    either the old or the new session, never a mix. A session not closed cleanly (`crashed()`) can be
    brought back with `restore()`.
    """

    saved = Signal()
    failed = Signal(str)
    _written = Signal(object)  # from the writer thread: None or an error message

    def __init__(
        self, canvas, folder: str | Path | None = None, delay_ms: int = 1500, history_cap_mb: int = 32
    ) -> None:
        super().__init__(canvas)
        self.canvas = canvas
        self.folder = Path(folder) if folder else paths.data_dir() / "session"
        self.history_cap = history_cap_mb << 20
        self._timer = QTimer(self, singleShot=True, interval=int(delay_ms))
        self._timer.timeout.connect(self._save_in_background)
        self._dirty = {"image": True, "mask": True, "history": True}
        self._names: dict[str, str] = {}  # files of the last written set (touched by the writer only)
        self._serial = time.time_ns()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="canvas-autosave")
        self._future: Future | None = None
        self._written.connect(self._on_written)
        canvas.imageChanged.connect(lambda: self._touch("image"))
        canvas.maskChanged.connect(lambda: self._touch("mask"))
        canvas.historyChanged.connect(lambda: self._touch("history"))
        canvas.destroyed.connect(self._pool.shutdown)
        app = QCoreApplication.instance()
        if app is not None:  # quitting the application is a clean close
            app.aboutToQuit.connect(self.close)

    def _touch(self, what: str) -> None:
        self._dirty[what] = True
        self._timer.start()

    def pending(self) -> bool:
        """True while an edit waits for the debounce timer or a background save runs."""
        return self._timer.isActive() or (self._future is not None and not self._future.done())

    def state(self) -> dict | None:
        try:
            return json.loads((self.folder / "state.json").read_text())
        except (OSError, ValueError):
            return None

    def crashed(self) -> bool:
        """True when a saved session exists that was not closed cleanly."""
        st = self.state()
        return st is not None and bool(st) and not st.get("clean", False)

    # -- saving -------------------------------------------------------------------------------------

    def _snapshot(self, clean: bool) -> dict:
        """What to write, copied on the GUI thread (history patches are immutable: no copy needed)."""
        img, mask, expansion, hist = self.canvas._session_state()
        snap = {
            "clean": clean,
            "expansion": expansion,
            "size": [img.shape[1], img.shape[0]],
            "index": hist.index,
            "len": len(hist),
        }
        for layer, arr in (("image", img), ("mask", mask)):
            snap[layer] = arr.copy() if self._dirty[layer] else None
        keep = hist.nbytes <= self.history_cap
        snap["history_saved"] = keep
        snap["history"] = hist.to_arrays() if keep and self._dirty["history"] else None
        self._dirty = {"image": False, "mask": False, "history": False}
        return snap

    def _write(self, snap: dict) -> None:
        """Writer side (background thread, or the GUI thread for save_now)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        self._serial += 1
        names = dict(self._names)
        for layer in ("image", "mask"):
            if snap[layer] is not None or layer not in names:
                if snap[layer] is None:  # first save of this session object: the caller marked it dirty
                    continue
                names[layer] = f"{layer}-{self._serial}.png"
                atomic_write(self.folder / names[layer], encode_png(snap[layer]))
        if not snap["history_saved"]:
            names.pop("history", None)
        elif snap["history"] is not None:
            buf = io.BytesIO()
            np.savez(buf, **snap["history"])
            names["history"] = f"history-{self._serial}.npz"
            atomic_write(self.folder / names["history"], buf.getvalue())
        state = {
            "version": 2,
            "clean": snap["clean"],
            "size": snap["size"],
            "expansion": snap["expansion"],
            "history_index": snap["index"],
            "history_len": snap["len"],
            "files": names,
        }
        atomic_write(self.folder / "state.json", json.dumps(state, indent=1).encode())
        self._names = names
        keep = set(names.values()) | {"state.json"}
        for f in self.folder.iterdir():  # the previous set, now unreferenced
            if (
                f.name not in keep
                and f.suffix in (".png", ".npz")
                and f.name.split("-")[0] in ("image", "mask", "history")
            ):
                f.unlink(missing_ok=True)

    def _write_reporting(self, snap: dict) -> None:
        try:
            self._write(snap)
        except Exception as exc:  # noqa: BLE001 - reported to the GUI, never raised in a worker
            self._written.emit(f"Autosave failed: {exc}")
        else:
            self._written.emit(None)

    def _on_written(self, error: str | None) -> None:
        if error:
            self._dirty = {"image": True, "mask": True, "history": True}  # try everything again next time
            self.failed.emit(error)
        else:
            self.saved.emit()

    def _save_in_background(self) -> None:
        if self._future is not None and not self._future.done():
            self._timer.start()  # the previous save is still writing: try again after the next delay
            return
        self._future = self._pool.submit(self._write_reporting, self._snapshot(clean=False))

    def save_now(self, clean: bool = False) -> None:
        """Save synchronously (after any background save finishes)."""
        self._timer.stop()
        if self._future is not None:
            self._future.result()
            self._future = None
        snap = self._snapshot(clean)
        try:
            self._write(snap)
        except OSError as exc:
            self._on_written(f"Autosave failed: {exc}")
            return
        self.saved.emit()

    def close(self) -> None:
        """A clean close: save everything and mark the session as closed normally."""
        self.save_now(clean=True)

    # -- restoring ----------------------------------------------------------------------------------

    def restore(self) -> bool:
        """Load the saved session into the canvas (image, mask, undo history). False if none/unreadable."""
        st = self.state()
        if not st:
            return False
        c, files = self.canvas, st.get("files", {})
        try:
            img = read_image(self.folder / files.get("image", "image.png"))
            mask = read_mask(self.folder / files.get("mask", "mask.png"), (img.shape[1], img.shape[0]))
        except BadInput as exc:
            c.problem.emit(f"The autosaved canvas could not be restored: {exc}")
            return False
        c.history.clear()
        if "history" in files:
            try:
                with np.load(self.folder / files["history"]) as z:
                    c.history.load_arrays(z)
            except (OSError, ValueError, KeyError):
                c.history.clear()
        c._restore_session(img, mask, list(st.get("expansion", [0, 0, 0, 0])))
        self._timer.stop()
        self._names = dict(files)
        self._dirty = {"image": False, "mask": False, "history": False}
        return True
