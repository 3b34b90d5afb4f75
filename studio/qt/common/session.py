"""The window session's one model: the draft request, the chosen model, the queue, the runs' step
history and what the window tells the user.

Panels bind to its signals and call its methods; none reaches into another panel (Krita AI
Diffusion's `model.py` is the pattern: one observable model the widgets hang off). The main window
makes one `Session` and binds the Prompt panel as the draft's editor and the engine bridge as the
queue; the run controller, the Models menu (`ModelSetup`), the plugin docks and the panels go
through it:

- the draft request — `build_requests()` and `draft_fields()` ask the editor (the Prompt panel);
  `field_contributors` is the one list of callables that add fields to every request (the default
  VAE, plugin panels); `load_request(request)` puts a recipe back (Recreate, Use settings) and
  `recommend(recommendation)` a model family's recommended settings;
- the chosen model — `model()`, and `choose_model(model)`, which every part that follows the model
  hears as `modelChosen` (the Prompt panel, the recommended settings, the engine's preload);
- the queue — `jobs()` and `queueChanged`, from the engine bridge;
- the step history — `history` (`studio.session.step_history.StepHistory`, Qt-free);
- messages — `say(message, hint, kind, topic=…)` shows one in the message bar, and
  `withdraw(topic)` takes it back only if the one shown is still about that topic: a message is
  never dismissed by matching its text.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from PySide6.QtCore import QObject, Signal

from studio.core.request import GenerationRequest
from studio.session.step_history import StepHistory

# Message topics: what a message is about, so whatever settles it can take it back.
MODEL = "model"  # a model is missing or failed to load, or a run failed because of it
MISSING_VAE = "missing-vae"  # the recipe's VAE is not on this computer


@dataclass(frozen=True)
class Message:
    message: str
    hint: str = ""
    kind: str = "error"  # "error" | "warning" | "info"
    topic: str = ""
    action: str = ""  # the message bar's button, if any
    action_key: str = ""  # what the button asks for (MessageBar.actionTriggered)


class DraftEditor(Protocol):
    """What the Prompt panel offers the session."""

    def fields(self) -> dict[str, Any]: ...
    def build_requests(self) -> list[GenerationRequest]: ...
    def model_name(self) -> str: ...


class Session(QObject):
    modelChosen = Signal(str)  # the user chose a model (path or "demo")
    requestLoaded = Signal(object, bool)  # (GenerationRequest, keep its VAE): put it in the draft
    settingsRecommended = Signal(object)  # a core.recommend.Recommendation for the draft
    defaultsChanged = Signal()  # default VAE / tiny autoencoders changed (Models dialog)
    queueChanged = Signal()
    messagePosted = Signal(object)  # Message
    messageWithdrawn = Signal(str, str)  # topic, kind ("" for either: any)
    promptTextInserted = Signal(str)  # text for the prompt, at its cursor (a plugin panel's <lora:…>)
    modelAdded = Signal(str)  # a model joined the library (a finished download): offer it

    def __init__(self, history: StepHistory, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.history = history
        self.field_contributors: list[Callable[[], dict[str, Any]]] = []
        self.default_vae: Callable[[str], str] = lambda _model: ""  # set by the Models setup
        self._editor: DraftEditor | None = None
        self._queue: Any = None

    # -- the draft request ----------------------------------------------------------------------------
    def bind_draft(self, editor: DraftEditor) -> None:
        self._editor = editor

    def _draft(self) -> DraftEditor:
        if self._editor is None:
            raise RuntimeError("no draft editor is bound to the session")
        return self._editor

    def draft_fields(self) -> dict[str, Any]:
        """The draft as request fields (validation not applied: it may be half typed)."""
        return self._draft().fields()

    def build_requests(self) -> list[GenerationRequest]:
        """The requests one Generate queues (raises StudioError for an invalid draft)."""
        return self._draft().build_requests()

    def load_request(self, request: GenerationRequest, keep_vae: bool = False) -> None:
        """Put a recipe into the draft (keep_vae: draw with its VAE, not the default one)."""
        self.requestLoaded.emit(request, keep_vae)

    def recommend(self, recommendation: Any) -> None:
        """Put a model family's recommended steps, guidance, size and scheduler into the draft."""
        self.settingsRecommended.emit(recommendation)

    # -- the chosen model -----------------------------------------------------------------------------
    def model(self) -> str:
        return self._draft().model_name()

    def choose_model(self, model: str) -> None:
        self.withdraw(MODEL)  # a message about the model that was is settled by choosing one
        self.modelChosen.emit(model)

    # -- the queue ------------------------------------------------------------------------------------
    def bind_queue(self, bridge: Any) -> None:
        self._queue = bridge
        bridge.queueChanged.connect(self.queueChanged)

    def jobs(self) -> list[Any]:
        return list(self._queue.jobs()) if self._queue is not None else []

    # -- messages -------------------------------------------------------------------------------------
    def say(
        self,
        message: str,
        hint: str = "",
        kind: str = "error",
        *,
        topic: str = "",
        action: str = "",
        action_key: str = "",
    ) -> None:
        self.messagePosted.emit(Message(message, hint, kind, topic, action, action_key))

    def withdraw(self, topic: str = "", kind: str = "") -> None:
        """Take back the message shown if it is about `topic` (or, with `kind`, of that kind)."""
        self.messageWithdrawn.emit(topic, kind)

    # -- what panels ask of each other ----------------------------------------------------------------
    def insert_prompt_text(self, text: str) -> None:
        self.promptTextInserted.emit(text)

    def notify_defaults_changed(self) -> None:
        """The default VAE or tiny autoencoders changed: the draft's VAE note and warning follow."""
        self.defaultsChanged.emit()

    def add_model(self, model: str) -> None:
        self.modelAdded.emit(model)
