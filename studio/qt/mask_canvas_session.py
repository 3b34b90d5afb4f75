"""Autosave for the mask canvas: image, mask and undo history written atomically to a folder
(by default `data_dir()/session`), debounced after edits and on a clean close; `restore()` brings
a canvas back after a crash."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PySide6.QtCore import QCoreApplication, QObject, QTimer, Signal

from studio.core import paths
from studio.core.metadata.png import atomic_write
from studio.qt.mask_canvas_ops import BadInput, encode_png, read_image, read_mask

class CanvasSession(QObject):
    """Autosaves a canvas (image, mask, undo history and position) to a folder, debounced after
    edits and at `close()`, with atomic writes. A session not closed cleanly (a crash) can be
    brought back with `restore()`."""

    saved = Signal()

    def __init__(self, canvas, folder: str | Path | None = None, delay_ms: int = 1500,
                 history_cap_mb: int = 64) -> None:
        super().__init__(canvas)
        self.canvas = canvas
        self.folder = Path(folder) if folder else paths.data_dir() / "session"
        self.history_cap = history_cap_mb << 20
        self._timer = QTimer(self, singleShot=True, interval=int(delay_ms))
        self._timer.timeout.connect(self.save_now)
        self._dirty = {"image": True, "mask": True}
        canvas.imageChanged.connect(lambda: self._touch("image"))
        canvas.maskChanged.connect(lambda: self._touch("mask"))
        canvas.historyChanged.connect(lambda: self._touch(None))
        app = QCoreApplication.instance()
        if app is not None:  # quitting the application is a clean close
            app.aboutToQuit.connect(self.close)

    def _touch(self, layer: str | None) -> None:
        if layer:
            self._dirty[layer] = True
        self._timer.start()

    def pending(self) -> bool:
        return self._timer.isActive()

    def state(self) -> dict | None:
        try:
            return json.loads((self.folder / "state.json").read_text())
        except (OSError, ValueError):
            return None

    def crashed(self) -> bool:
        """True when a saved session exists that was not closed cleanly."""
        st = self.state()
        return bool(st) and not st.get("clean", False)

    def save_now(self, clean: bool = False) -> None:
        self._timer.stop()
        img, mask, expansion, hist = self.canvas._session_state()
        for layer, arr in (("image", img), ("mask", mask)):
            if self._dirty[layer] or not (self.folder / f"{layer}.png").exists():
                atomic_write(self.folder / f"{layer}.png", encode_png(arr))
                self._dirty[layer] = False
        keep_history = hist.nbytes <= self.history_cap
        if keep_history:
            buf = io.BytesIO()
            np.savez(buf, **hist.to_arrays())
            atomic_write(self.folder / "history.npz", buf.getvalue())
        state = {"version": 1, "clean": clean, "size": [img.shape[1], img.shape[0]], "expansion": expansion,
                 "history_index": hist.index, "history_len": len(hist), "history_saved": keep_history}
        atomic_write(self.folder / "state.json", json.dumps(state, indent=1).encode())
        self.saved.emit()

    def close(self) -> None:
        """A clean close: save everything and mark the session as closed normally."""
        self.save_now(clean=True)

    def restore(self) -> bool:
        """Load the saved session into the canvas (image, mask, undo history). False if none/unreadable."""
        st = self.state()
        if not st:
            return False
        c = self.canvas
        try:
            img = read_image(self.folder / "image.png")
            mask = read_mask(self.folder / "mask.png", (img.shape[1], img.shape[0]))
        except BadInput as exc:
            c.problem.emit(f"The autosaved canvas could not be restored: {exc}")
            return False
        c.history.clear()
        if st.get("history_saved") and (self.folder / "history.npz").exists():
            try:
                with np.load(self.folder / "history.npz") as z:
                    c.history.load_arrays(z)
            except (OSError, ValueError, KeyError):
                c.history.clear()
        c._restore_session(img, mask, list(st.get("expansion", [0, 0, 0, 0])))
        self._dirty = {"image": False, "mask": False}
        self._timer.stop()
        return True
