"""The main window's own menus: File, Generate, View (with the theme) and Help's log folder."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtGui import QActionGroup, QKeySequence
from PySide6.QtWidgets import QMenu

from studio.qt.app.theme import THEME_KEY
from studio.qt.common.crash_dialog import open_log_folder


def build_menus(w: Any) -> None:
    """The window's File, Generate and View menus (the plugins and the Models setup add their own)."""
    bar = w.menuBar()
    file_menu = bar.addMenu("&File")
    w.open_folder_action = w.add_menu_action(
        file_menu,
        "Open model folder…",
        w.prompt.choose_model_folder,
        "Ctrl+O",
        "Use a diffusers model folder (with model_index.json).",
    )
    w.add_menu_action(
        file_menu,
        "Open model file…",
        w.prompt.choose_model_file,
        "Ctrl+Shift+O",
        "Use a single-file .safetensors checkpoint.",
    )
    w.add_menu_action(
        file_menu,
        "Open image to edit…",
        w.open_image_to_edit,
        "Ctrl+Shift+E",
        "Put an image on the Edit canvas for img2img or inpainting.",
    )
    file_menu.addSeparator()
    w.add_menu_action(file_menu, "Quit", w.close, QKeySequence.StandardKey.Quit)

    gen = bar.addMenu("&Generate")
    w.generate_action = w.add_menu_action(
        gen, "Generate", w.controller.generate, "Ctrl+Return", "Queue the Prompt panel's request."
    )
    w.generate_action.setShortcuts([QKeySequence("Ctrl+Return"), QKeySequence("Ctrl+Enter")])
    w.cancel_action = w.add_menu_action(
        gen, "Cancel", w.controller.cancel_current, "Esc", "Stop the running request within one step."
    )
    w.add_menu_action(
        gen, "Cancel all", w.controller.cancel_all, "Shift+Esc", "Stop the running request and empty the queue."
    )
    w.add_menu_action(
        gen,
        "X/Y/Z plot…",
        w.show_plot,
        "Ctrl+Shift+P",
        "The Prompt panel's recipe over up to three axes of values, as a labelled grid.",
    )
    gen.addSeparator()
    w.add_menu_action(
        gen,
        "Use shown result as input",
        w.canvas.use_as_input,
        "Ctrl+Shift+U",
        "Put the finished image on the Edit canvas to keep working on it.",
    )
    w.add_menu_action(
        gen,
        "Branch from selected step",
        w.strip._branch,
        "Ctrl+B",
        "Continue the selected step of a finished run with the current prompt and settings.",
    )
    w.add_menu_action(gen, "Previous step", lambda: w._nudge_step(-1), "Alt+Left")
    w.add_menu_action(gen, "Next step", lambda: w._nudge_step(+1), "Alt+Right")
    for a in (w.generate_action, w.cancel_action):
        a.setShortcutContext(Qt.ShortcutContext.WindowShortcut)

    view = w.view_menu = bar.addMenu("&View")
    for dock in (w.prompt_dock, w.queue_dock, w.gallery_dock):
        if dock is not None:
            view.addAction(dock.toggleViewAction())
    view.addSeparator()
    themes = view.addMenu("Theme")
    group = QActionGroup(w)
    current = w.settings.value(THEME_KEY, "system") or "system"
    for choice, label in (("system", "Follow the system"), ("dark", "Dark"), ("light", "Light")):
        act = themes.addAction(label)
        act.setCheckable(True)
        act.setChecked(choice == current)
        group.addAction(act)
        act.triggered.connect(lambda _checked=False, c=choice: w.set_theme(c))


def add_help_extras(w: Any) -> None:
    """Help ▸ Open log folder."""
    found = next((a.menu() for a in w.menuBar().actions() if a.text() == "&Help"), None)
    help_menu = found if isinstance(found, QMenu) else w.menuBar().addMenu("&Help")
    w.log_folder_action = w.add_menu_action(
        help_menu, "Open log folder", open_log_folder, tip="The studio's log (studio.log), for a bug report."
    )
