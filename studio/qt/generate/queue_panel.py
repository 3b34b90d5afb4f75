"""The Queue panel: the running job and the waiting ones; reorder, remove, cancel one, cancel all."""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QListWidget, QListWidgetItem, QToolButton, QVBoxLayout, QWidget

from studio.core import samplers
from studio.qt.generate.engine_worker import EngineBridge, Job


def job_text(job: Job, number: int | None, progress: str = "") -> str:
    r = job.request
    prompt = r.prompt or "(no prompt)"
    if len(prompt) > 44:
        prompt = prompt[:43] + "…"
    head = f"#{number}  " if number else ""
    state = "▶ " + (progress or "running") if job.state == "running" else "waiting"
    extra = f"  ·  branch @ {r.branch.step}" if r.branch else ""
    sampler = samplers.label(r.scheduler, r.schedule_type)
    return f"{head}{prompt}\n{r.width}×{r.height} · {r.steps} steps · {sampler} · seed {r.seed}{extra}  —  {state}"


class QueuePanel(QWidget):
    jobSelected = Signal(str)

    def __init__(
        self, bridge: EngineBridge, numbers: dict[str, int] | None = None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("QueuePanel")
        self.bridge = bridge
        self.numbers = numbers if numbers is not None else {}
        self.progress_text = ""
        self.list = QListWidget(objectName="QueueList")
        self.list.setToolTip("Requests run top to bottom. Select one to move, remove or cancel it.")
        self.list.setAlternatingRowColors(True)
        self.list.setWordWrap(True)
        self.empty = QLabel("Nothing queued. Ctrl+Enter adds the Prompt panel's request.", objectName="Hint")
        self.empty.setWordWrap(True)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)

        def button(text: str, tip: str, slot) -> QToolButton:
            b = QToolButton(text=text, toolTip=tip)
            b.clicked.connect(slot)
            return b

        self.up = button("▲", "Run the selected request earlier.", lambda: self._move(-1))
        self.down = button("▼", "Run the selected request later.", lambda: self._move(+1))
        self.cancel_one = button(
            "Cancel", "Cancel the selected request (the running one stops within one step).", self._cancel_selected
        )
        self.cancel_all = button("Cancel all", "Cancel the running request and empty the queue.", bridge.cancel_all)
        self.cancel_all.setObjectName("CancelAll")
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        for b in (self.up, self.down):
            row.addWidget(b)
        row.addStretch(1)
        row.addWidget(self.cancel_one)
        row.addWidget(self.cancel_all)

        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 8, 8, 8)
        lay.addWidget(self.empty, 1)
        lay.addWidget(self.list, 1)
        lay.addLayout(row)
        bridge.queueChanged.connect(self.refresh)
        self.list.currentRowChanged.connect(self._update_buttons)
        self.refresh()

    def refresh(self) -> None:
        selected = self.selected_job_id()
        self.list.clear()
        for job in self.bridge.jobs():
            item = QListWidgetItem(
                job_text(job, self.numbers.get(job.job_id), self.progress_text if job.state == "running" else "")
            )
            item.setData(Qt.ItemDataRole.UserRole, job.job_id)
            if job.state == "running":
                f = item.font()
                f.setBold(True)
                item.setFont(f)
            self.list.addItem(item)
            if job.job_id == selected:
                self.list.setCurrentItem(item)
        self.empty.setVisible(self.list.count() == 0)
        self.list.setVisible(self.list.count() > 0)
        self._update_buttons()

    def set_progress(self, text: str) -> None:
        """Progress of the running job, shown on its row (cheap: one item's text)."""
        self.progress_text = text
        cur = self.bridge.current
        if cur is None or self.list.count() == 0:
            return
        item = self.list.item(0)
        if item.data(Qt.ItemDataRole.UserRole) == cur.job_id:
            item.setText(job_text(cur, self.numbers.get(cur.job_id), text))

    def selected_job_id(self) -> str | None:
        item = self.list.currentItem()
        return item.data(Qt.ItemDataRole.UserRole) if item is not None else None

    def _move(self, delta: int) -> None:
        jid = self.selected_job_id()
        if jid:
            self.bridge.move(jid, delta)

    def _cancel_selected(self) -> None:
        jid = self.selected_job_id()
        if jid:
            self.bridge.cancel(jid)

    def _update_buttons(self, *_: object) -> None:
        jid = self.selected_job_id()
        pending = [j.job_id for j in self.bridge.pending]
        self.up.setEnabled(jid in pending and pending.index(jid) > 0)
        self.down.setEnabled(jid in pending and pending.index(jid) < len(pending) - 1)
        self.cancel_one.setEnabled(jid is not None)
        self.cancel_all.setEnabled(self.bridge.busy)
