"""The Models dialog's Download tab: a curated starter list or any Hub repository id, fetched on a
background thread (`studio.core.download`) with a progress bar and Stop; starting again resumes."""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from studio.core.download import STARTERS
from studio.qt.background import Task
from studio.qt.models_table import fmt_size

REPORT_EVERY_S = 0.1


class DownloadPanel(QWidget):
    downloaded = Signal(str)  # the model's folder in the library

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("DownloadPanel")
        self.task: Task | None = None
        intro = QLabel("Download a model from the Hugging Face Hub into your models library. Only what a model "
                       "needs is fetched (configs, tokenizer, .safetensors weights — never pickles); free disk "
                       "space is checked first.", wordWrap=True, objectName="Hint")
        self.starters = QListWidget(objectName="Starters")
        for title, repo in STARTERS.items():
            item = QListWidgetItem(f"{title}    {repo}")
            item.setData(Qt.ItemDataRole.UserRole, repo)
            item.setToolTip(f"https://huggingface.co/{repo}")
            self.starters.addItem(item)
        self.starters.currentItemChanged.connect(
            lambda item, _old: item is not None and self.repo.setText(item.data(Qt.ItemDataRole.UserRole)))
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

    @property
    def busy(self) -> bool:
        return self.task is not None  # until its result has arrived here

    def start(self) -> None:
        repo = self.repo.text().strip()
        if self.busy:
            return
        if not repo or "/" not in repo:
            self._say("Choose a starter model or type a repository id (owner/name).", error=True)
            return
        fp16 = self.fp16.isChecked()

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

        self.task = Task(job, name="studio-download")
        self.task.progressed.connect(self._progress)
        self.task.succeeded.connect(self._done)
        self.task.failed.connect(self._failed)
        self.start_button.setEnabled(False)
        self.stop_button.setEnabled(True)
        self.bar.setRange(0, 0)  # busy until the plan is known
        self.bar.setFormat("")
        self._say(f"Asking the Hub what {repo} holds…")
        self.task.start()

    def stop(self) -> None:
        if self.busy:
            self.task.cancel()
            self._say("Stopping…")

    def _progress(self, msg: tuple) -> None:
        if msg[0] == "plan":
            _, total, n = msg
            self._say(f"Downloading {n} files, {fmt_size(total)}.")
            self.bar.setRange(0, 1000)
            self.bar.setValue(0)
        elif msg[0] == "bytes":
            _, done, total, name = msg
            self.bar.setRange(0, 1000)
            self.bar.setValue(int(1000 * done / total) if total else 1000)
            self.bar.setFormat(f"{fmt_size(done)} of {fmt_size(total)}")
            if name:
                self._say(f"Downloading {name}")

    def _done(self, path: str) -> None:
        self._idle()
        self.bar.setRange(0, 1)
        self.bar.setValue(1)
        self.bar.setFormat("Done")
        self._say(f"Downloaded into {path}")
        self.downloaded.emit(path)

    def _failed(self, message: str, hint: str) -> None:
        stopped = self.task is not None and self.task.cancel_event.is_set()
        self._idle()
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        if stopped:
            self.bar.setFormat("Stopped")
            self._say("Stopped. Nothing half-written is in your library; Download again resumes where it stopped.")
        else:
            self.bar.setFormat("Failed")
            self._say(f"{message} {hint}".strip(), error=True)

    def _idle(self) -> None:
        self.task = None
        self.start_button.setEnabled(True)
        self.stop_button.setEnabled(False)

    def _say(self, text: str, error: bool = False) -> None:
        self.status.setText(text)
        self.status.setProperty("kind", "error" if error else "")
        self.status.style().unpolish(self.status)
        self.status.style().polish(self.status)
