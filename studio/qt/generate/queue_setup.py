"""The window and the durable queue: what waits from before is offered back, the Queue panel follows the
store, and a waiting job's recipe can be edited.

- At start, jobs that wait in the library's queue (the window closed or crashed while they waited or
  ran, or `studio queue add` put them there) are offered: "3 jobs were waiting (1 was running) —
  Resume / Review / Clear". Resume runs them; Review puts them in the Queue panel, paused, to reorder,
  edit or cancel first; Clear cancels them (their recipes stay in `studio queue list --all`).
- Every few seconds the panel is brought in step with the store: jobs finished, failed or cancelled
  elsewhere leave the window's queue, jobs added by `studio queue add` join it, and when another
  runner held the library's runner lock the window takes it over once it is free.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QDoubleSpinBox,
    QFormLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPlainTextEdit,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from studio.core.errors import StudioError
from studio.core.request import MAX_SEED, GenerationRequest
from studio.core.results import GenerationResult

log = logging.getLogger(__name__)
POLL_MS = 2000


def leftover_text(waiting: int, running: int) -> str:
    jobs = f"{waiting} job{'s' if waiting != 1 else ''} {'were' if waiting != 1 else 'was'} waiting"
    return f"{jobs} ({running} was running)" if running else jobs


class QueueSetup(QObject):
    reviewRequested = Signal()  # the user chose Review: show the Queue panel
    answered = Signal(str)  # resume | review | clear

    def __init__(self, parent: QWidget, controller: Any) -> None:
        super().__init__(parent)
        self.window, self.controller = parent, controller
        self.bridge, self.panel = controller.bridge, controller.queue
        self.link = self.bridge.link
        self.prompt_box: QMessageBox | None = None
        self.leftovers: list[Any] = []
        self.timer = QTimer(self)
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.poll)
        self.panel.editRequested.connect(self.edit_job)
        self.panel.retryRequested.connect(self.retry_job)

    def start(self) -> None:
        """After the window shows: take the runner lock, offer what waits from before, follow the store."""
        if self.link is None:
            return
        self._lock()
        try:
            waiting, running = self.link.leftovers()
        except StudioError as exc:
            log.warning("queue from the last session not read: %s", exc)
            waiting, running = [], 0
        mine = [j for j in waiting if self.bridge.job(j.id) is not None]  # queued in this window already
        if mine:
            waiting = [j for j in waiting if j not in mine]
            running = sum(1 for j in waiting if j.was_running)
        if waiting:
            self.ask(waiting, running)
        self.timer.start()

    # -- the Resume prompt ---------------------------------------------------------------------------
    def ask(self, waiting: list[Any], running: int) -> QMessageBox:
        self.leftovers = waiting
        self.bridge.set_paused(True)  # nothing from before runs until the user says so
        box = QMessageBox(self.window)
        box.setObjectName("ResumeQueue")
        box.setIcon(QMessageBox.Icon.Question)
        box.setWindowTitle("Queue from the last session")
        box.setText(f"{leftover_text(len(waiting), running)} when the studio last stopped.")
        box.setInformativeText(
            "Resume runs them now. Review shows them in the Queue panel, paused, to reorder, edit or cancel "
            "first. Clear cancels them (their recipes stay in `studio queue list --all`)."
        )
        self.buttons = {
            "resume": box.addButton("Resume", QMessageBox.ButtonRole.AcceptRole),
            "review": box.addButton("Review", QMessageBox.ButtonRole.ActionRole),
            "clear": box.addButton("Clear", QMessageBox.ButtonRole.DestructiveRole),
        }
        box.setDefaultButton(self.buttons["resume"])
        box.buttonClicked.connect(lambda b: self.answer(next(k for k, v in self.buttons.items() if v is b)))
        box.setModal(False)
        box.show()
        self.prompt_box = box
        return box

    def answer(self, choice: str) -> None:
        leftovers, self.leftovers = self.leftovers, []
        if self.prompt_box is not None:
            self.prompt_box.hide()
            self.prompt_box.deleteLater()
            self.prompt_box = None
        if choice == "clear":
            for job in leftovers:
                with contextlib.suppress(StudioError):  # finished or taken elsewhere meanwhile
                    self.link.store.cancel(job.id)
        else:
            self.controller.adopt(leftovers)
        self.bridge.set_paused(choice == "review")
        if choice == "review":
            self.reviewRequested.emit()
        self.panel.refresh()
        self.answered.emit(choice)

    # -- following the store ---------------------------------------------------------------------------
    def _lock(self) -> None:
        had = self.link.holds_lock
        if self.link.try_lock():
            self.panel.set_status("")
            if not had:
                self.bridge._pump()
        else:
            self.panel.set_status(
                f"{self.link.busy_message.split(' is already')[0]} is running this library's queue: "
                "the window's requests wait until it finishes (it may run them itself)."
            )

    def poll(self) -> None:
        if self.link is None:
            return
        try:
            self._lock()
            self._sync()
        except StudioError as exc:  # the database is busy or gone for a moment: try again next time
            log.warning("queue poll: %s", exc)
        self.panel.refresh()

    def _sync(self) -> None:
        store = self.link.store
        for job in list(self.bridge.pending):
            stored = self.link.state(job.job_id)
            if stored is None or stored.state == "cancelled":
                self.bridge.drop(job.job_id)
            elif stored.state == "done":  # run by another runner: its images are in the gallery
                items = list(store.gallery.get_many(stored.gallery_ids).values())
                self.bridge.drop(job.job_id, GenerationResult(request=job.request, status="done"), items)
            elif stored.state == "failed":
                self.bridge.drop(job.job_id, failed=(stored.error, stored.hint))
        if self.prompt_box is None:  # added by `studio queue add` meanwhile: the window runs them too
            self.controller.adopt(store.jobs(("waiting",)))

    # -- edit and retry ----------------------------------------------------------------------------------
    def edit_job(self, job_id: str) -> None:
        job = next((j for j in self.bridge.pending if j.job_id == job_id), None)
        if job is None:
            return
        dlg = JobEditDialog(job.request, self.window)
        if dlg.exec() != QDialog.DialogCode.Accepted or dlg.result_request is None:
            return
        try:
            self.bridge.replace_request(job_id, dlg.result_request)
        except StudioError as exc:
            self.controller.messages.show_message(exc.message, exc.hint)
            return
        self.controller.request_replaced(job_id, dlg.result_request)

    def retry_job(self, job_id: str) -> None:
        if self.link is None:
            return
        try:
            job = self.link.store.retry(job_id)
        except StudioError as exc:
            self.controller.messages.show_message(exc.message, exc.hint)
            return
        self.controller.adopt([job])
        self.panel.refresh()


class JobEditDialog(QDialog):
    """A waiting job's recipe: prompt, negative prompt, seed, steps, CFG and size (the rest is kept)."""

    def __init__(self, request: GenerationRequest, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("JobEditDialog")
        self.setWindowTitle("Edit queued request")
        self.request = request
        self.result_request: GenerationRequest | None = None
        self.prompt = QPlainTextEdit(request.prompt)
        self.negative = QPlainTextEdit(request.negative_prompt)
        for box in (self.prompt, self.negative):
            box.setTabChangesFocus(True)
            box.setFixedHeight(64)
        self.seed = QLineEdit(str(request.seed))
        self.steps = QSpinBox(minimum=1, maximum=500, value=request.steps)
        self.cfg = QDoubleSpinBox(minimum=0.0, maximum=30.0, singleStep=0.5, decimals=2, value=request.guidance_scale)
        self.width_ = QSpinBox(minimum=64, maximum=8192, singleStep=8, value=request.width)
        self.height_ = QSpinBox(minimum=64, maximum=8192, singleStep=8, value=request.height)
        self.error = QLabel(objectName="Error")
        self.error.setWordWrap(True)
        self.error.hide()
        form = QFormLayout()
        for label, widget in (
            ("Prompt", self.prompt),
            ("Negative", self.negative),
            ("Seed", self.seed),
            ("Steps", self.steps),
            ("CFG", self.cfg),
            ("Width", self.width_),
            ("Height", self.height_),
        ):
            form.addRow(label, widget)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Ok | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(self.error)
        lay.addWidget(buttons)

    def accept(self) -> None:
        try:
            seed = int(self.seed.text().strip())
            if not 0 <= seed <= MAX_SEED:
                raise ValueError
        except ValueError:
            return self._refuse(f"The seed must be a whole number from 0 to {MAX_SEED}.")
        try:
            self.result_request = self.request.replace(
                prompt=self.prompt.toPlainText(),
                negative_prompt=self.negative.toPlainText(),
                seed=seed,
                steps=self.steps.value(),
                guidance_scale=self.cfg.value(),
                width=self.width_.value(),
                height=self.height_.value(),
            )
        except StudioError as exc:
            return self._refuse(exc.message)
        super().accept()
        return None

    def _refuse(self, message: str) -> None:
        self.error.setText(message)
        self.error.show()
