"""Run by test_flux_screenshot.py on an Xvfb display (QT_QPA_PLATFORM=xcb): the real window with a
tiny FLUX.1 dev transformer-only GGUF in a ComfyUI folder — its text encoders and VAE found beside
it — generates; screenshot of the window (Prompt panel: no negative prompt and why, "Guidance",
each encoder's token count), then of the Models dialog on that folder.

usage: python drive_flux.py COMFY_MODELS_ROOT MODEL OUT_DIR
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from drive_window import global_rect, wait


def main(root: str, model: str, out_dir: str) -> int:
    from studio.core import settings as core_settings
    from studio.qt.app.app import ensure_app
    from studio.qt.app.main_window import MainWindow

    out = Path(out_dir)
    app = ensure_app()

    def factory():
        from studio.engine.engine import Engine

        return Engine(device="cpu")

    w = MainWindow(factory, record_to_gallery=False)
    w.setGeometry(w.screen().availableGeometry())
    w.show()
    w.raise_()
    p = w.prompt
    w._model_chosen(model)  # as picking it: FLUX dev's recommended settings
    p.prompt.setPlainText("a red circle at the top left on a blue background")
    p.steps.setValue(4)
    p.set_size(64, 64)
    p.seed.setValue(3)
    p.seed_lock.setChecked(True)
    done: dict = {}
    w.controller.runFinished.connect(lambda rid, status: done.update(run=rid, status=status))
    if not wait(lambda: w.bridge.device is not None, 120):
        print("engine did not start", file=sys.stderr)
        return 3
    w.controller.generate()
    if not wait(lambda: "status" in done, 150):
        print("generation did not finish", file=sys.stderr)
        return 4
    rec = w.history.get(done["run"])
    w.strip.select_step(rec.total)
    end = time.monotonic() + 1.0
    wait(lambda: time.monotonic() > end, 3)
    w.screen().grabWindow(0).save(str(out / "studio-flux.png"))
    ratio = w.screen().devicePixelRatio()
    fam = p.family
    info = {
        "platform": app.platformName(),
        "status": done["status"],
        "steps": rec.kept_steps(),
        "negative_enabled": p.negative.isEnabled(),
        "negative_note": fam.negative_note.text(),
        "negative_note_rect": global_rect(fam.negative_note, ratio),
        "guidance_label": fam.guidance_row_label.text(),
        "guidance": p.guidance.value(),
        "scheduler": p.scheduler.currentText(),
        "tokens": p.prompt_tokens.text(),
        "encoders_text": fam.encoders_label.text(),
        "encoders_rect": global_rect(fam.encoders_row, ratio),
        "request": rec.request.to_dict() if getattr(rec, "request", None) is not None else None,
    }
    core_settings.save(w.model_setup.settings) if w.model_setup.settings.add_folder(root) else None
    d = w.model_setup.open_models()
    d.resize(1150, 680)
    d.move(w.x() + 120, w.y() + 90)
    wait(lambda: not d.busy and d.model.rowCount() > 0, 60)
    d.select_path(model)
    end = time.monotonic() + 0.8
    wait(lambda: time.monotonic() > end, 2)
    w.screen().grabWindow(0).save(str(out / "studio-flux-models.png"))
    from studio.qt.models.table import arch_label

    info["rows"] = {Path(e.path).name: [e.kind, arch_label(e), e.precision] for e in d.model.entries}
    info["details_status"] = d.fields["Status"].text()
    d.close()
    (out / "flux.json").write_text(json.dumps(info))
    w.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
