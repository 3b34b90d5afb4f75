"""Help ▸ Device and memory…: what the engine runs on and how much memory it uses, and the memory
preset (saved in the shared settings and handed to the engine thread at once)."""

from __future__ import annotations

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import QCheckBox, QComboBox, QDialog, QDialogButtonBox, QFormLayout, QLabel, QVBoxLayout, QWidget

from studio.core import settings as core_settings
from studio.qt.common.widgets import fmt_mb

PRESET_NOTES = {
    "fast": "Everything on the device, no slicing: fastest, most memory.",
    "balanced": "The VAE decodes in slices and tiles, so large images and batches fit.",
    "low memory": "Also attention slicing and, on a GPU, each part of the model moved there only while it runs.",
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
        note = QLabel(
            "The device and number format are chosen when the studio starts (CUDA, then Apple MPS, then the "
            "CPU; fp16 on GPUs). Override with STUDIO_DEVICE / STUDIO_DTYPE.",
            wordWrap=True,
            objectName="Hint",
        )
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addWidget(note)
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

    def show_info(self, info: dict) -> None:
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

    def _fallback_toggled(self, on: bool) -> None:
        self.settings = core_settings.update(oom_fallback=on)
        self.bridge.configure(auto_fallback=on)
