"""The window's model manager: the Models menu, the Models and Device dialogs, the first-run
welcome page, recommended settings applied when a model is chosen, the shared settings
(default VAE per architecture into every request; tiny autoencoders, memory preset and
out-of-memory fallback into the engine thread), and Hub downloads, which belong to the window so
they go on while the Models dialog is closed (shown in the status bar then) and stop on quit."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QFileDialog, QMenu, QMessageBox

from studio.core import library, paths, recommend
from studio.core import settings as core_settings
from studio.core.recommend import Recommendation
from studio.core.request import guidance_span
from studio.qt.common import background
from studio.qt.common.window import StudioWindow
from studio.qt.models.download import Downloads, DownloadStatus

log = logging.getLogger(__name__)
WELCOME_KEY = "welcome/choice"


class ModelSetup(QObject):
    def __init__(self, window: StudioWindow) -> None:
        super().__init__(window.window())
        self.w = window
        self.settings = core_settings.load()
        self._arch: dict[str, str] = {}  # model -> architecture (read from its header once)
        self._recommended_for = ""
        self.models_dialog: Any = None
        self.device_dialog: Any = None
        self.welcome: Any = None
        self.downloads = Downloads(self)
        self.downloads.downloaded.connect(self._downloaded)
        self.downloads.failed.connect(self._download_failed)
        self.download_status = DownloadStatus(self.downloads)
        self.download_status.openRequested.connect(lambda: self.open_models(tab=2))
        window.statusBar().insertPermanentWidget(0, self.download_status)
        window.session.field_contributors.append(self.request_fields)
        window.session.default_vae = self.default_vae
        window.session.modelChosen.connect(self.model_chosen)  # its recommended settings
        window.bridge.engineInfo.connect(window.progress.set_device)  # the status bar shows the preset too
        window.controller.runStarted.connect(self._run_started)
        self.push_engine_settings()
        self._build_menu()

    # -- menu -------------------------------------------------------------------------------------
    def _build_menu(self) -> None:
        bar = self.w.menuBar()
        menu = QMenu("&Models", bar)
        self.menu = menu
        self._act(
            menu,
            "Models…",
            self.open_models,
            "Ctrl+Shift+M",
            "Everything in your library and model folders: details, rename, delete, defaults.",
        )
        self._act(
            menu,
            "Import a model file…",
            lambda: self.open_models().import_file(),
            None,
            "Copy or link a .safetensors checkpoint into the library.",
        )
        self._act(
            menu,
            "Add a models folder…",
            lambda: self.open_models(tab=1).add_folder(),
            None,
            "Scan an AUTOMATIC1111 or ComfyUI models folder, or the Hugging Face cache, with the library.",
        )
        self._act(
            menu,
            "Download models…",
            lambda: self.open_models(tab=2),
            None,
            "Fetch a starter model or any repository from the Hugging Face Hub.",
        )
        menu.addSeparator()
        self._act(menu, "Welcome page", self.show_welcome, None, "The first-run choices again.")
        view = next(
            (m for a in bar.actions() if isinstance(m := a.menu(), QMenu) and a.text().replace("&", "") == "View"), None
        )
        bar.insertMenu(view.menuAction(), menu) if view is not None else bar.addMenu(menu)
        target = view if view is not None else menu
        target.addSeparator()
        self.device_action = self._act(
            target,
            "Device and memory…",
            self.open_device,
            None,
            "Device, number format, attention, memory in use and peak; the memory preset.",
        )

    def _act(self, menu: QMenu, text: str, slot, shortcut=None, tip: str = "") -> QAction:
        act = QAction(text, self.w)
        if shortcut:
            act.setShortcut(QKeySequence(shortcut))
        act.setStatusTip(tip)
        act.setToolTip(tip)
        act.triggered.connect(lambda _c=False: slot())
        menu.addAction(act)
        self.w.addAction(act)
        return act

    # -- settings into requests and the engine -------------------------------------------------
    def arch_of(self, model: str) -> str:
        if model not in self._arch:
            entry = library.identify(model)
            self._arch[model] = entry.arch if entry is not None else ""
        return self._arch[model]

    def default_vae(self, model: str) -> str:
        """The default VAE for `model`'s architecture ("": the model's own)."""
        return self.settings.vae_for(self.arch_of(model))

    def request_fields(self) -> dict[str, Any]:
        """The default VAE for the chosen model's architecture (part of the recipe: it changes the pixels).
        A recreated recipe's own VAE, kept by the Prompt panel, takes its place there."""
        model = self.w.session.model()
        vae = self.default_vae(model)
        prediction = self.settings.prediction_for(model)  # an SD 2.x file's ε/v, overridden in the Models dialog
        return {**({"vae": vae} if vae else {}), **({"prediction_type": prediction} if prediction else {})}

    def push_engine_settings(self) -> None:
        s = self.settings
        taesd = library.tiny_autoencoders(s)  # the defaults, else TAESD & kin found in the model folders
        self.w.bridge.configure(preset=s.memory_preset, auto_fallback=s.oom_fallback, taesd=taesd)

    def reload_settings(self) -> None:
        self.settings = core_settings.load()
        self._arch.clear()
        self.push_engine_settings()
        self.w.session.notify_defaults_changed()  # the recipe's VAE note and a missing-VAE warning follow

    # -- recommended settings ------------------------------------------------------------------
    def model_chosen(self, model: str) -> Recommendation | None:
        """A model was picked: put its recommended settings in the Prompt panel (once per change of model)."""
        if model == self._recommended_for:
            return None
        self._recommended_for = model
        rec = recommend.for_model(model)
        if rec is None:
            return None
        self.w.session.recommend(rec)
        guidance = {"distilled": f"guidance {rec.cfg:g} (distilled)", "none": "no guidance"}.get(
            rec.guidance, f"CFG {rec.cfg:g}{guidance_span(rec.cfg_end)}"
        )
        self.w.statusBar().showMessage(
            f"Recommended for {rec.label}: {rec.steps} steps, {guidance}, "
            f"{rec.width}×{rec.height}, {rec.sampler_label} — change them as you like.",
            8000,
        )
        return rec

    # -- dialogs --------------------------------------------------------------------------------
    def open_models(self, tab: int = 0):
        from studio.qt.models.dialog import ModelsDialog

        if self.models_dialog is None:
            d = ModelsDialog(self.w.window(), downloads=self.downloads)
            d.shownChanged.connect(self.download_status.set_dialog_shown)
            d.modelChosen.connect(self.w.session.choose_model)
            d.settingsChanged.connect(self.reload_settings)
            device = self.w.bridge.device or {}
            d.download.fp16.setChecked(device.get("dtype") == "float16")
            self.models_dialog = d
        elif not self.models_dialog.isVisible():  # opened again: files may have changed meanwhile
            self.models_dialog.settings = core_settings.load()
            self.models_dialog.refresh_folders()
            self.models_dialog.rescan()
        self.models_dialog.tabs.setCurrentIndex(tab)
        self.models_dialog.show()
        self.models_dialog.raise_()
        self.models_dialog.activateWindow()
        return self.models_dialog

    def open_device(self):
        from studio.qt.models.device_dialog import DeviceDialog

        if self.device_dialog is None:
            self.device_dialog = DeviceDialog(self.w.bridge, self.w.window())
            self.device_dialog.presetChanged.connect(lambda _p: self.reload_settings())
        self.device_dialog.show()
        self.device_dialog.raise_()
        return self.device_dialog

    # -- first run ------------------------------------------------------------------------------
    def is_first_run(self) -> bool:
        s = self.w.settings
        return not s.value(WELCOME_KEY) and s.last_request() is None

    def welcome_if_first_run(self) -> bool:
        """Open on the welcome page when the user has never chosen how to get a model."""
        if self.is_first_run():
            self.show_welcome()
            return True
        return False

    def show_welcome(self) -> None:
        from studio.qt.models.welcome import WelcomeView

        if self.welcome is None:
            self.welcome = WelcomeView()
            self.welcome.choiceMade.connect(self.welcome_choice)
            self.w.central_stack.addWidget(self.welcome)
        self.w.central_stack.setCurrentWidget(self.welcome)

    def hide_welcome(self) -> None:
        if self.welcome is not None:
            self.w.central_stack.setCurrentIndex(0)
            self.w.central_stack.removeWidget(self.welcome)
            self.welcome.deleteLater()
            self.welcome = None

    @property
    def welcome_shown(self) -> bool:
        return self.welcome is not None and self.w.central_stack.currentWidget() is self.welcome

    def welcome_choice(self, key: str) -> None:
        if key == "demo":
            self._remember(key)
            self.w.session.choose_model("demo")
        elif key in ("import-file", "import-folder"):
            if key == "import-file":
                path, _ = QFileDialog.getOpenFileName(
                    self.w.window(),
                    "Import a checkpoint",
                    str(Path.home()),
                    "Checkpoints (*.safetensors *.gguf);;All files (*)",
                )
            else:
                path = QFileDialog.getExistingDirectory(
                    self.w.window(), "Import a diffusers model folder", str(Path.home())
                )
            if not path:
                return
            model = self._import(path)
            if model is None:
                return
            self._remember("import")
            self.w.session.choose_model(model)
        elif key == "folder":
            path = QFileDialog.getExistingDirectory(
                self.w.window(), "Your AUTOMATIC1111 or ComfyUI models folder", str(Path.home())
            )
            if not path:
                return
            self.settings.add_folder(path)
            core_settings.save(self.settings)
            self.reload_settings()
            self._remember(key)
            d = self.open_models()
            d.kind.setCurrentIndex(d.kind.findData("checkpoint"))
        elif key == "download":
            self._remember(key)
            self.open_models(tab=2)

    def _run_started(self, _run_id: str) -> None:
        if self.welcome_shown:  # Generate pressed on the welcome page: show the run (the studio is in use now)
            self._remember("generate")

    def _import(self, path: str) -> str | None:
        """Link the file or folder into the library; use it in place if linking is not possible."""
        try:
            return str(library.import_model(path, "link"))
        except library.LibraryError as exc:
            existing = paths.models_dir() / Path(path).name
            if "already" in exc.message and existing.exists():
                return str(existing)
            if "Cannot link" in exc.message:
                return path
            if self.welcome is not None:
                self.welcome.say(str(exc))
            return None

    def _remember(self, key: str) -> None:
        self.w.settings.set_value(WELCOME_KEY, key)
        self.w.settings.sync()
        self.hide_welcome()

    # -- downloads ------------------------------------------------------------------------------
    def _dialog_shown(self) -> bool:
        return self.models_dialog is not None and self.models_dialog.isVisible()

    def _downloaded(self, path: str) -> None:
        """A download finished: a model goes into the Prompt panel's model list (the Models dialog rescans
        and selects it itself); said in the status bar when the dialog is closed."""
        entry = library.identify(path)
        usable = entry is not None and entry.usable and entry.kind in recommend.CHECKPOINT_KINDS
        if usable:
            self.w.session.add_model(path)
        if not self._dialog_shown():
            where = "in the model list and in Models ▸ Models…" if usable else "in Models ▸ Models…"
            self.w.statusBar().showMessage(f"Downloaded {self.downloads.repo}: it is {where}", 15000)

    def _download_failed(self, message: str, hint: str) -> None:
        if not self._dialog_shown():  # the Download tab says it when it is open
            self.w.session.say(
                f"Downloading {self.downloads.repo} failed: {message}",
                f"{hint} Download it again to resume (Models ▸ Download models…).".strip(),
                kind="warning",
            )

    def confirm_quit(self) -> bool:
        """Quitting with a download running: ask whether to stop it (it resumes next time) or keep the window."""
        d = self.downloads
        if not d.busy or d.stopping:
            return True
        done = f" ({d.fraction():.0%} done)" if d.fraction() is not None else ""
        answer = QMessageBox.question(
            self.w.window(),
            "A download is running",
            f"{d.repo} is still downloading{done}.\n\nStop it and quit? The files already complete are kept: "
            "downloading it again resumes from there.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    # -- lifetime -------------------------------------------------------------------------------
    def shutdown(self) -> None:
        for d in (self.models_dialog, self.device_dialog):
            if d is not None:
                d.close()
        if not self.downloads.shutdown():
            log.warning("the download did not stop in time")
        if not background.stop_all():
            log.warning("a model-manager task did not stop in time")
