"""Help ▸ Device and memory…: what the engine runs on and how much memory it uses, the memory
preset (saved in the shared settings and handed to the engine thread at once), and Workers: who
runs the jobs — this machine, a Ray worker per GPU of it, or a Ray cluster by address (asked to
confirm first when the address is not this machine's)."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from studio.core import settings as core_settings
from studio.engine.devices import available_devices
from studio.qt.common.widgets import fmt_mb

WORKER_CHOICES = (
    ("This machine", "local"),
    ("Every GPU of this machine", "gpus"),
    ("A Ray cluster at", "cluster"),
)
PRESET_NOTES = {
    "fast": "Everything on the device, no slicing: fastest, most memory.",
    "balanced": "The VAE decodes in slices and tiles, so large images and batches fit.",
    "low memory": "Also attention slicing and, on a GPU, each part of the model moved there only while it runs.",
}


FAST_PARTS = {  # the fast path's parts as the dialog names them (studio.engine.fast)
    "channels_last": "channels-last convolutions",
    "tf32": "TF32",
    "fused_qkv": "fused attention projections",
    "compile": "compiled blocks (the first run compiles; cached for later starts)",
    "cuda_graphs": "CUDA graphs",
}


class DeviceDialog(QDialog):
    presetChanged = Signal(str)

    def __init__(self, bridge, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("DeviceDialog")
        self.setWindowTitle("Device and memory")
        self.bridge = bridge
        self.settings = core_settings.load()
        self.labels: dict[str, QLabel] = {}
        form = QFormLayout()
        form.setLabelAlignment(Qt.AlignmentFlag.AlignRight)
        for key, title in (
            ("device", "Device"),
            ("dtype", "Number format"),
            ("attention", "Attention"),
            ("options", "Memory options"),
            ("torch", "PyTorch"),
            ("memory", "Memory in use"),
            ("peak", "Peak"),
        ):
            label = QLabel("…", objectName=f"Device_{key}", wordWrap=True)
            label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
            self.labels[key] = label
            form.addRow(title, label)
        self.preset = QComboBox(objectName="MemoryPreset")
        for p in core_settings.MEMORY_PRESETS:
            self.preset.addItem(p[:1].upper() + p[1:], p)
        self.preset.setCurrentIndex(max(0, self.preset.findData(self.settings.memory_preset)))
        self.preset.setToolTip("Automatic: fast with 12 GB or more on the GPU, balanced from 6 GB, low memory below.")
        self.preset.currentIndexChanged.connect(lambda _i: self._preset_chosen())
        form.addRow("Memory preset", self.preset)
        self.preset_note = QLabel("", wordWrap=True, objectName="Hint")
        form.addRow("", self.preset_note)
        self.fallback = QCheckBox("After an out-of-memory error, switch to the next lower preset and run again once")
        self.fallback.setChecked(self.settings.oom_fallback)
        self.fallback.toggled.connect(self._fallback_toggled)
        form.addRow("", self.fallback)
        self.device_choice = QComboBox(objectName="DeviceChoice")
        self.device_choice.addItem("Automatic (CUDA, then Apple MPS, then the CPU)", "auto")
        for device, name in available_devices():
            self.device_choice.addItem(f"{name}  ({device})", device)
        self.device_choice.setCurrentIndex(max(0, self.device_choice.findData(self.settings.device)))
        self.device_choice.setToolTip("Which GPU (or the CPU) the studio runs on; used from the next start.")
        self.device_choice.currentIndexChanged.connect(lambda _i: self._device_chosen())
        form.addRow("Run on", self.device_choice)
        self.fast_path = QCheckBox("Fast path", objectName="FastPath")
        self.fast_path.setChecked(self.settings.fast_path)
        self.fast_path.toggled.connect(lambda on: self._speed_changed(fast_path=on))
        form.addRow("Speed", self.fast_path)
        self.fast_note = QLabel("", wordWrap=True, objectName="Hint")
        form.addRow("", self.fast_note)
        self.draft = QCheckBox("Draft speed: reuse work between similar steps (faster, a slightly different picture)")
        self.draft.setObjectName("DraftSpeed")
        self.draft.setChecked(self.settings.draft)
        self.draft.toggled.connect(lambda on: self._speed_changed(draft=on))
        form.addRow("", self.draft)
        note = QLabel(
            "The device and number format are chosen when the studio starts (fp16 on GPUs). Override with "
            "STUDIO_DEVICE / STUDIO_DTYPE. The speed settings are part of each image's recipe.",
            wordWrap=True,
            objectName="Hint",
        )
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(note)
        lay.addWidget(self._workers_box())
        lay.addWidget(buttons)
        self.resize(560, 0)
        bridge.engineReady.connect(self.show_info)
        bridge.engineInfo.connect(self.show_info)
        bridge.memory.connect(self.show_memory)
        self.timer = QTimer(self, interval=1000)
        self.timer.timeout.connect(bridge.refresh_memory)
        if bridge.device:
            self.show_info(bridge.device)
        else:
            self.labels["device"].setText("The engine is starting…")

    def showEvent(self, event) -> None:  # noqa: N802
        super().showEvent(event)
        self.bridge.refresh_memory()
        self.timer.start()

    def hideEvent(self, event) -> None:  # noqa: N802
        self.timer.stop()
        super().hideEvent(event)

    # -- Workers ------------------------------------------------------------------------------------------
    def _workers_box(self) -> QGroupBox:
        from studio.cluster.connect import INSTALL_HINT, ray_available

        box = QGroupBox("Workers", objectName="Workers")
        self.workers_mode = QComboBox(objectName="WorkersMode")
        self.workers_mode.setAccessibleName("Workers")
        for text, mode in WORKER_CHOICES:
            self.workers_mode.addItem(text, mode)
        self.cluster_address = QLineEdit(self.settings.cluster_address, objectName="ClusterAddress")
        self.cluster_address.setPlaceholderText("host:6379 or ray://host:10001")
        self.cluster_address.setAccessibleName("Cluster address")
        self.workers_use = QPushButton("Use", objectName="WorkersUse")
        self.workers_use.clicked.connect(self.use_workers)
        self.workers_note = QLabel("", wordWrap=True, objectName="Hint")
        self.workers_note.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        row = QHBoxLayout()
        row.addWidget(self.workers_mode)
        row.addWidget(self.cluster_address, 1)
        row.addWidget(self.workers_use)
        lay = QVBoxLayout(box)
        lay.addLayout(row)
        lay.addWidget(self.workers_note)
        self.workers_mode.setCurrentIndex(max(0, self.workers_mode.findData(self.settings.workers)))
        self.workers_mode.currentIndexChanged.connect(lambda _i: self._workers_mode_changed())
        self.ray_missing = not ray_available()
        if self.ray_missing:  # only "this machine" without Ray
            for i in (1, 2):
                self.workers_mode.model().item(i).setEnabled(False)  # type: ignore[attr-defined]
            self.workers_note.setText(f"Ray is not installed, so jobs run on this machine. {INSTALL_HINT}")
        self._workers_mode_changed()
        return box

    def _workers_mode_changed(self) -> None:
        self.cluster_address.setEnabled(self.workers_mode.currentData() == "cluster")

    def confirm_address(self, address: str) -> bool:
        """Asked before the studio connects to a cluster that is not this machine."""
        from studio.cluster.connect import security_warning

        answer = QMessageBox.warning(
            self,
            "Connect to a cluster on the network?",
            f"{security_warning(address)}\n\nConnect to {address}?",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    def use_workers(self) -> bool:
        """Save the Workers choice and hand it to the engine thread (which connects, and says how it went)."""
        from studio.cluster.connect import ClusterError, is_local, port_of

        mode, address = self.workers_mode.currentData(), self.cluster_address.text().strip()
        if mode == "cluster":
            try:
                if not address:
                    raise ClusterError("Give the cluster's address (host:6379 or ray://host:10001).")
                port_of(address)
            except ClusterError as exc:
                self.workers_note.setText(exc.message)
                return False
            if not is_local(address) and not self.confirm_address(address):
                self.workers_note.setText("Not connected: jobs keep running where they ran.")
                return False
        self.settings = core_settings.update(workers=mode, cluster_address=address)
        self.workers_note.setText("Connecting…" if mode != "local" else "Jobs run on this machine.")
        self.bridge.configure(workers=mode, cluster_address=address)
        return True

    def show_info(self, info: dict) -> None:
        if info.get("workers") and not self.ray_missing:
            self.workers_note.setText(str(info["workers"]))
        self.labels["device"].setText(f"{info.get('name', '')}  ({info.get('device', '')})")
        self.labels["dtype"].setText(str(info.get("dtype", "")))
        self.labels["attention"].setText(str(info.get("attention", "PyTorch SDPA")))
        self.labels["torch"].setText(str(info.get("torch", "")))
        opts = [
            name
            for name, on in (
                ("VAE slicing", info.get("vae_slicing")),
                ("VAE tiling", info.get("vae_tiling")),
                (f"CPU offload ({info.get('cpu_offload')})", info.get("cpu_offload") not in (None, "none")),
            )
            if on
        ]
        self.labels["options"].setText(", ".join(opts) or "none")
        active = info.get("preset", "")
        self.preset.setItemText(
            0, f"Automatic (now {active})" if active and self.preset.currentData() == "auto" else "Automatic"
        )
        self.preset_note.setText(PRESET_NOTES.get(active, ""))
        parts = [FAST_PARTS[k] for k, on in (info.get("fast_path") or {}).items() if on and k in FAST_PARTS]
        self.fast_note.setText(f"On this device: {', '.join(parts)}." if parts else "")
        self.adjustSize()  # the notes' new text gets its height

    def show_memory(self, mem: dict) -> None:
        used, peak, total = mem.get("allocated_mb"), mem.get("peak_mb"), mem.get("total_mb")
        gpu = str((self.bridge.device or {}).get("device", "cpu")) != "cpu"
        if used is None:
            text = "—"
        elif gpu:
            text = f"{fmt_mb(used)} of {fmt_mb(total)} on the GPU" if total else f"{fmt_mb(used)} on the GPU"
        else:
            text = f"{fmt_mb(used)} used by the studio" + (
                f" ({fmt_mb(total)} of memory in this computer)" if total else ""
            )
        self.labels["memory"].setText(text)
        self.labels["peak"].setText(fmt_mb(peak) if peak else "—")

    def _preset_chosen(self) -> None:
        preset = self.preset.currentData()
        self.settings = core_settings.update(memory_preset=preset)
        self.bridge.configure(preset=preset)
        self.presetChanged.emit(preset)

    def _device_chosen(self) -> None:
        self.settings = core_settings.update(device=self.device_choice.currentData())

    def _speed_changed(self, **change: bool) -> None:
        self.settings = core_settings.update(**change)

    def _fallback_toggled(self, on: bool) -> None:
        self.settings = core_settings.update(oom_fallback=on)
        self.bridge.configure(auto_fallback=on)
