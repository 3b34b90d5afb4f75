"""Window settings that survive a restart: layout, the last request, recent models (QSettings,
an INI file under `studio.core.paths.config_dir()`, which honours STUDIO_HOME)."""

from __future__ import annotations

import json
import logging

from PySide6.QtCore import QByteArray, QSettings

from studio.core.errors import StudioError
from studio.core.paths import config_dir, ensure
from studio.core.request import GenerationRequest

log = logging.getLogger(__name__)
MAX_RECENT = 10


class StudioSettings:
    def __init__(self) -> None:
        self.path = ensure(config_dir()) / "window.ini"
        self.q = QSettings(str(self.path), QSettings.Format.IniFormat)

    # -- layout -----------------------------------------------------------------------------------------
    def geometry(self) -> QByteArray | None:
        v = self.q.value("window/geometry")
        return v if isinstance(v, QByteArray) and not v.isEmpty() else None

    def state(self) -> QByteArray | None:
        v = self.q.value("window/state")
        return v if isinstance(v, QByteArray) and not v.isEmpty() else None

    def save_layout(self, geometry: QByteArray, state: QByteArray) -> None:
        self.q.setValue("window/geometry", geometry)
        self.q.setValue("window/state", state)

    # -- last request -----------------------------------------------------------------------------------
    def last_request(self) -> GenerationRequest | None:
        text = self.q.value("request/last")
        if not text:
            return None
        try:
            return GenerationRequest.from_json(str(text))
        except StudioError as exc:  # an old or damaged entry: start fresh, say why in the log
            log.warning("ignoring the saved request: %s", exc)
            return None

    def save_request(self, request: GenerationRequest) -> None:
        self.q.setValue("request/last", request.replace(branch=None).to_json())

    # -- recent models ----------------------------------------------------------------------------------
    def recent_models(self) -> list[str]:
        try:
            models = json.loads(str(self.q.value("models/recent", "[]")))
        except ValueError:
            return []
        return [m for m in models if isinstance(m, str)][:MAX_RECENT]

    def add_recent_model(self, model: str) -> list[str]:
        models = [model] + [m for m in self.recent_models() if m != model]
        self.q.setValue("models/recent", json.dumps(models[:MAX_RECENT]))
        return models[:MAX_RECENT]

    # -- small things -----------------------------------------------------------------------------------
    def value(self, key: str, default=None, type_=None):
        v = self.q.value(key, default)
        if type_ is bool:
            return v in (True, "true", "1", 1)
        if type_ is int:
            try:
                return int(v)
            except (TypeError, ValueError):
                return default
        return v

    def set_value(self, key: str, value) -> None:
        self.q.setValue(key, value)

    def sync(self) -> None:
        self.q.sync()
