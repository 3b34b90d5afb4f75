"""Hires fix, as plain functions on `GenerationRequest` (A1111's semantics): the first pass is the request
at its own size; the image is then upscaled by `hires.scale` (to multiples of 8, floored as A1111 does)
and denoised again at `hires.strength`, with `hires.steps` steps (0: as many as the first pass). Like
img2img, the second pass runs about steps × strength of them.

The engine runs `first_pass` then `second_pass` (`studio.engine.hires`); the window's Steps strip and
the CLI's progress count `total_steps` across both."""

from __future__ import annotations

from studio.core.request import GenerationRequest

LATENT, LANCZOS = "latent", "lanczos"


def target_size(request: GenerationRequest) -> tuple[int, int]:
    """The final image's (width, height): the first pass's times the scale, floored to multiples of 8."""
    assert request.hires is not None
    s = request.hires.scale
    return max(8, int(request.width * s) // 8 * 8), max(8, int(request.height * s) // 8 * 8)


def first_pass(request: GenerationRequest) -> GenerationRequest:
    """The request as the first pass runs it (its own size, steps and seed; a branch continues this pass)."""
    return request.replace(hires=None)


def second_pass(request: GenerationRequest) -> GenerationRequest:
    """The second pass as an image-to-image request at the target size (its input is the first pass,
    upscaled, handed over in memory: the request names no input file)."""
    assert request.hires is not None
    width, height = target_size(request)
    return request.replace(
        hires=None,
        branch=None,
        width=width,
        height=height,
        steps=request.hires.steps or request.steps,
        strength=request.hires.strength,
    )


def second_pass_steps(request: GenerationRequest) -> int:
    """The steps the second pass runs (diffusers' img2img: int(steps · strength), at least 1)."""
    second = second_pass(request)
    return max(1, min(int(second.steps * second.strength), second.steps))


def total_steps(request: GenerationRequest) -> int:
    """The steps a request runs in all: both passes of a hires fix, else its own."""
    if request.hires is None:
        return request.steps
    return request.steps + second_pass_steps(request)


def upscaler_label(request: GenerationRequest) -> str:
    """What A1111's `Hires upscaler` says: "Latent", "Lanczos" or the upscaler model's name."""
    assert request.hires is not None
    up = request.hires.upscaler
    if up in (LATENT, LANCZOS):
        return up.capitalize()
    from pathlib import Path

    return Path(up).stem
