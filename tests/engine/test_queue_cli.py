"""`studio queue …` end to end on a tiny model: the held-out check (four jobs, `kill -9` after the
first image lands, run again), the same request as `studio generate`, list/retry/cancel/clear, one
runner per library."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from studio.cli import main

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")


def q(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def add_args(model: Path, seed: int) -> list[str]:
    return [
        "--model",
        str(model),
        "--prompt",
        "a red circle",
        "--size",
        "64x64",
        "--steps",
        "3",
        "--seed",
        str(seed),
        "--preview",
        "none",
    ]


def test_four_jobs_killed_after_the_first_image_all_land_once(tiny_sd15, tmp_path, capsys, monkeypatch):
    lib = tmp_path / "lib"
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    for seed in (11, 12, 13, 14):
        code, out, _ = q(capsys, "queue", "add", "--library", lib, *add_args(tiny_sd15, seed))
        assert code == 0 and out.startswith("queued ")
    env = {**os.environ, "STUDIO_HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "studio", "queue", "run", "--library", str(lib)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    first = proc.stdout.readline()
    assert " done " in first, first + proc.stderr.read()
    proc.send_signal(signal.SIGKILL)  # after the first image landed, as a crash would
    proc.wait(timeout=60)
    code, out, err = q(capsys, "queue", "run", "--library", lib)
    assert code == 0, err
    code, out, _ = q(capsys, "gallery", "--library", lib, "list", "--json")
    assert sorted(i["seed"] for i in json.loads(out)) == [11, 12, 13, 14]
    code, out, _ = q(capsys, "queue", "list", "--library", lib, "--json")
    assert code == 0 and json.loads(out) == []
    code, out, _ = q(capsys, "gallery", "--library", lib, "check")
    assert code == 0 and "clean" in out
    code, out, _ = q(capsys, "queue", "list", "--library", lib, "--all", "--json")
    assert sorted(j["state"] for j in json.loads(out)) == ["done"] * 4


def test_queue_add_takes_every_generate_option_and_builds_the_same_request(tiny_sd15, tmp_path, capsys, monkeypatch):
    from studio.cli import build_parser

    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    gen = {o for a in sub.choices["generate"]._actions for o in a.option_strings}
    queue_sub = next(a for a in sub.choices["queue"]._actions if a.__class__.__name__ == "_SubParsersAction")
    qadd = {o for a in queue_sub.choices["add"]._actions for o in a.option_strings}
    assert gen - {"--xyz"} <= qadd  # a plot expands into many runs: generate's own option
    argv = [*add_args(tiny_sd15, 5), "--cfg", "5.5", "--scheduler", "Euler", "--batch", "2", "--negative", "blurry"]
    code, out, _ = q(capsys, "generate", *argv, "--out", tmp_path / "g.png", "--no-gallery", "--json")
    assert code == 0
    generated = json.loads(out)["request"]
    code, out, _ = q(capsys, "queue", "add", "--library", tmp_path / "lib", *argv, "--json", "--memory", "low memory")
    job = json.loads(out)
    assert job["request"] == generated
    assert job["options"] == {"memory": "low memory"} and job["state"] == "waiting"
    # Without --size, queue add reads the model's native size from its configs (nothing loaded).
    code, out, _ = q(
        capsys, "queue", "add", "--library", tmp_path / "lib", "--model", tiny_sd15, "--prompt", "x", "--json"
    )
    assert code == 0 and (json.loads(out)["request"]["width"], json.loads(out)["request"]["height"]) == (64, 64)


def test_list_retry_cancel_clear_and_a_failed_job(tiny_sd15, tmp_path, capsys, monkeypatch):
    lib = tmp_path / "lib"
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    missing = tmp_path / "model-that-goes-away"
    missing.symlink_to(tiny_sd15, target_is_directory=True)
    q(capsys, "queue", "add", "--library", lib, *add_args(missing, 1), "--out", tmp_path / "out" / "one.png")
    q(capsys, "queue", "add", "--library", lib, *add_args(tiny_sd15, 2))
    missing.unlink()  # the model is gone by the time the job runs: it fails, the next one runs
    code, out, err = q(capsys, "queue", "run", "--library", lib, "--json")
    lines = [json.loads(x) for x in out.splitlines()]
    assert code == 1 and [x["status"] for x in lines] == ["failed", "done"] and "not found" in lines[0]["error"]
    code, out, _ = q(capsys, "queue", "list", "--library", lib)
    assert code == 0 and "failed" in out and "not found" in out and len(out.splitlines()) == 1
    failed = lines[0]["id"]
    missing.symlink_to(tiny_sd15, target_is_directory=True)
    code, out, _ = q(capsys, "queue", "retry", failed[:6], "--library", lib)
    assert code == 0 and "waiting" in out
    code, out, _ = q(capsys, "queue", "run", "--library", lib, "--json")
    assert code == 0 and json.loads(out)["status"] == "done"
    assert (tmp_path / "out" / "one.png").is_file()
    q(capsys, "queue", "add", "--library", lib, *add_args(tiny_sd15, 3))
    waiting = json.loads(q(capsys, "queue", "list", "--library", lib, "--json")[1])[0]["id"]
    code, out, _ = q(capsys, "queue", "cancel", waiting, "--library", lib)
    assert code == 0 and "cancelled" in out
    q(capsys, "queue", "add", "--library", lib, *add_args(tiny_sd15, 4))
    code, out, _ = q(capsys, "queue", "clear", "--library", lib)
    assert code == 0 and "cleared 1 job" in out
    assert json.loads(q(capsys, "queue", "list", "--library", lib, "--json")[1]) == []


def test_a_second_runner_is_told_who_runs_the_queue(tmp_path, capsys, monkeypatch):
    from studio.core.queue import RunnerLock

    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    lib = tmp_path / "lib"
    lib.mkdir()
    with RunnerLock(lib, "the studio window"):
        code, out, err = q(capsys, "queue", "run", "--library", lib)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"the studio window (pid {os.getpid()}" in err and "already running" in err
    code, out, err = q(capsys, "queue", "run", "--library", lib)
    assert code == 0


def _wait_running(lib, seconds=120.0) -> str:
    import time

    from studio.core.queue import JobStore

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with JobStore.open(lib) as store:
            running = store.jobs(("running",))
        if running:
            return running[0].id
        time.sleep(0.1)
    raise AssertionError("no job started running")


def test_ctrl_c_once_finishes_the_job_twice_gives_it_back(tiny_sd15, tmp_path, capsys, monkeypatch):
    import time

    from studio.core.queue import JobStore

    lib = tmp_path / "lib"
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    for seed in (1, 2):
        argv = [*add_args(tiny_sd15, seed), "--steps", "150", "--scheduler", "Euler"]
        assert q(capsys, "queue", "add", "--library", lib, *argv)[0] == 0
    env = {**os.environ, "STUDIO_HOME": str(tmp_path / "home"), "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "studio", "queue", "run", "--library", str(lib), "--keep-every", "0"]

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    first = _wait_running(lib)
    proc.send_signal(signal.SIGINT)  # once: this job ends, then the runner stops
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130 and "finishing the current job" in err, err
    with JobStore.open(lib) as store:
        assert store.get(first).state == "done"
        [left] = store.jobs()
        assert left.state == "waiting" and left.attempts == 0

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    second = _wait_running(lib)
    with JobStore.open(lib) as store:  # a step kept, so the job continues from it next time
        deadline = time.monotonic() + 120
        while store.resume_point(second) is None and time.monotonic() < deadline:
            time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)  # twice: stopped now, and given back to the queue
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130 and "Traceback" not in err, err
    with JobStore.open(lib) as store:
        job = store.get(second)
        assert job.state == "waiting" and job.attempts == 0 and job.was_running
        kept = store.resume_point(second)
        assert kept is not None and 0 < kept[0] < 150
    code, out, err = q(capsys, "queue", "run", "--library", lib, "--json")
    assert code == 0 and json.loads(out)["resumed_from_step"] == kept[0]
