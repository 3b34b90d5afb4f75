"""Uncaught errors in the window: a dialog with what happened and a report to copy into a bug.

`CrashReporter` listens to `studio.core.logs` (every uncaught exception, on any thread, is already
in the log by then) and opens a `CrashDialog` on the GUI thread: the error, "Copy report" (versions,
device, the error and the last lines of the log — the prompts hidden unless "Include my prompts" is
ticked) and "Open log folder". One dialog at a time: more errors while it is open are counted in it.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Iterable
from typing import Any

from PySide6.QtCore import QObject, Qt, QUrl, Signal, Slot
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import (
    QCheckBox,
    QDialog,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from studio.core import logs


def open_log_folder() -> bool:
    """Show the folder with studio.log in the system's file manager."""
    folder = logs.log_dir()
    folder.mkdir(parents=True, exist_ok=True)
    return QDesktopServices.openUrl(QUrl.fromLocalFile(str(folder)))


class CrashDialog(QDialog):
    def __init__(
        self,
        exc_info: logs.ExcInfo,
        thread: str = "",
        device: dict[str, Any] | None = None,
        prompts: Iterable[str] = (),
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("CrashDialog")
        self.setWindowTitle("Something went wrong")
        self.exc_info, self.device, self.prompts = exc_info, device, list(prompts)
        self.count = 1
        what = "".join(traceback.format_exception_only(exc_info[0], exc_info[1])).strip()
        where = f" (in {thread})" if thread and thread != "MainThread" else ""
        self.summary = QLabel(
            f"<b>{_html(what)}</b>{_html(where)}<br>The studio is still running and nothing you made is lost. "
            f"The details are in the log ({_html(str(logs.log_file()))}); the report below helps a bug report."
        )
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.include_prompts = QCheckBox("Include my prompts in the report")
        self.include_prompts.toggled.connect(self._fill)
        self.report = QPlainTextEdit(readOnly=True, objectName="CrashReport")
        self.report.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.copy = QPushButton("Copy report", objectName="CopyReport")
        self.copy.clicked.connect(self.copy_report)
        self.folder = QPushButton("Open log folder")
        self.folder.clicked.connect(open_log_folder)
        close = QPushButton("Close")
        close.clicked.connect(self.accept)
        self.copied = QLabel()
        row = QHBoxLayout()
        for w in (self.copy, self.folder, self.copied):
            row.addWidget(w)
        row.addStretch(1)
        row.addWidget(close)
        lay = QVBoxLayout(self)
        lay.addWidget(self.summary)
        lay.addWidget(self.include_prompts)
        lay.addWidget(self.report, 1)
        lay.addLayout(row)
        self.resize(760, 520)
        self._fill()

    def _fill(self) -> None:
        self.report.setPlainText(
            logs.crash_report(
                self.exc_info,
                device=self.device,
                prompts=self.prompts,
                include_prompts=self.include_prompts.isChecked(),
            )
        )

    def copy_report(self) -> str:
        text = self.report.toPlainText()
        QGuiApplication.clipboard().setText(text)
        self.copied.setText("Copied.")
        return text

    def another(self) -> None:
        self.count += 1
        self.setWindowTitle(f"Something went wrong ({self.count} errors)")


class CrashReporter(QObject):
    """Turns uncaught exceptions (any thread) into one CrashDialog on the GUI thread."""

    _crashed = Signal(object, str)

    def __init__(
        self,
        parent: QWidget,
        prompts: Callable[[], Iterable[str]] = lambda: (),
        device: Callable[[], dict[str, Any] | None] = lambda: None,
    ) -> None:
        super().__init__(parent)
        self.window, self._prompts, self._device = parent, prompts, device
        self.dialog: CrashDialog | None = None
        self._crashed.connect(self._show, Qt.ConnectionType.QueuedConnection)
        logs.add_listener(self.report)

    def report(self, exc_info: logs.ExcInfo, thread: str) -> None:
        """From `studio.core.logs` (any thread)."""
        self._crashed.emit(exc_info, thread)

    @Slot(object, str)
    def _show(self, exc_info: logs.ExcInfo, thread: str) -> None:
        if self.dialog is not None and self.dialog.isVisible():
            self.dialog.another()
            return
        try:
            prompts, device = list(self._prompts()), self._device()
        except Exception:  # noqa: BLE001 — the window may be half gone: report without them
            prompts, device = [], None
        self.dialog = CrashDialog(exc_info, thread, device, prompts, self.window)
        self.dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.dialog.finished.connect(lambda _r: setattr(self, "dialog", None))
        self.dialog.show()

    def close(self) -> None:
        logs.remove_listener(self.report)


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
