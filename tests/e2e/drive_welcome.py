"""Run by test_welcome_screenshot.py in a subprocess on an Xvfb display (QT_QPA_PLATFORM=xcb):
open the real window with fresh settings the way `studio run` does (welcome page), screenshot it,
open the Models dialog on a folder of models and screenshot that, then choose the demo model.

usage: python drive_welcome.py OUT_DIR EXTRA_MODELS_FOLDER
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from drive_window import wait


def rect(widget) -> list[int]:
    top_left = widget.mapToGlobal(widget.rect().topLeft())
    return [top_left.x(), top_left.y(), widget.width(), widget.height()]


def main(out_dir: str, extra: str) -> int:
    from studio.qt.app.app import ensure_app
    from studio.qt.app.main_window import MainWindow

    out = Path(out_dir)
    app = ensure_app()

    def factory():
        from studio.engine.engine import Engine

        return Engine(device="cpu")

    w = MainWindow(factory, record_to_gallery=False)
    first = w.model_setup.welcome_if_first_run()  # what run_app() does without --model
    w.setGeometry(w.screen().availableGeometry())
    w.show()
    w.raise_()
    wait(lambda: w.bridge.device is not None, 120)
    end = time.monotonic() + 0.8
    wait(lambda: time.monotonic() > end, 2)
    w.screen().grabWindow(0).save(str(out / "studio-welcome.png"))
    view = w.model_setup.welcome
    info = {
        "first_run": first,
        "welcome_shown": w.model_setup.welcome_shown,
        "platform": app.platformName(),
        "demo_button": rect(view.buttons["demo"]) if view else None,
        "canvas_visible_on_welcome": w.canvas.isVisible(),
    }

    w.model_setup.settings.add_folder(extra)
    from studio.core import settings as core_settings

    core_settings.save(w.model_setup.settings)
    d = w.model_setup.open_models()
    d.resize(1150, 680)
    d.move(w.x() + 120, w.y() + 90)
    wait(lambda: not d.busy and d.model.rowCount() > 0, 60)
    broken = next((e.path for e in d.model.entries if not e.usable), "")
    if broken:
        d.select_path(broken)
    end = time.monotonic() + 0.8
    wait(lambda: time.monotonic() > end, 2)
    w.screen().grabWindow(0).save(str(out / "studio-models-dialog.png"))
    info.update(rows=d.model.rowCount(), details_status=d.fields["Status"].text(), dialog=rect(d))
    d.close()

    view.buttons["demo"].click()
    end = time.monotonic() + 0.5
    wait(lambda: time.monotonic() > end, 2)
    info.update(
        after_choice_welcome_shown=w.model_setup.welcome_shown,
        canvas_visible=w.canvas.isVisible(),
        model=w.prompt.model_name(),
        steps=w.prompt.steps.value(),
        size=w.prompt.width_.value(),
    )
    w.screen().grabWindow(0).save(str(out / "studio-after-welcome.png"))
    (out / "welcome.json").write_text(json.dumps(info))
    w.shutdown()
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.exit(main(*sys.argv[1:3]))
