"""The studio window: docks (Prompt, Queue, Gallery), the canvas with its Steps strip, menus,
shortcuts, the status bar, and settings that survive a restart."""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSize, Qt, QTimer
from PySide6.QtGui import QAction, QCloseEvent, QKeySequence
from PySide6.QtWidgets import (
    QApplication,
    QDockWidget,
    QFileDialog,
    QMainWindow,
    QMenu,
    QSplitter,
    QStackedWidget,
    QTabWidget,
    QVBoxLayout,
    QWidget,
)

from studio.core import recommend
from studio.core.errors import StudioError
from studio.core.paths import demo_model_dir
from studio.core.request import GenerationRequest
from studio.qt.app.kept_steps import KeptSteps
from studio.qt.app.menus import add_help_extras, build_menus
from studio.qt.app.settings import StudioSettings
from studio.qt.app.theme import THEME_KEY, apply_theme
from studio.qt.common.crash_dialog import CrashReporter
from studio.qt.common.session import MISSING_VAE as MISSING_VAE_TOPIC
from studio.qt.common.session import MODEL as MODEL_TOPIC
from studio.qt.common.session import Session
from studio.qt.common.widgets import MessageBar, ProgressGroup
from studio.qt.edit.workspace import EditWorkspace
from studio.qt.generate.canvas import CanvasView
from studio.qt.generate.controller import RunController
from studio.qt.generate.engine_worker import EngineBridge
from studio.qt.generate.plot_dialog import PlotDialog
from studio.qt.generate.prompt_panel import PromptPanel
from studio.qt.generate.queue_link import QueueLink
from studio.qt.generate.queue_panel import QueuePanel
from studio.qt.generate.queue_setup import QueueSetup
from studio.qt.generate.steps_strip import StepsStrip
from studio.qt.generate.upscale_dialog import Upscaling
from studio.qt.models.setup import ModelSetup
from studio.qt.plugins.docks import PluginDocks, discover_plugins
from studio.qt.plugins.docks import engine_factory as plugin_engine_factory
from studio.session.step_history import DEFAULT_BUDGET_MB, StepHistory

log = logging.getLogger(__name__)
GALLERY_MODULE = "studio.qt.gallery.panel"
MISSING_VAE = "The VAE this image was made with is not on this computer"  # the message bar's warning


def starter_request() -> GenerationRequest:
    """What a first start shows: something the bundled demo model (flat shapes, 128 px) draws well,
    with the settings recommended for it (resources/recommended_settings.json)."""
    demo = recommend.for_family("demo")
    assert demo is not None, "resources/recommended_settings.json has no demo entry"
    return GenerationRequest(
        model="demo",
        prompt="a large red circle in the center on a blue background",
        steps=demo.steps,
        guidance_scale=demo.cfg,
        guidance_end=demo.cfg_end,
        width=demo.width,
        height=demo.height,
        scheduler=demo.scheduler,
        schedule_type=demo.schedule_type,
        seed=11,
    )


def demo_model_present() -> bool:
    d = demo_model_dir()
    return (d / "model_index.json").is_file() or any(d.glob("*.safetensors")) if d.is_dir() else False


