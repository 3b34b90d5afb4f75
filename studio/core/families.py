"""Model families as data: one row per family, read by the loader, `models scan`, the previews,
the recommended settings, the Prompt panel and the CLI.

A family says what its models are (latent channels, latent space for previews, whether it is a
flow-matching model), what guidance means for it (classifier-free guidance with a negative
prompt, FLUX's distilled guidance, or none for step-distilled models), which schedulers it runs,
and — for files that hold only the denoiser — which separate text-encoder files it needs and
where they are usually kept. Plain Python: the catalogue (no torch) reads it; the engine's
family modules (`studio.engine.flux`, `studio.engine.sd3`) do the torch side by the same ids.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from studio.core.samplers import SAMPLERS

SD_SCHEDULERS = SAMPLERS  # A1111's names (studio.core.samplers), each with its schedule types
FLOW_SCHEDULERS = ("Euler", "Euler a", "Heun", "DPM++ 2M")
# An SD scheduler name asked of a flow-matching model runs as the nearest flow scheduler (said in a notice).
FLOW_EQUIVALENT = {
    "DPM++ 2M Karras": "DPM++ 2M", "DDIM": "Euler", "UniPC": "DPM++ 2M", "LCM": "Euler", "LMS": "Euler",
    "DPM2": "Heun", "DPM2 a": "Euler a", "DPM++ 2S a": "Euler a", "DPM++ SDE": "Euler a", "DPM++ 2M SDE": "DPM++ 2M",
    "DPM++ 3M SDE": "DPM++ 2M", "PLMS": "Euler", "DDPM": "Euler a",
}  # fmt: skip


@dataclass(frozen=True)
class Encoder:
    """A text encoder a denoiser-only file needs, as users keep it (ComfyUI's `models/clip`)."""

    slot: str  # clip_l | clip_g | t5xxl
    label: str
    usual_files: str  # how the file is usually named


@dataclass(frozen=True)
class Family:
    arch: str
    label: str
    latent_channels: int
    latent_space: str  # key of resources/latent_rgb.json
    flow: bool  # flow matching: x_t = (1 − σ)·x0 + σ·ε
    guidance: str  # "cfg" (classifier-free, with a negative prompt) | "distilled" (FLUX dev) | "none"
    schedulers: tuple[str, ...]
    encoders: tuple[Encoder, ...] = ()  # what a denoiser-only file needs beside it
    denoiser: str = "unet"  # the pipeline component that denoises: unet | transformer
    t5_limit: int = 0  # T5 tokens the family reads (0: no T5)
    tiny_autoencoder: str = ""  # the published tiny autoencoder for its latents (TAESD …), for previews

    @property
    def negative_prompt(self) -> bool:
        return self.guidance == "cfg"


CLIP_L = Encoder("clip_l", "CLIP-L", "clip_l.safetensors")
CLIP_G = Encoder("clip_g", "CLIP-G", "clip_g.safetensors")
T5XXL = Encoder("t5xxl", "T5-XXL", "t5xxl_fp16.safetensors or t5xxl_fp8_e4m3fn.safetensors")
ENCODER_FOLDERS = "models/clip or models/text_encoders"
DENOISER_FOLDERS = "models/diffusion_models or models/unet"
VAE_FOLDERS = "models/vae"

FAMILIES: dict[str, Family] = {
    "sd1": Family("sd1", "SD 1.x", 4, "sd1", False, "cfg", SD_SCHEDULERS, tiny_autoencoder="TAESD"),
    "sd2": Family("sd2", "SD 2.x", 4, "sd1", False, "cfg", SD_SCHEDULERS, tiny_autoencoder="TAESD"),
    "sdxl": Family("sdxl", "SDXL", 4, "sdxl", False, "cfg", SD_SCHEDULERS, tiny_autoencoder="TAESDXL"),
    "sdxl-refiner": Family(
        "sdxl-refiner", "SDXL refiner", 4, "sdxl", False, "cfg", SD_SCHEDULERS, tiny_autoencoder="TAESDXL"
    ),
    "sd3": Family(
        "sd3", "SD 3 / 3.5", 16, "sd3", True, "cfg", FLOW_SCHEDULERS, (CLIP_L, CLIP_G, T5XXL), "transformer", 256,
        "TAESD3",
    ),
    "flux": Family(
        "flux", "FLUX.1", 16, "flux", True, "distilled", FLOW_SCHEDULERS, (CLIP_L, T5XXL), "transformer", 512,
        "TAEF1",
    ),
}  # fmt: skip
# The published tiny autoencoders (madebyollin's), by the names their files and folders carry; the
# longer names first, so "taesdxl" is not taken for "taesd".
TINY_AUTOENCODERS = ("TAESDXL", "TAESD3", "TAEF1", "TAESD")
ARCHES = tuple(FAMILIES)
ARCH_LABELS = {a: f.label for a, f in FAMILIES.items()} | {"": "unknown"}

# Variants a header tells apart (catalogue `variant`), and what each means for guidance.
FLUX_VARIANTS = {"dev": "dev", "schnell": "schnell", "fill": "Fill"}
SD3_VARIANTS = {"3-medium": "3 medium", "3.5-medium": "3.5 medium", "3.5-large": "3.5 large"}


def family(arch: str) -> Family | None:
    return FAMILIES.get(arch)


def tiny_autoencoder_name(path: str | Path) -> tuple[str, tuple[str, ...]]:
    """("TAESDXL", the architectures it draws) for a file or folder named like a published tiny
    autoencoder (`taesdxl/`, `madebyollin--taef1`, `taesd_decoder.safetensors`); ("", ()) otherwise."""
    name = Path(path).name.lower()
    for label in TINY_AUTOENCODERS:
        if label.lower() in name:
            return label, tuple(a for a, f in FAMILIES.items() if f.tiny_autoencoder == label)
    return "", ()


def guidance_kind(arch: str, variant: str = "", guidance_embeds: bool | None = None) -> str:
    """What the guidance slider means: "cfg", "distilled" (FLUX dev/Fill: one number the model
    was trained to follow, no negative prompt) or "none" (FLUX schnell: timestep-distilled)."""
    fam = FAMILIES.get(arch)
    if fam is None:
        return "cfg"
    if arch == "flux":
        if guidance_embeds is False or "schnell" in variant.lower():
            return "none"
        return "distilled"
    return fam.guidance


def negative_prompt_note(arch: str, variant: str = "", guidance_embeds: bool | None = None) -> str:
    """Why the negative prompt is off for a model ("" when it is used)."""
    kind = guidance_kind(arch, variant, guidance_embeds)
    if kind == "distilled":
        return (
            "FLUX.1 has no negative prompt: its guidance is distilled into the model (one number, "
            "the Guidance slider), so there is no unconditional pass to steer away from."
        )
    if kind == "none":
        return "FLUX.1 schnell is step-distilled: it runs without guidance, so a negative prompt has nothing to act on."
    return ""


def guidance_label(arch: str, variant: str = "", guidance_embeds: bool | None = None) -> str:
    kind = guidance_kind(arch, variant, guidance_embeds)
    return {"distilled": "Guidance", "none": "Guidance (unused)"}.get(kind, "CFG")


def missing_encoders_message(arch: str, missing: list[str], file_name: str) -> tuple[str, str]:
    """(message, hint) for a denoiser-only file whose text encoders were not chosen."""
    fam = FAMILIES[arch]
    wanted = [e for e in fam.encoders if e.slot in missing]
    names = ", ".join(f"{e.label} ({e.usual_files})" for e in wanted)
    return (
        f"{file_name} holds only the {fam.label} transformer; it also needs the text encoder files: {names}.",
        f"They are usually kept in ComfyUI's {ENCODER_FOLDERS} (and the VAE, ae.safetensors, in "
        f"{VAE_FOLDERS}); choose them with --text-encoder FILE (repeatable) and --vae FILE, or in the "
        "Prompt panel's Text encoders box.",
    )
