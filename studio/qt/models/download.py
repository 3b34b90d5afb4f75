"""Hub downloads in the window: `Downloads` runs one download at a time on a background thread
(`studio.core.download`) and keeps its state; it belongs to the window (`ModelSetup`), not to the
Models dialog, so closing the dialog does not stop it. Two views show it: the dialog's Download tab
(`DownloadPanel`: a curated starter list or any Hub repository id, a progress bar and Stop; starting
again resumes) and, while the dialog is closed, the main window's status bar (`DownloadStatus`)."""

from __future__ import annotations

import time

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from studio.core.download import STARTERS
from studio.qt.common.background import Task
from studio.qt.models.table import fmt_size

REPORT_EVERY_S = 0.1


class Downloads(QObject):
    """The window's Hub download: at most one at a time, with its progress, outcome and Stop."""

    changed = Signal()  # anything below changed
    downloaded = Signal(str)  # the model's folder in the library
    failed = Signal(str, str)  # message, hint (not sent for a stop)

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.task: Task | None = None
        self.repo = ""
        self.phase = "idle"  # idle | planning | downloading | done | stopped | failed
        self.done_bytes = self.total_bytes = self.n_files = 0
        self.current_file = ""
        self.path = ""  # where the finished model is
        self.message = self.hint = ""  # why it failed

    @property
    def busy(self) -> bool:
        return self.task is not None  # until its result has arrived here

    @property
    def stopping(self) -> bool:
        return self.task is not None and self.task.cancel_event.is_set()

    def fraction(self) -> float | None:
        """How much is done, 0..1; None while the size is not known yet."""
        if self.phase != "downloading":
            return 1.0 if self.phase == "done" else None
        return self.done_bytes / self.total_bytes if self.total_bytes else 1.0

    def start(self, repo: str, fp16: bool) -> bool:
        if self.busy:
            return False

        def job(report, cancel):
            from studio.core.download import download, plan_download

            plan = plan_download(repo, fp16=fp16)
            report(("plan", plan.total_bytes, len(plan.files)))
            last = [0.0]

            def progress(done: int, total: int, name: str) -> None:
                now = time.monotonic()
                if now - last[0] >= REPORT_EVERY_S or done >= total:
                    last[0] = now
                    report(("bytes", done, total, name))

            return str(download(plan, on_progress=progress, cancel=cancel))

        self.repo, self.phase = repo, "planning"
        self.done_bytes = self.total_bytes = self.n_files = 0
        self.current_file = self.path = self.message = self.hint = ""
        self.task = Task(job, name="studio-download")
        self.task.progressed.connect(self._progress)
        self.task.succeeded.connect(self._done)
        self.task.failed.connect(self._failed)
        self.task.start()
        self.changed.emit()
        return True

    def stop(self) -> None:
        """Stop now; files already complete are kept and the next start resumes from there."""
        if self.busy and self.task is not None:
            self.task.cancel()
            self.changed.emit()

    def shutdown(self, timeout_ms: int = 10_000) -> bool:
        """Stop a running download and wait for its thread (the window is closing)."""
        task = self.task
        if task is None:
            return True
        task.cancel()
        return task.wait(timeout_ms)

    def _progress(self, msg: tuple) -> None:
        if msg[0] == "plan":
            _, self.total_bytes, self.n_files = msg
            self.phase = "downloading"
        elif msg[0] == "bytes":
            _, self.done_bytes, self.total_bytes, name = msg
            self.phase = "downloading"
            self.current_file = name or self.current_file
        self.changed.emit()

    def _done(self, path: str) -> None:
        self.task, self.phase, self.path = None, "done", path
        self.changed.emit()
        self.downloaded.emit(path)

    def _failed(self, message: str, hint: str) -> None:
        stopped = self.stopping
        self.task = None
        self.phase = "stopped" if stopped else "failed"
        self.message, self.hint = ("", "") if stopped else (message, hint)
        self.changed.emit()
        if not stopped:
            self.failed.emit(message, hint)

    def describe(self) -> str:
        """One line on what is going on, for a status label."""
        if self.stopping:
            return "Stopping…"
        if self.phase == "planning":
            return f"Asking the Hub what {self.repo} holds…"
        if self.phase == "downloading":
            what = self.current_file or f"{self.n_files} files, {fmt_size(self.total_bytes)}"
            return f"Downloading {self.repo}: {what}"
        if self.phase == "done":
            return f"Downloaded into {self.path}"
        if self.phase == "stopped":
            return "Stopped. Nothing half-written is in your library; Download again resumes where it stopped."
        if self.phase == "failed":
            return f"{self.message} {self.hint}".strip()
        return ""


def show_progress(bar: QProgressBar, downloads: Downloads) -> None:
    """Draw `downloads`' progress on `bar` (busy while the Hub is asked what to fetch)."""
    phase = downloads.phase
    if phase == "planning":
        bar.setRange(0, 0)
        bar.setFormat("")
    elif phase == "downloading":
        bar.setRange(0, 1000)
        bar.setValue(int(1000 * (downloads.fraction() or 0.0)))
        bar.setFormat(f"{fmt_size(downloads.done_bytes)} of {fmt_size(downloads.total_bytes)}")
    else:
        bar.setRange(0, 1)
        bar.setValue(1 if phase == "done" else 0)
        bar.setFormat({"done": "Done", "stopped": "Stopped", "failed": "Failed"}.get(phase, ""))


