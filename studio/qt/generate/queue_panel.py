"""The Queue panel: the running job and the waiting ones; pause and resume, reorder, edit a waiting
job's recipe, cancel one or all, and — with the durable queue — the failed jobs (to retry) and a job
that another runner (`studio queue run`) is running. A view of the bridge, which mirrors the store."""

from __future__ import annotations

import contextlib

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QLabel, QListWidget, QListWidgetItem, QToolButton, QVBoxLayout, QWidget

from studio.core import samplers
from studio.core.errors import StudioError
from studio.core.request import GenerationRequest
from studio.qt.common.flow_layout import FlowBox
from studio.qt.generate.engine_worker import EngineBridge, Job

MIN_WIDTH = 280
ROLE_KIND = Qt.ItemDataRole.UserRole + 1  # "running" | "waiting" | "failed" | "elsewhere"


def request_text(r: GenerationRequest) -> str:
    prompt = r.prompt or "(no prompt)"
    if len(prompt) > 44:
        prompt = prompt[:43] + "…"
    extra = f"  ·  branch @ {r.branch.step}" if r.branch else ""
    sampler = samplers.label(r.scheduler, r.schedule_type)
    return f"{prompt}\n{r.width}×{r.height} · {r.steps} steps · {sampler} · seed {r.seed}{extra}"


def job_text(job: Job, number: int | None, progress: str = "") -> str:
    head = f"#{number}  " if number else ""
    state = "▶ " + (progress or "running") if job.state == "running" else "waiting"
    return f"{head}{request_text(job.request)}  —  {state}"


