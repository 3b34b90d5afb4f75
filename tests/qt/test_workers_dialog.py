"""Device dialog ▸ Workers: this machine / every GPU / a Ray cluster by address; a warning (and the
choice to say no) before an address off this machine; the choice saved and handed to the engine
thread, whose jobs then run on the worker it names; without Ray, the page says how to install it.
No network: the engine thread's connection is replaced where a test would reach an address."""

from __future__ import annotations

from PySide6.QtWidgets import QMessageBox

from studio.core import settings as core_settings
from studio.qt.generate.workers import WorkersLink

TIMEOUT = 60_000


def _dialog(qtbot, make_window, fake_engine):
    w = make_window(engine_factory=fake_engine)
    qtbot.waitUntil(lambda: w.bridge.device is not None, timeout=TIMEOUT)
    return w, w.model_setup.open_device()


def _choose(dialog, mode: str, address: str = "") -> None:
    dialog.workers_mode.setCurrentIndex(dialog.workers_mode.findData(mode))
    dialog.cluster_address.setText(address)


def test_a_non_local_address_is_confirmed_first_and_no_keeps_this_machine(qtbot, make_window, fake_engine, monkeypatch):
    w, d = _dialog(qtbot, make_window, fake_engine)
    assert d.findChild(type(d.workers_mode), "WorkersMode").currentData() == "local"
    assert not d.cluster_address.isEnabled()
    asked: list[str] = []
    sent: list[dict] = []
    monkeypatch.setattr(w.bridge, "configure", lambda **o: sent.append(o))

    def answer(reply):
        def warning(parent, title, text, *a, **k):
            asked.append(text)
            return reply

        return warning

    _choose(d, "cluster", "10.20.30.40:6379")
    assert d.cluster_address.isEnabled()
    monkeypatch.setattr(QMessageBox, "warning", answer(QMessageBox.StandardButton.No))
    assert d.use_workers() is False
    assert "10.20.30.40:6379" in asked[0] and "private network" in asked[0]
    assert core_settings.load().workers == "local" and sent == []
    assert "Not connected" in d.workers_note.text()
    monkeypatch.setattr(QMessageBox, "warning", answer(QMessageBox.StandardButton.Yes))
    d.workers_use.click()
    saved = core_settings.load()
    assert (saved.workers, saved.cluster_address) == ("cluster", "10.20.30.40:6379")
    assert sent == [{"workers": "cluster", "cluster_address": "10.20.30.40:6379"}]
    # a bad address is said, not saved
    _choose(d, "cluster", "")
    assert d.use_workers() is False and "address" in d.workers_note.text()
    _choose(d, "local")
    d.workers_use.click()
    assert core_settings.load().workers == "local" and sent[-1]["workers"] == "local"
    assert len(asked) == 2  # nothing asked for this machine


class _Remote:
    """Stands for a worker's RemoteEngine: records what it ran, tags the result as a worker's."""

    def __init__(self, local) -> None:
        self.local, self.ran = local, []

    def generate(self, request, **kw):
        self.ran.append(request)
        result = self.local.generate(request, **kw)
        result.worker, result.device = "studio-worker-0 on box", "cuda (Test GPU)"
        return result


def test_a_loopback_cluster_is_used_without_asking_and_jobs_run_on_its_worker(
    qtbot, make_window, fake_engine, monkeypatch
):
    w, d = _dialog(qtbot, make_window, fake_engine)
    local = w.bridge.worker.engine
    remote = _Remote(fake_engine())

    def apply(self, mode, address=""):
        self.mode, self.address = mode, address
        self.remote = remote if mode != "local" else None
        self.status = f"Jobs run on studio-worker-0 at {address}." if self.remote else "Jobs run on this machine."
        return self.status

    monkeypatch.setattr(WorkersLink, "apply", apply)
    monkeypatch.setattr(QMessageBox, "warning", lambda *a, **k: (_ for _ in ()).throw(AssertionError("asked")))
    _choose(d, "cluster", "127.0.0.1:6379")
    d.workers_use.click()
    qtbot.waitUntil(lambda: "studio-worker-0" in d.workers_note.text(), timeout=TIMEOUT)
    w.controller.generate()
    qtbot.waitUntil(lambda: len(remote.ran) == 1 and not w.bridge.busy, timeout=TIMEOUT)
    assert local.runs == []  # the job ran on the worker, through the same bridge and queue
    _choose(d, "local")
    d.workers_use.click()
    qtbot.waitUntil(lambda: d.workers_note.text() == "Jobs run on this machine.", timeout=TIMEOUT)
    w.controller.generate()
    qtbot.waitUntil(lambda: len(local.runs) == 1 and not w.bridge.busy, timeout=TIMEOUT)
    assert len(remote.ran) == 1


def test_without_ray_the_page_says_how_to_install_it(qtbot, make_window, fake_engine, monkeypatch):
    import studio.cluster.connect as cc

    monkeypatch.setattr(cc, "ray_available", lambda: False)
    _w, d = _dialog(qtbot, make_window, fake_engine)
    model = d.workers_mode.model()
    assert model.item(0).isEnabled() and not model.item(1).isEnabled() and not model.item(2).isEnabled()
    assert "pip install 'studio[cluster]'" in d.workers_note.text()