class DownloadStatus(QWidget):
    """The running download in the main window's status bar, while the Models dialog is closed."""

    openRequested = Signal()  # "Show": the dialog's Download tab

    def __init__(self, downloads: Downloads, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("StatusDownload")
        self.downloads = downloads
        self.dialog_shown = False
        self.label = QLabel("", objectName="StatusDownloadLabel")
        self.bar = QProgressBar(objectName="StatusDownloadProgress", textVisible=True)
        self.bar.setFixedWidth(180)
        self.show_button = QToolButton(text="Show", objectName="StatusDownloadShow")
        self.show_button.setToolTip("Open the Models dialog's Download tab (Stop is there).")
        self.show_button.clicked.connect(self.openRequested)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 6, 0)
        lay.setSpacing(6)
        lay.addWidget(self.label)
        lay.addWidget(self.bar)
        lay.addWidget(self.show_button)
        downloads.changed.connect(self.sync)
        self.sync()

    def set_dialog_shown(self, shown: bool) -> None:
        self.dialog_shown = shown
        self.sync()

    def sync(self) -> None:
        d = self.downloads
        self.setVisible(d.busy and not self.dialog_shown)
        if not d.busy:
            return
        self.label.setText("Stopping download…" if d.stopping else f"Downloading {d.repo}")
        self.setToolTip(d.describe())
        show_progress(self.bar, d)


class DownloadPanel(QWidget):
    repo: QLineEdit  # made in __init__ after the list that fills it
    """The Models dialog's Download tab: a view of the window's `Downloads`, which goes on when the
    dialog closes and shows here again when it is reopened."""

    def __init__(self, downloads: Downloads, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("DownloadPanel")
        self.downloads = downloads
        intro = QLabel(
            "Download a model from the Hugging Face Hub into your models library. Only what a model "
            "needs is fetched (configs, tokenizer, .safetensors weights — never pickles); free disk "
            "space is checked first. Closing this window does not stop a download: the status bar "
            "shows its progress.",
            wordWrap=True,
            objectName="Hint",
        )
        self.starters = QListWidget(objectName="Starters")
        self.starters.setAccessibleName("Starter models")
        for title, repo in STARTERS.items():
            item = QListWidgetItem(f"{title}    {repo}")
            item.setData(Qt.ItemDataRole.UserRole, repo)
            item.setToolTip(f"https://huggingface.co/{repo}")
            self.starters.addItem(item)
        self.starters.currentItemChanged.connect(
            lambda item, _old: self.repo.setText(item.data(Qt.ItemDataRole.UserRole)) if item is not None else None
        )
        self.starters.itemDoubleClicked.connect(lambda _item: self.start())
        self.repo = QLineEdit(placeholderText="owner/name, e.g. stabilityai/sd-turbo", objectName="RepoId")
        self.repo.returnPressed.connect(self.start)
        self.fp16 = QCheckBox("Half-precision (fp16) weights when the repository has them")
        self.fp16.setToolTip("Half the download and disk space; what GPUs run anyway. The CPU runs fp32.")
        self.start_button = QPushButton("Download", objectName="StartDownload")
        self.start_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop", objectName="StopDownload", enabled=False)
        self.stop_button.setToolTip("Stop now; files already complete are kept, and Download resumes from there.")
        self.stop_button.clicked.connect(self.stop)
        self.bar = QProgressBar(objectName="DownloadProgress", textVisible=True)
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.bar.setFormat("")
        self.status = QLabel("", wordWrap=True, objectName="DownloadStatus")
        self.status.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)

        lay = QVBoxLayout(self)
        lay.addWidget(intro)
        lay.addWidget(QLabel("Starter models"))
        lay.addWidget(self.starters, 1)
        row = QHBoxLayout()
        row.addWidget(QLabel("Repository"))
        row.addWidget(self.repo, 1)
        lay.addLayout(row)
        lay.addWidget(self.fp16)
        row = QHBoxLayout()
        row.addWidget(self.bar, 1)
        row.addWidget(self.start_button)
        row.addWidget(self.stop_button)
        lay.addLayout(row)
        lay.addWidget(self.status)
        downloads.changed.connect(self.sync)
        self.sync()

    @property
    def busy(self) -> bool:
        return self.downloads.busy

    def start(self) -> None:
        repo = self.repo.text().strip()
        if self.busy:
            return
        if not repo or "/" not in repo:
            self._say("Choose a starter model or type a repository id (owner/name).", error=True)
            return
        self.downloads.start(repo, self.fp16.isChecked())

    def stop(self) -> None:
        self.downloads.stop()

    def sync(self) -> None:
        """Show the download's state (also what happened while the dialog was closed)."""
        d = self.downloads
        self.start_button.setEnabled(not d.busy)
        self.stop_button.setEnabled(d.busy and not d.stopping)
        show_progress(self.bar, d)
        if d.phase != "idle":
            self._say(d.describe(), error=d.phase == "failed" and not d.busy)

    def showEvent(self, event) -> None:  # noqa: N802 — reopened during a download: say which one runs
        super().showEvent(event)
        if self.downloads.busy:
            self.repo.setText(self.downloads.repo)
        self.sync()

    def _say(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setProperty("kind", "error" if error else "")
        self.status.style().unpolish(self.status)
        self.status.style().polish(self.status)