class QueuePanel(QWidget):
    jobSelected = Signal(str)
    editRequested = Signal(str)  # a waiting job's id: change its recipe
    retryRequested = Signal(str)  # a failed job's id: run it again

    def __init__(
        self, bridge: EngineBridge, numbers: dict[str, int] | None = None, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setObjectName("QueuePanel")
        self.bridge = bridge
        self.numbers = numbers if numbers is not None else {}
        self.progress_text = ""
        self.status_text = ""  # e.g. who else runs the queue now
        self.list = QListWidget(objectName="QueueList")
        self.list.setToolTip("Requests run top to bottom. Select one to move, edit, retry or cancel it.")
        self.list.setAlternatingRowColors(True)
        self.list.setWordWrap(True)
        self.empty = QLabel("Nothing queued. Ctrl+Enter adds the Prompt panel's request.", objectName="Hint")
        self.empty.setWordWrap(True)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.state = QLabel(objectName="QueueState")
        self.state.setWordWrap(True)

        def button(text: str, tip: str, slot, name: str = "") -> QToolButton:
            b = QToolButton(text=text, toolTip=tip, objectName=name)
            b.clicked.connect(slot)
            return b

        self.pause = button("Pause", "Finish the running request, then start no other until Resume.", self._pause)
        self.pause.setObjectName("QueuePause")
        self.up = button("▲", "Run the selected request earlier.", lambda: self._move(-1))
        self.down = button("▼", "Run the selected request later.", lambda: self._move(+1))
        self.edit = button(
            "Edit…", "Change the selected waiting request's prompt, seed, steps, CFG or size.", self._edit
        )
        self.retry = button("Retry", "Run the selected failed request again (at the end of the queue).", self._retry)
        self.cancel_one = button(
            "Cancel", "Cancel the selected request (the running one stops within one step).", self._cancel_selected
        )
        self.cancel_all = button("Cancel all", "Cancel the running request and empty the queue.", bridge.cancel_all)
        self.cancel_all.setObjectName("CancelAll")
        self.buttons = FlowBox(spacing=4, group_gap=10)
        for group in ((self.pause,), (self.up, self.down, self.edit, self.retry), (self.cancel_one, self.cancel_all)):
            g = self.buttons.flow.new_group()
            for b in group:
                self.buttons.flow.addWidget(b, g)

        # Wide enough for the buttons on two rows; narrower, the column squeezes the gallery beside it.
        self.setMinimumWidth(MIN_WIDTH)
        lay = QVBoxLayout(self)
        lay.setContentsMargins(8, 8, 8, 8)
        lay.addWidget(self.state)
        lay.addWidget(self.empty, 1)
        lay.addWidget(self.list, 1)
        lay.addWidget(self.buttons)
        bridge.queueChanged.connect(self.refresh)
        self.list.currentRowChanged.connect(self._update_buttons)
        self.refresh()

    # -- the rows ------------------------------------------------------------------------------------------
    def _stored(self, states: tuple[str, ...]) -> list:
        link = self.bridge.link
        if link is None:
            return []
        try:
            return link.store.jobs(states)
        except StudioError:
            return []

    def refresh(self) -> None:
        selected = self.selected_job_id()
        self.list.clear()
        mine = {j.job_id for j in self.bridge.jobs()}
        rows = []
        for job in self.bridge.jobs():
            progress = self.progress_text if job.state == "running" else ""
            rows.append((job.job_id, job_text(job, self.numbers.get(job.job_id), progress), job.state))
        for s in self._stored(("running",)):
            if s.id not in mine:
                rows.append(
                    (s.id, f"{self._describe(s)}  —  ▶ running in {s.runner} (pid {s.runner_pid})", "elsewhere")
                )
        for s in self._stored(("failed",)):
            rows.append((s.id, f"{self._describe(s)}  —  failed: {s.error}", "failed"))
        for job_id, text, kind in rows:
            item = QListWidgetItem(text)
            item.setData(Qt.ItemDataRole.UserRole, job_id)
            item.setData(ROLE_KIND, "waiting" if kind == "queued" else kind)
            if kind in ("running", "elsewhere"):
                f = item.font()
                f.setBold(True)
                item.setFont(f)
            if kind == "failed":
                item.setToolTip(text)
            self.list.addItem(item)
            if job_id == selected:
                self.list.setCurrentItem(item)
        self.empty.setVisible(self.list.count() == 0)
        self.list.setVisible(self.list.count() > 0)
        self._update_state()
        self._update_buttons()

    @staticmethod
    def _describe(stored) -> str:
        try:
            return request_text(stored.request)
        except StudioError:
            return "(a recipe this studio cannot read)"

    def set_status(self, text: str) -> None:
        """A line above the list: why the queue does not run now (another runner has it)."""
        self.status_text = text
        self._update_state()

    def _update_state(self) -> None:
        waiting = len(self.bridge.pending)
        if self.status_text:
            text = self.status_text
        elif self.bridge.paused:
            text = f"Paused — {waiting} waiting. Resume to run them." if waiting else "Paused."
        else:
            text = ""
        self.state.setText(text)
        self.state.setVisible(bool(text))
        self.pause.setText("Resume" if self.bridge.paused else "Pause")

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

    def selected_kind(self) -> str | None:
        item = self.list.currentItem()
        return item.data(ROLE_KIND) if item is not None else None

    # -- actions -------------------------------------------------------------------------------------------
    def _pause(self) -> None:
        self.bridge.set_paused(not self.bridge.paused)

    def _move(self, delta: int) -> None:
        jid = self.selected_job_id()
        if jid:
            self.bridge.move(jid, delta)

    def _edit(self) -> None:
        jid = self.selected_job_id()
        if jid and self.selected_kind() == "waiting":
            self.editRequested.emit(jid)

    def _retry(self) -> None:
        jid = self.selected_job_id()
        if jid and self.selected_kind() == "failed":
            self.retryRequested.emit(jid)

    def _cancel_selected(self) -> None:
        jid, kind = self.selected_job_id(), self.selected_kind()
        if not jid:
            return
        if kind in ("failed", "elsewhere") and self.bridge.link is not None:
            with contextlib.suppress(StudioError):  # a failed job is dismissed; one running elsewhere stops
                self.bridge.link.store.cancel(jid)
            self.refresh()
        else:
            self.bridge.cancel(jid)

    def _update_buttons(self, *_: object) -> None:
        jid, kind = self.selected_job_id(), self.selected_kind()
        pending = [j.job_id for j in self.bridge.pending]
        self.up.setEnabled(jid in pending and pending.index(jid) > 0)
        self.down.setEnabled(jid in pending and pending.index(jid) < len(pending) - 1)
        self.edit.setEnabled(jid in pending)
        self.retry.setEnabled(kind == "failed")
        self.retry.setVisible(self.bridge.link is not None)
        self.edit.setVisible(True)
        self.cancel_one.setEnabled(jid is not None)
        self.cancel_all.setEnabled(self.bridge.busy)
