"""The window session's one model: the panels bind to it — the draft request, the chosen model,
messages taken back by topic (never by matching their text), the queue and the step history."""

from __future__ import annotations

import pytest

from studio.core.request import GenerationRequest
from studio.qt.common.session import MISSING_VAE, MODEL, Session
from studio.qt.common.widgets import MessageBar
from studio.session.step_history import StepHistory

pytestmark = pytest.mark.usefixtures("themed_app", "studio_home")


class Draft:
    def __init__(self) -> None:
        self.model = "demo"

    def fields(self) -> dict:
        return {"model": self.model, "prompt": "a cat"}

    def build_requests(self) -> list[GenerationRequest]:
        return [GenerationRequest.create(**self.fields())]

    def model_name(self) -> str:
        return self.model


def bound(qtbot) -> tuple[Session, MessageBar]:
    s = Session(StepHistory(64))
    bar = MessageBar()
    qtbot.addWidget(bar)
    bar.show()
    s.messagePosted.connect(bar.post)
    s.messageWithdrawn.connect(bar.withdraw)
    s.bind_draft(Draft())
    return s, bar


def test_messages_are_taken_back_by_topic_not_by_their_words(qtbot):
    s, bar = bound(qtbot)
    s.say("The model file is missing a VAE.", "Pick another file.", "warning", topic=MISSING_VAE)
    s.withdraw(MODEL)  # it mentions "model", but it is about the VAE: it stays
    assert bar.isVisible() and bar.topic == MISSING_VAE
    s.withdraw(MISSING_VAE)
    assert not bar.isVisible() and bar.message == ""

    s.say("Could not load it.", topic=MODEL)  # no "model" in the words: still a model message
    s.choose_model("another.safetensors")  # choosing a model settles it
    assert not bar.isVisible()

    s.say("Disk full.", kind="error")
    s.withdraw(kind="warning")
    assert bar.isVisible()
    s.withdraw(kind="error")
    assert not bar.isVisible()


def test_the_draft_and_the_chosen_model_come_from_the_bound_editor(qtbot):
    s, _bar = bound(qtbot)
    assert s.model() == "demo"
    assert s.draft_fields()["prompt"] == "a cat" and s.build_requests()[0].prompt == "a cat"
    heard: list = []
    s.modelChosen.connect(lambda m: heard.append(("chosen", m)))
    s.requestLoaded.connect(lambda r, keep: heard.append(("loaded", r.prompt, keep)))
    s.choose_model("x.safetensors")
    s.load_request(GenerationRequest.create(prompt="a dog"), keep_vae=True)
    assert heard == [("chosen", "x.safetensors"), ("loaded", "a dog", True)]
    with pytest.raises(RuntimeError):
        Session(StepHistory(64)).model()  # no editor bound: said, not guessed


def test_the_window_binds_its_panels_to_one_session(make_window, fake_engine, tmp_path):
    w = make_window(engine_factory=fake_engine)
    s = w.session
    assert s.history is w.history and s.history is w.controller.history
    assert w.prompt.field_contributors is s.field_contributors  # one list: default VAE, plugin panels
    assert s.field_contributors[0] == w.prompt.family.request_fields  # the panel's own stays, first
    assert s.model() == w.prompt.model_name()

    s.load_request(GenerationRequest.create(prompt="from the session", steps=7))
    assert w.prompt.prompt.toPlainText() == "from the session" and w.prompt.steps.value() == 7

    s.insert_prompt_text(" <lora:x:0.5>")  # what a plugin panel asks for
    assert "<lora:x:0.5>" in w.prompt.prompt.toPlainText()  # at the cursor

    w.choose_model(str(tmp_path / "elsewhere.safetensors"))  # the Prompt panel follows the session
    assert w.prompt.model_name() == str(tmp_path / "elsewhere.safetensors") == s.model()

    s.say("The bundled demo model is not installed yet.", kind="warning", topic=MODEL)
    w.controller._model_loaded("demo", {})  # a model loaded: the model message is over
    assert not w.messages.isVisible()
    s.say("Something about the model, but a run's note.", kind="info")
    w.controller._model_loaded("demo", {})  # not a model message: it stays, whatever its words
    assert w.messages.isVisible()


def test_the_queue_view_follows_the_bridge(make_window, fake_engine, fill_request, tiny_sd15, qtbot):
    w = make_window(engine_factory=fake_engine)
    changes: list[int] = []
    w.session.queueChanged.connect(lambda: changes.append(len(w.session.jobs())))
    fill_request(w, tiny_sd15, steps=2)
    with qtbot.waitSignal(w.controller.runFinished, timeout=60_000):
        w.controller.generate()
    assert changes and max(changes) >= 1 and w.session.jobs() == []