class MainWindow(QMainWindow):
    def __init__(
        self,
        engine_factory: Callable[[], Any] | None = None,
        *,
        record_to_gallery: bool = True,
        with_gallery: bool = True,
        history_budget_mb: float | None = None,
        model: str | None = None,
        durable_queue: bool | None = None,
    ) -> None:
        super().__init__()
        self.setObjectName("StudioWindow")
        self.setWindowTitle("Studio")
        self._record = record_to_gallery
        self.settings = StudioSettings()
        if history_budget_mb is None:  # how much memory the session's step history may use (window.ini)
            history_budget_mb = float(
                self.settings.value("history/budget_mb", DEFAULT_BUDGET_MB, int) or DEFAULT_BUDGET_MB
            )
        self.history = StepHistory(history_budget_mb)
        self.session = Session(self.history, self)  # the one model the panels bind to
        self.plugin_host = discover_plugins()
        if engine_factory is None:
            engine_factory = plugin_engine_factory(self.plugin_host)  # the engine uses the window's plugins
        self.bridge = EngineBridge(engine_factory, record_to_gallery, self, link=self._queue_link(durable_queue))

        # central: message bar, Generate / Edit tabs, steps strip ----------------------------------------
        self.messages = MessageBar()
        self.canvas = CanvasView()
        self.edit = EditWorkspace()
        self.tabs = QTabWidget(objectName="CentralTabs")
        self.tabs.setDocumentMode(True)
        self.tabs.addTab(self.canvas, "Generate")
        self.tabs.addTab(self.edit, "Edit")
        self.tabs.setTabToolTip(0, "Text to image: previews and results of every run.")
        self.tabs.setTabToolTip(1, "Image to image and inpainting: open or paste an image, paint a mask, Generate.")
        self.strip = StepsStrip(self.history)
        split = QSplitter(Qt.Orientation.Vertical, objectName="CentralSplit")
        split.addWidget(self.tabs)
        split.addWidget(self.strip)
        split.setStretchFactor(0, 1)
        split.setCollapsible(0, False)
        central = QWidget(objectName="Central")
        lay = QVBoxLayout(central)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(0)
        lay.addWidget(self.messages)
        self.central_stack = QStackedWidget(objectName="CentralStack")  # the studio; the welcome page on first run
        self.central_stack.addWidget(split)
        lay.addWidget(self.central_stack, 1)
        self.setCentralWidget(central)

        # docks -----------------------------------------------------------------------------------------
        self.prompt = PromptPanel()
        self.queue = QueuePanel(self.bridge)
        self.prompt_dock = self._dock("Prompt", self.prompt, Qt.DockWidgetArea.LeftDockWidgetArea)
        self.queue_dock = self._dock("Queue", self.queue, Qt.DockWidgetArea.RightDockWidgetArea)
        self.gallery = self._make_gallery() if with_gallery else None
        self.gallery_dock = None
        if self.gallery is not None:
            self.gallery_dock = self._dock("Gallery", self.gallery, Qt.DockWidgetArea.RightDockWidgetArea)
            self.splitDockWidget(self.gallery_dock, self.queue_dock, Qt.Orientation.Vertical)
            self.resizeDocks([self.gallery_dock, self.queue_dock], [560, 220], Qt.Orientation.Vertical)
        right = [d for d in (self.gallery_dock, self.queue_dock) if d is not None]
        self.resizeDocks([self.prompt_dock, *right], [360] + [400] * len(right), Qt.Orientation.Horizontal)
        self.setDockOptions(QMainWindow.DockOption.AnimatedDocks | QMainWindow.DockOption.AllowTabbedDocks)

        # status bar ------------------------------------------------------------------------------------
        self.progress = ProgressGroup()
        self.statusBar().addPermanentWidget(self.progress)
        self.statusBar().setSizeGripEnabled(False)

        self._bind_session()
        self.controller = RunController(
            self.bridge, self.session, self.canvas, self.strip, self.queue, self.progress, self
        )
        self.controller.gallery = self.gallery
        self.controller.edit = self.edit
        self.queue_setup = QueueSetup(self, self.controller)  # the durable queue: Resume prompt, store view
        self.queue_setup.reviewRequested.connect(self._show_queue)
        self.crash_reporter = CrashReporter(self, self._known_prompts, lambda: self.bridge.device)
        self.prompt.image_input.attach(self.edit)
        self.tabs.currentChanged.connect(lambda _i: self.prompt.image_input.set_edit_mode(self.edit_mode()))
        self.canvas.useAsInputRequested.connect(self.use_image_as_input)
        self.plot_dialog: PlotDialog | None = None  # Generate ▸ X/Y/Z plot…
        self.upscaling = Upscaling(self, self.controller)  # Upscale… on a gallery item and on the canvas
        self.canvas.upscaleRequested.connect(self.upscaling.from_canvas)
        upscale_requested = getattr(self.gallery, "upscaleRequested", None)  # a gallery panel may lack it
        if upscale_requested is not None:
            upscale_requested.connect(self.upscaling.from_file)
        self.controller.runStarted.connect(self._run_started)
        self.edit.canvas.problem.connect(lambda m: self.session.say(m, "The canvas was kept as it was.", "warning"))
        self.edit.session.failed.connect(
            lambda m: self.session.say(m, "Your canvas is still open; check the disk and keep working.", "warning")
        )
        self.controller.on_request_queued.append(self._remember_request)
        self.messages.actionTriggered.connect(self._message_action)
        self.prompt.generateRequested.connect(self.controller.generate)
        self.prompt.cancelRequested.connect(self.controller.cancel_current)
        self.bridge.tokenizerReady.connect(self.prompt.set_tokenizer)
        self.prompt.modelChosen.connect(self.choose_model)
        self.prompt.vae_default.clicked.connect(lambda: self.session.withdraw(MISSING_VAE_TOPIC))
        build_menus(self)
        self.model_setup = ModelSetup(self)  # Models menu and dialogs, Device dialog, welcome page
        self.session.modelChosen.connect(self._preload)  # after the recommended settings
        self.kept_steps = KeptSteps(self)  # a gallery image's kept steps in the strip; View ▸ Kept steps…
        self.plugin_docks = PluginDocks(self, self.plugin_host)  # LoRA / ControlNet docks, Plugins and Help menus
        add_help_extras(self)
        self.restore_settings(model)
        self._check_demo_model()
        self._restore_canvas()

    # -- construction -------------------------------------------------------------------------------------
    def _bind_session(self) -> None:
        """The Prompt panel edits the session's draft, the message bar shows its messages, the bridge
        is its queue; what other parts ask of the draft arrives through the session's signals."""
        s, p = self.session, self.prompt
        s.bind_draft(p)
        s.bind_queue(self.bridge)
        s.field_contributors.extend(p.field_contributors)  # the panel's own first (the family's encoders)
        p.field_contributors = s.field_contributors  # one list: then the default VAE, the plugin panels
        p.default_vae = lambda model: s.default_vae(model)
        s.requestLoaded.connect(p.set_request)
        s.settingsRecommended.connect(p.apply_recommendation)
        s.promptTextInserted.connect(p.insert_prompt_text)
        s.defaultsChanged.connect(p.update_vae_note)
        s.defaultsChanged.connect(lambda: self.say_missing_vae(only_if_shown=True))
        s.messagePosted.connect(self.messages.post)
        s.messageWithdrawn.connect(self.messages.withdraw)
        s.modelChosen.connect(self._remember_model)
        s.modelChosen.connect(p.set_model)
        s.modelAdded.connect(lambda model: p.set_recent_models(self.settings.add_recent_model(model)))

    def _dock(self, title: str, widget: QWidget, area: Qt.DockWidgetArea) -> QDockWidget:
        dock = QDockWidget(title, self)
        dock.setObjectName(f"{title}Dock")
        dock.setWidget(widget)
        dock.setFeatures(
            QDockWidget.DockWidgetFeature.DockWidgetMovable
            | QDockWidget.DockWidgetFeature.DockWidgetFloatable
            | QDockWidget.DockWidgetFeature.DockWidgetClosable
        )
        self.addDockWidget(area, dock)
        return dock

    def _make_gallery(self) -> QWidget | None:
        try:
            module = importlib.import_module(GALLERY_MODULE)
            panel = module.GalleryPanel()
        except ModuleNotFoundError as exc:
            if exc.name != GALLERY_MODULE:
                log.warning("gallery panel unavailable: %s", exc)
            return None
        except Exception as exc:  # noqa: BLE001 — a panel that fails to start must not stop the window
            log.warning("gallery panel failed to start: %s", exc)
            return None
        panel.recreateRequested.connect(self._recreate)
        panel.useAsInputRequested.connect(self._use_as_input)
        if hasattr(panel, "statusMessage"):
            panel.statusMessage.connect(lambda m: self.statusBar().showMessage(m, 5000))
        return panel

    def _queue_link(self, durable: bool | None) -> QueueLink | None:
        """The library's durable queue, unless this window keeps its queue in memory (tests)."""
        if not (self._record if durable is None else durable):
            return None
        try:
            return QueueLink()
        except StudioError as exc:  # the library cannot be opened: the window still works, in memory
            log.warning("durable queue unavailable: %s", exc)
            return None

    def _show_queue(self) -> None:
        self.queue_dock.show()
        self.queue_dock.raise_()

    def _known_prompts(self) -> list[str]:
        """Prompts the crash report hides unless the user includes them."""
        out = [self.prompt.prompt.toPlainText()]
        for rec in self.history.runs.values():
            out += [rec.request.prompt, rec.request.negative_prompt]
        return [p for p in out if p]

    def show_plot(self) -> PlotDialog:
        """The X/Y/Z Plot dialog (one per window, kept with its grid while the window is open)."""
        if self.plot_dialog is None:
            self.plot_dialog = PlotDialog(self.controller, self)
        self.plot_dialog.show()
        self.plot_dialog.raise_()
        return self.plot_dialog

    def add_menu_action(self, menu: QMenu, text: str, slot, shortcut=None, tip: str = "") -> QAction:
        """An entry in one of the window's menus, with its shortcut and tip (the plugins' menu entries too)."""
        act = QAction(text, self)
        if shortcut is not None:
            act.setShortcut(QKeySequence(shortcut))
        if tip:
            act.setToolTip(tip)
            act.setStatusTip(tip)
        act.triggered.connect(lambda _checked=False: slot())
        menu.addAction(act)
        self.addAction(act)
        return act

    def set_theme(self, choice: str) -> None:
        """View ▸ Theme: "system" (follow the system's light or dark scheme), "dark" or "light"; kept."""
        self.settings.set_value(THEME_KEY, choice)
        app = QApplication.instance()
        if isinstance(app, QApplication):
            apply_theme(app, choice)

    def device_text(self) -> str:
        """The status bar's device line (device · dtype · preset)."""
        return self.progress.device.text()

    def _nudge_step(self, delta: int) -> None:
        self.strip.slider.setValue(self.strip.slider.value() + delta)

    # -- models and messages ------------------------------------------------------------------------------
    def _check_demo_model(self) -> None:
        if self.session.model() == "demo" and not demo_model_present():
            self.session.say(
                "The bundled demo model is not installed yet.",
                f"It belongs in {demo_model_dir()}. Meanwhile choose a model folder or a .safetensors file.",
                kind="warning",
                action="Choose model…",
                action_key="choose-model",
                topic=MODEL_TOPIC,
            )

    def _message_action(self, key: str) -> None:
        if key == "choose-model":
            self.prompt.choose_model_folder()
        elif key == "vae-defaults":
            self.model_setup.open_models(tab=1)  # the Folders tab lists the default VAEs, with Clear

    def choose_model(self, model: str) -> None:
        """Use `model` from now on: the session's modelChosen is heard, in this order, by the recent
        list, the Prompt panel, the recommended settings (ModelSetup) and the preload below."""
        self.session.choose_model(model)

    _model_chosen = choose_model  # the name tests and older scripts use

    def _remember_model(self, model: str) -> None:
        self.prompt.set_recent_models(self.settings.add_recent_model(model))

    def _preload(self, model: str) -> None:
        """Load a chosen model now on the engine thread, so a bad file is said at once."""
        fields: dict = {}
        for contribute in self.session.field_contributors:  # a transformer-only file's encoders and VAE
            fields.update(contribute())
        parts = (tuple(fields.get("text_encoders", ())), str(fields.get("vae", "")))
        self.bridge.preload(model, parts)

    def say_missing_vae(self, only_if_shown: bool = False) -> None:
        """Warn when the recipe's VAE kept by the Prompt panel is not on this computer, offering only what
        the window shows: "Use default" when the default VAE differs (the panel shows that button), else
        (the missing file is the default VAE too) the Models dialog, where that default is cleared or changed.
        only_if_shown: just bring a warning already on screen up to date (the defaults changed)."""
        shown = self.messages.isVisible() and self.messages.topic == MISSING_VAE_TOPIC
        if only_if_shown and not shown:
            return
        vae = self.prompt.recipe_vae()
        if not vae or Path(vae).expanduser().exists():
            self.session.withdraw(MISSING_VAE_TOPIC)
            return
        message = f"{MISSING_VAE}: {Path(vae).name}."
        if self.prompt.recipe_vae_differs():
            default = self.session.default_vae(self.session.model())
            instead = f"the default VAE ({Path(default).name})" if default else "the model's own VAE"
            self.session.say(
                message,
                f'{vae} is missing, so Generate will stop until it is back. Press "Use default" in the '
                f"Prompt panel to draw with {instead} instead (the image will differ).",
                kind="warning",
                topic=MISSING_VAE_TOPIC,
            )
        else:
            self.session.say(
                message,
                f"{vae} is missing, and it is also the default VAE for this model, so Generate will stop "
                "until it is back. To draw with another VAE instead (the image will differ), clear or change that "
                "default in Models ▸ Models… ▸ Folders.",
                kind="warning",
                action="VAE defaults…",
                action_key="vae-defaults",
                topic=MISSING_VAE_TOPIC,
            )

    def _recreate(self, request: GenerationRequest) -> None:
        if request.upscale is not None and request.init_image is not None:  # the same upscale, in its dialog
            self.upscaling.from_file(request.init_image.path, chosen=request)
            return
        self.session.load_request(request.replace(branch=None), keep_vae=True)  # its VAE too: it changes the pixels
        self.plugin_docks.load_request(request)
        self.prompt.seed_lock.setChecked(True)
        self.say_missing_vae()
        if request.init_image is not None:  # an edit: its input (mask, outpaint growth) goes back on the Edit canvas
            if not self.edit.load_request(request):
                return  # the canvas said what it could not read
            self.prompt.image_input.set_request(request)
            self.show_edit()
            self.statusBar().showMessage(
                f"Recipe loaded with its input on the Edit canvas ({request.kind}, seed locked). "
                "Ctrl+Enter recreates it.",
                6000,
            )
            return
        if self.edit_mode():  # a prompt-only recipe: Generate from the Edit tab would make an img2img of it
            self.tabs.setCurrentWidget(self.canvas)
        self.statusBar().showMessage(
            "Recipe loaded into the Prompt panel (seed locked). Ctrl+Enter recreates it.", 6000
        )

    # -- edit canvas --------------------------------------------------------------------------------
    def edit_image(self) -> Any:
        """The Edit canvas's picture as an (H, W, 3) uint8 array, or None when it is empty."""
        return self.edit.canvas.image() if self.edit.has_image() else None

    def edit_mode(self) -> bool:
        return self.tabs.currentWidget() is self.edit

    def show_edit(self) -> None:
        self.tabs.setCurrentWidget(self.edit)
        self.prompt.image_input.set_edit_mode(True)

    def _run_started(self, run_id: str) -> None:
        # a text-to-image run queued from an empty Edit tab: show it where it is drawn
        if run_id not in self.controller.edit_serials and self.edit_mode() and not self.edit.has_image():
            self.tabs.setCurrentWidget(self.canvas)

    def _use_as_input(self, path: str) -> None:
        """The gallery's "Use as input": the file goes on the Edit canvas."""
        if self.edit.load_input(path):
            self.show_edit()
            self.statusBar().showMessage(
                f"{Path(path).name} is on the Edit canvas: paint a mask to inpaint, or Generate for img2img.", 6000
            )

    def use_image_as_input(self, array) -> bool:
        if not self.edit.set_input(array):
            return False
        self.show_edit()
        self.statusBar().showMessage(
            "The result is on the Edit canvas: paint a mask to inpaint, or Generate for img2img.", 6000
        )
        return True

    def open_image_to_edit(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Open image to edit", "", "Images (*.png *.jpg *.jpeg *.webp *.bmp *.tif *.tiff);;All files (*)"
        )
        if path:
            self._use_as_input(path)

    def _restore_canvas(self) -> None:
        try:
            restored = self.edit.restore_session()
        except Exception as exc:  # noqa: BLE001 — a damaged autosave must never stop the window
            log.warning("canvas session restore: %s", exc)
            restored = False
        if restored:
            self.show_edit()
            w, h = self.edit.image_size()
            self.session.say(
                "Your Edit canvas was restored after the studio closed unexpectedly.",
                f"The {w}×{h} image, its mask and undo steps are back (Ctrl+Z works).",
                kind="info",
            )

    # -- settings -----------------------------------------------------------------------------------------
    def _remember_request(self, request: GenerationRequest) -> None:
        self.settings.save_request(request)
        if request.model != "demo":
            self.prompt.set_recent_models(self.settings.add_recent_model(request.model))

    def restore_settings(self, model: str | None = None) -> None:
        s = self.settings
        geometry, state = s.geometry(), s.state()
        if geometry is not None:
            self.restoreGeometry(geometry)
        else:
            self.resize(self._default_size())
        self._fresh_layout = state is None
        if state is not None:
            self.restoreState(state)
        self.prompt.set_recent_models(s.recent_models())
        last = s.last_request()
        self.prompt.set_request(last if last is not None else starter_request())
        self.prompt.seed_lock.setChecked(s.value("prompt/seed_locked", False, bool))
        self.prompt.batch.setValue(s.value("prompt/batch_count", 1, int) or 1)
        if model:
            self.prompt.set_model(model)

    def _default_size(self) -> QSize:
        screen = self.screen().availableGeometry() if self.screen() is not None else None
        want = QSize(1600, 960)
        if screen is None or screen.width() < 200:
            return want
        return QSize(min(want.width(), int(screen.width() * 0.95)), min(want.height(), int(screen.height() * 0.92)))

    def save_settings(self) -> None:
        s = self.settings
        s.save_layout(self.saveGeometry(), self.saveState())
        with contextlib.suppress(Exception):  # an invalid half-typed request is simply not saved
            s.save_request(GenerationRequest.create(**self.prompt.fields()))
        s.set_value("prompt/seed_locked", self.prompt.seed_lock.isChecked())
        s.set_value("prompt/batch_count", self.prompt.batch.value())
        s.sync()

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        if not getattr(self, "_laid_out", False):
            self._laid_out = True
            QTimer.singleShot(0, self.queue_setup.start)  # what waits from the last session, offered back
            if self._fresh_layout and self.gallery_dock is not None:  # first start: most of the column to the gallery
                h = max(400, self.height() - 120)
                self.resizeDocks(
                    [self.gallery_dock, self.queue_dock], [int(h * 0.76), int(h * 0.24)], Qt.Orientation.Vertical
                )

    # -- lifetime -----------------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """Save settings, stop the engine thread and the gallery's workers. Safe to call twice."""
        if getattr(self, "_shut", False):
            return
        self._shut = True
        self.save_settings()
        self.queue_setup.timer.stop()
        self.crash_reporter.close()
        self.plugin_docks.shutdown()
        try:
            self.edit.session.close()  # a clean close: the next start does not offer a restore
        except Exception as exc:  # noqa: BLE001 — closing must go on
            log.warning("canvas session close: %s", exc)
        self.model_setup.shutdown()
        self.bridge.shutdown()
        if self.gallery is not None and hasattr(self.gallery, "shutdown"):
            try:
                self.gallery.shutdown()
            except Exception as exc:  # noqa: BLE001 — closing must go on
                log.warning("gallery shutdown: %s", exc)

    def closeEvent(self, event: QCloseEvent) -> None:  # noqa: N802
        if not getattr(self, "_shut", False) and not self.model_setup.confirm_quit():
            event.ignore()  # a download is running and the user keeps the window
            return
        self.shutdown()
        super().closeEvent(event)
