"""Small shared widgets: the non-modal message bar and the status-bar progress/device/memory group."""

from __future__ import annotations

import html
from typing import Any

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QProgressBar, QPushButton, QToolButton, QWidget


class MessageBar(QFrame):
    """A dismissible strip above the canvas: errors with what to do, never a modal dialog."""

    _action_key: str  # set in __init__ after the button that reads it
    actionTriggered = Signal(str)  # the action key given to show()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("MessageBar")
        self.icon = QLabel(objectName="MessageIcon")
        self.text = QLabel(objectName="MessageText")
        self.text.setWordWrap(True)
        self.text.setTextFormat(Qt.TextFormat.RichText)
        self.text.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.action = QPushButton(objectName="MessageAction")
        self.action.hide()
        self.action.clicked.connect(lambda: self.actionTriggered.emit(self._action_key))
        close = QToolButton(text="✕", objectName="MessageClose", toolTip="Dismiss this message.")
        close.clicked.connect(self.dismiss)
        lay = QHBoxLayout(self)
        lay.setContentsMargins(12, 8, 8, 8)
        lay.setSpacing(10)
        lay.addWidget(self.icon)
        lay.addWidget(self.text, 1)
        lay.addWidget(self.action)
        lay.addWidget(close)
        self._action_key = ""
        self.kind = ""
        self.message = ""
        self.hint = ""
        self.topic = ""  # what the message is about (studio.qt.common.session): who may take it back
        self.hide()

    def show_message(
        self,
        message: str,
        hint: str = "",
        kind: str = "error",
        action: str = "",
        action_key: str = "",
        topic: str = "",
    ) -> None:
        self.kind, self.message, self.hint, self.topic = kind, message, hint, topic
        self.icon.setText({"error": "⚠", "warning": "⚠", "info": "ℹ"}.get(kind, "ℹ"))
        body = f"<b>{html.escape(message)}</b>"
        if hint:
            body += f"<br><span style='opacity:0.85'>{html.escape(hint)}</span>"
        self.text.setText(body)
        self.setProperty("kind", kind)
        self.style().unpolish(self)
        self.style().polish(self)
        self._action_key = action_key
        self.action.setText(action)
        self.action.setVisible(bool(action))
        self.show()

    def post(self, message: Any) -> None:
        """Show a session `Message` (studio.qt.common.session)."""
        self.show_message(
            message.message, message.hint, message.kind, message.action, message.action_key, message.topic
        )

    def withdraw(self, topic: str = "", kind: str = "") -> None:
        """Dismiss the message shown if it is about `topic` (or of `kind`); leave any other one."""
        if self.isVisible() and ((topic and self.topic == topic) or (kind and self.kind == kind)):
            self.dismiss()

    def dismiss(self) -> None:
        self.kind = self.message = self.hint = self.topic = ""
        self.hide()


class ProgressGroup(QWidget):
    """Status bar: progress with k/N, it/s and time left; device and dtype; memory."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.bar = QProgressBar(objectName="RunProgress")
        self.bar.setFixedWidth(300)
        self.bar.setTextVisible(True)
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.bar.setFormat("Idle")
        self.bar.setToolTip("Progress of the running request: step, speed and time left.")
        self.device = QLabel("Starting engine…", objectName="DeviceLabel")
        self.device.setToolTip("The device and number format the engine runs on.")
        self.memory = QLabel("", objectName="MemoryLabel")
        self.memory.setToolTip("Memory in use by the engine (GPU memory on a GPU, process memory on the CPU).")
        lay = QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 6, 0)
        lay.setSpacing(14)
        lay.addWidget(self.bar)
        lay.addWidget(self.device)
        lay.addWidget(self.memory)

    def idle(self, text: str = "Idle") -> None:
        self.bar.setRange(0, 1)
        self.bar.setValue(0)
        self.bar.setFormat(text)

    def loading(self, stage: str, fraction: float) -> None:
        self.bar.setRange(0, 1000)
        self.bar.setValue(int(fraction * 1000))
        self.bar.setFormat(stage[:1].upper() + stage[1:])

    def step(self, k: int, n: int, it_s: float | None, eta_s: float | None) -> str:
        self.bar.setRange(0, n)
        self.bar.setValue(k)
        text = f"Step {k}/{n}"
        if it_s:
            text += f" · {it_s:.2f} it/s" if it_s >= 1 else f" · {1 / it_s:.1f} s/it"
        if eta_s is not None:
            text += f" · {format_eta(eta_s)} left"
        self.bar.setFormat(text)
        return text

    def set_device(self, info: dict) -> None:
        parts = [info.get("name") or info.get("device"), info.get("dtype"), info.get("preset")]
        self.device.setText(" · ".join(str(p) for p in parts if p))

    def set_memory(self, mem: dict) -> None:
        used, peak, total = mem.get("allocated_mb"), mem.get("peak_mb"), mem.get("total_mb")
        if used is None:
            self.memory.setText("")
            return
        text = f"Memory {fmt_mb(used)}"
        if total:
            text += f" / {fmt_mb(total)}"
        if peak:
            text += f" (peak {fmt_mb(peak)})"
        self.memory.setText(text)


def fmt_mb(mb: float) -> str:
    return f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:.0f} MB"


def format_eta(seconds: float) -> str:
    s = max(0, int(round(seconds)))
    return f"{s // 60}:{s % 60:02d}" if s >= 60 else f"{s}s"
