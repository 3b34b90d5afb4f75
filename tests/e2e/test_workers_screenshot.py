"""The real window under Xvfb (xcb) running its job on a Ray worker: a local one-worker cluster
(`studio cluster up --local --detach`, 127.0.0.1), View ▸ Device and memory ▸ Workers ▸ A Ray
cluster at its address ▸ Use, then Generate on the tiny model. The run streams its steps back,
lands in this window's gallery with the worker in its provenance, and is screenshotted with the
dialog saying which worker runs the jobs (`studio-workers.png`, copied to STUDIO_SCREENSHOT_DIR when
that is set). This file is also the driver: the test runs it as a script on the Xvfb display."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve()
REPO = HERE.parents[2]
XVFB_SCREEN = (1680, 1050)


def drive(model: str, address: str, out_png: str, out_json: str) -> int:
    from drive_window import wait  # this file runs as a script from its own folder

    from studio.core.metadata import read_metadata
    from studio.qt.app.app import ensure_app
    from studio.qt.app.main_window import MainWindow

    app = ensure_app()

    def factory():
        from studio.engine.engine import Engine

        return Engine(device="cpu")

    w = MainWindow(factory, record_to_gallery=True)
    w.setGeometry(w.screen().availableGeometry())
    w.show()
    p = w.prompt
    p.set_model(model)
    p.prompt.setPlainText("a red circle at the top left on a blue background")
    p.steps.setValue(6)
    p.set_size(64, 64)
    p.seed.setValue(5)
    p.seed_lock.setChecked(True)
    if not wait(lambda: w.bridge.device is not None, 120):
        print("engine did not start", file=sys.stderr)
        return 3
    dlg = w.model_setup.open_device()
    dlg.workers_mode.setCurrentIndex(dlg.workers_mode.findData("cluster"))
    dlg.cluster_address.setText(address)
    if not dlg.use_workers():
        print(f"not used: {dlg.workers_note.text()}", file=sys.stderr)
        return 4
    if not wait(lambda: "studio-worker-0" in dlg.workers_note.text(), 180):
        print(f"no worker: {dlg.workers_note.text()}", file=sys.stderr)
        return 5
    done: dict = {}
    w.controller.runFinished.connect(lambda rid, status: done.update(run=rid, status=status))
    w.controller.generate()
    if not wait(lambda: "status" in done, 300):
        print("generation did not finish", file=sys.stderr)
        return 6
    rec = w.history.get(done["run"])
    w.strip.select_step(rec.total)
    geo = w.geometry()
    dlg.move(geo.x() + geo.width() - dlg.width() - 40, geo.y() + 120)
    dlg.raise_()
    wait(lambda: False, 1.5)  # the gallery thumbnail and the last paints
    shot = w.screen().grabWindow(0)
    shot.save(out_png)
    from studio.core.gallery.store import Gallery

    with Gallery() as g:  # this machine's library (STUDIO_HOME), where the window saves
        paths = [str(i.path) for i in g.query()]
    info = {
        "platform": app.platformName(),
        "status": done["status"],
        "steps": rec.kept_steps(),
        "note": dlg.workers_note.text(),
        "files": paths,
        "worker": read_metadata(paths[0]).worker if paths else "",
    }
    Path(out_json).write_text(json.dumps(info))
    w.shutdown()
    return 0


@pytest.mark.timeout(600)
def test_real_window_runs_its_job_on_a_ray_worker(xvfb_display, tiny_models, tmp_path):
    pytest.importorskip("ray")
    env = {**os.environ, "PYTHONPATH": str(REPO), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
    cluster_home = tmp_path / "cluster-home"
    up = subprocess.run(
        [sys.executable, "-m", "studio", "cluster", "up", "--local", "--workers", "1", "--detach"],
        env={**env, "STUDIO_HOME": str(cluster_home)},
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert up.returncode == 0, up.stderr[-2000:]
    address = json.loads((cluster_home / "config" / "cluster.json").read_text())["address"]
    out_png, out_json = tmp_path / "studio-workers.png", tmp_path / "studio-workers.json"
    try:
        win = {**env, "DISPLAY": xvfb_display, "QT_QPA_PLATFORM": "xcb", "STUDIO_HOME": str(tmp_path / "home")}
        win.pop("WAYLAND_DISPLAY", None)
        proc = subprocess.run(
            [sys.executable, str(HERE), str(tiny_models("sd15", "single-file")), address, str(out_png), str(out_json)],
            env=win,
            capture_output=True,
            text=True,
            timeout=540,
        )
    finally:
        subprocess.run(
            [sys.executable, "-m", "studio", "cluster", "down"],
            env={**env, "STUDIO_HOME": str(cluster_home)},
            timeout=120,
            check=False,
        )
    assert proc.returncode == 0, proc.stderr[-3000:]
    dest = os.environ.get("STUDIO_SCREENSHOT_DIR")
    if dest:
        Path(dest).mkdir(parents=True, exist_ok=True)
        shutil.copy2(out_png, Path(dest) / out_png.name)
    info = json.loads(out_json.read_text())
    assert info["platform"] == "xcb" and info["status"] == "done"
    assert info["steps"] == list(range(1, 7))  # every step streamed back from the worker
    assert "studio-worker-0" in info["note"] and address in info["note"]
    assert len(info["files"]) == 1 and info["files"][0].startswith(str(tmp_path / "home"))  # saved here
    assert info["worker"].startswith("studio-worker-0 on ")


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    sys.exit(drive(*sys.argv[1:5]))
