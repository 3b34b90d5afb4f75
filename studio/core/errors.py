"""One typed error family for everything a user can cause.

Every error carries a sentence a person understands (`message`) and, where there is one, what to
do about it (`hint`). The CLI prints `str(err)` on one line; the window shows both parts.
"""

from __future__ import annotations


class StudioError(Exception):
    """Base of every error the studio reports to a user."""

    code = "error"

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} {self.hint}".strip() if self.hint else self.message


class InvalidRequest(StudioError):
    code = "invalid-request"


class ModelNotFound(StudioError):
    code = "model-not-found"


class CorruptModel(StudioError):
    code = "corrupt-model"


class NotADiffusionModel(StudioError):
    code = "not-a-diffusion-model"


class UnsupportedModel(StudioError):
    code = "unsupported-model"


class PickleRefused(StudioError):
    code = "pickle-refused"


class OutOfMemory(StudioError):
    code = "out-of-memory"


class PromptTooLong(StudioError):
    code = "prompt-too-long"


class GenerationFailed(StudioError):
    code = "generation-failed"


class MetadataError(StudioError):
    """An image file's metadata could not be read or written (corrupt, hostile or unsupported)."""

    code = "metadata-error"


class ProvenanceError(StudioError):
    """Signing or verifying a C2PA manifest failed (key, certificate or file problem)."""

    code = "provenance-error"


class GalleryError(StudioError):
    """The gallery library or its database could not be used."""

    code = "gallery-error"


class GalleryItemNotFound(GalleryError):
    code = "gallery-item-not-found"
