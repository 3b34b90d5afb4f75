"""Qt fixtures: a themed app, the real window on the tiny model, and a guard that fails any test
which leaves a QThread running (the idea of napari's conftest, written for this project)."""

from __future__ import annotations

import gc

import pytest

pytest.importorskip("PySide6")
pytest.importorskip("pytestqt")

from PySide6.QtCore import QThread

RUN_TIMEOUT_MS = 90_000


def still_running(threads: list[QThread]) -> list[str]:
    """Names of the threads in `threads` that are still running."""
    running = []
    for t in threads:
        try:
            if t.isRunning():
                running.append(t.objectName() or repr(t))
        except RuntimeError:  # already deleted on the C++ side: not running
            pass
    return running


@pytest.fixture
def thread_guard():
    return still_running


@pytest.fixture(autouse=True)
def _no_thread_left_running(monkeypatch, request):
    """Fail the test if a QThread it started is still running when it ends."""
    started: list[QThread] = []
    orig = QThread.start

    def start(self, *args, **kwargs):
        started.append(self)
        return orig(self, *args, **kwargs)

    monkeypatch.setattr(QThread, "start", start)
    yield started
    running = still_running(started)
    for t in started:  # don't leak into the next test either way
        try:
            if t.isRunning():
                t.quit()
                t.wait(10_000)
        except RuntimeError:
            pass
    gc.collect()
    if running:
        pytest.fail(f"test left QThread(s) running: {running}", pytrace=False)


@pytest.fixture
def studio_home(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("STUDIO_HOME", str(home))
    return home


@pytest.fixture
def themed_app(qapp):
    from studio.qt.app.app import ensure_app

    return ensure_app()


def cpu_engine():
    from studio.engine.engine import Engine

    return Engine(device="cpu")


@pytest.fixture
def make_window(qtbot, themed_app, studio_home):
    """make_window(**kw) -> a shown MainWindow driving a CPU engine; closed (thread stopped) after."""
    from studio.qt.app.main_window import MainWindow

    made = []

    def make(**kw):
        kw.setdefault("engine_factory", cpu_engine)
        kw.setdefault("record_to_gallery", False)
        kw.setdefault("with_gallery", False)
        w = MainWindow(**kw)
        qtbot.addWidget(w)
        w.show()
        made.append(w)
        return w

    yield make
    for w in made:
        w.shutdown()


@pytest.fixture
def fill_request():
    """fill_request(window, model, prompt=..., steps=..., size=..., seed=..., scheduler=...) sets the Prompt panel."""
    return set_request


def set_request(window, model, prompt="a red circle on a blue background", steps=4, size=64, seed=7, scheduler="Euler"):
    p = window.prompt
    p.set_model(str(model))
    p.prompt.setPlainText(prompt)
    p.steps.setValue(steps)
    p.set_size(size, size)
    p.seed.setValue(seed)
    p.seed_lock.setChecked(True)
    p.set_sampler(scheduler)


class FakeEngine:
    """The Engine contract without torch: steps as fast as asked, for queue and throttling tests."""

    def __init__(self, step_s: float = 0.0, n_fail: int = 0) -> None:
        from types import SimpleNamespace

        self.device_info = SimpleNamespace(device="cpu", dtype="float32", name="Fake CPU")
        self.step_s = step_s
        self.runs: list = []

    def memory_info(self):
        return {"allocated_mb": 1.0, "peak_mb": None, "total_mb": None}

    def load(self, model, on_progress=None, parts=None):  # a preload (the window loads a chosen model at once)
        from types import SimpleNamespace

        return SimpleNamespace(name=model, arch="")

    def generate(self, request, on_step=None, cancel=None, on_progress=None, branch_latent=None):
        import time

        import numpy as np

        from studio.core.results import GenerationResult, LoadProgress, StepPreview

        self.runs.append(request)
        if on_progress:
            on_progress(LoadProgress("loading UNet…", 0.5))
        start = request.branch.step if request.branch else 0
        t0 = time.perf_counter()
        done = start
        status = "done"
        for step in range(start + 1, request.steps + 1):
            if cancel is not None and cancel.is_set():
                status = "cancelled"
                break
            if self.step_s:
                time.sleep(self.step_s)
            img = np.full((8, 8, 3), step % 256, np.uint8)
            lat = np.full((1, 4, 8, 8), float(step), np.float32)
            done = step
            if on_step:
                on_step(
                    StepPreview(step, request.steps, 1000.0 - step, img, lat, "latent2rgb", time.perf_counter() - t0)
                )
        images = [np.zeros((64, 64, 3), np.uint8)] if status == "done" else []
        return GenerationResult(
            request=request,
            images=images,
            seeds=[request.seed],
            status=status,
            steps_done=done,
            total_steps=request.steps,
            timings={"total_s": time.perf_counter() - t0},
        )


@pytest.fixture
def fake_engine():
    return FakeEngine
