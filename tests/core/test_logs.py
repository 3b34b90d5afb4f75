"""The log file, faulthandler, uncaught exceptions on any thread, and the crash report."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

from studio.core import logs

REPO = Path(__file__).resolve().parents[2]


def test_the_log_lives_in_the_user_log_folder_and_follows_studio_home(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "a"))
    path = logs.setup()
    assert path == tmp_path / "a" / "logs" / "studio.log" == logs.log_file()
    logging.getLogger("studio.test").info("first home")
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "b"))
    assert logs.setup() == tmp_path / "b" / "logs" / "studio.log"
    logging.getLogger("studio.test").info("second home")
    assert "first home" in (tmp_path / "a" / "logs" / "studio.log").read_text()
    assert "second home" in (tmp_path / "b" / "logs" / "studio.log").read_text()
    assert "first home" not in (tmp_path / "b" / "logs" / "studio.log").read_text()
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, logging.handlers.RotatingFileHandler)]
    assert len(handlers) == 1 and handlers[0].maxBytes == logs.MAX_BYTES and handlers[0].backupCount == logs.BACKUPS
    monkeypatch.delenv("STUDIO_HOME")
    assert "studio" in str(logs.log_dir()).lower()  # platformdirs' user log folder otherwise


def test_uncaught_exceptions_on_any_thread_reach_the_log_and_the_listeners(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path))
    logs.setup()
    seen = []
    listener = lambda exc_info, thread: seen.append((exc_info[0].__name__, thread))  # noqa: E731
    logs.add_listener(listener)
    try:
        t = threading.Thread(target=lambda: 1 / 0, name="worker-7")
        t.start()
        t.join()
        try:
            raise KeyError("in the main thread")
        except KeyError:
            sys.excepthook(*sys.exc_info())
    finally:
        logs.remove_listener(listener)
    assert ("ZeroDivisionError", "worker-7") in seen and ("KeyError", "MainThread") in seen
    text = logs.log_file().read_text()
    assert "uncaught exception in thread worker-7" in text and "ZeroDivisionError" in text and "Traceback" in text


def test_a_hard_crash_writes_every_threads_stack(tmp_path):
    """faulthandler: a segfault (here faulthandler's own) leaves the stacks in faults.log."""
    script = textwrap.dedent(
        """
        import faulthandler
        from studio.core import logs
        logs.setup()
        faulthandler._sigsegv()
        """
    )
    env = {**os.environ, "STUDIO_HOME": str(tmp_path), "PYTHONPATH": str(REPO)}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=60)
    assert proc.returncode != 0
    faults = (tmp_path / "logs" / "faults.log").read_text()
    assert "Segmentation fault" in faults and "<string>" in faults


def test_the_crash_report_hides_prompts_unless_asked(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path))
    logs.setup()
    logging.getLogger("studio.test").warning("running 'a secret garden at night'")
    try:
        raise RuntimeError("boom while drawing a secret garden at night")
    except RuntimeError:
        exc_info = sys.exc_info()
    report = logs.crash_report(
        exc_info, device={"device": "cpu", "dtype": "float32"}, prompts=["a secret garden at night"]
    )
    assert "secret garden" not in report and logs.HIDDEN in report
    assert "RuntimeError: boom" in report and "device: device=cpu, dtype=float32" in report
    assert "python:" in report and "studio:" in report and "torch:" in report
    full = logs.crash_report(exc_info, prompts=["a secret garden at night"], include_prompts=True)
    assert "boom while drawing a secret garden at night" in full
