"""`GenerationRequest`: the recipe and the provenance of an image at once.

The same frozen object is what the engine runs, what is written into the image file and stored in
the gallery, and what is loaded back to reproduce the image bit-for-bit on the same device. It holds
everything one generation needs and nothing else (no device, no cache, no UI state).
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from studio.core import samplers
from studio.core.errors import InvalidRequest

# 2: color_correction (recipes without it were made without it); 3: guidance_end (without: 1);
# 4: upscale (an upscaler model run on the init image)
# 5: text_encoders (separate text-encoder files of a FLUX/SD3 denoiser-only file; without: none)
# 6: schedule_type (older recipes say it in the scheduler's name: "DPM++ 2M Karras"); prediction_type.
# 7: hires (hires fix: a second pass at a larger size)
# 8: fast (the speed settings that can change pixels; without: the defaults, what ran before)
# 9: x0 is the default preview (recipes before 9 that do not say were previewed as latent2rgb)
SCHEMA_VERSION = 9
MAX_SEED = 2**32 - 1

# Sampler names as A1111 / ComfyUI users know them (studio.core.samplers; run by studio.engine.schedulers).
SCHEDULER_NAMES = samplers.SAMPLERS
SCHEDULE_TYPES = samplers.SCHEDULE_TYPES


class PreviewMode(str, Enum):
    LATENT2RGB = "latent2rgb"
    X0 = "x0"
    TAESD = "taesd"
    VAE = "vae"
    NONE = "none"


def guidance_span(guidance_end: float) -> str:
    """How the recipe, the recommendations and the status bar say guidance_end: " for the first 50% of
    the steps", or "" when every step is guided."""
    return f" for the first {guidance_end:.0%} of the steps" if guidance_end < 1 else ""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _utf8_text(cls, v: Any) -> Any:
        """Recipes are UTF-8 (PNG text, JSON): refuse text holding undecodable bytes (a prompt or a
        file name in another encoding) here, with a message, not later as a failed save."""
        if isinstance(v, str):
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError("is not valid UTF-8 text (it holds bytes in another encoding)") from None
        return v


class ImageRef(_Frozen):
    """An input image by path, with its SHA-256 so the recipe names exactly which pixels went in."""

    path: str
    sha256: str = ""


class LoraRef(_Frozen):
    name: str
    path: str = ""
    weight: float = Field(1.0, ge=-2.0, le=2.0)
    sha256: str = ""


class ControlNetRef(_Frozen):
    model: str
    image: ImageRef
    preprocessor: str = "none"
    weight: float = Field(1.0, ge=0.0, le=2.0)
    start: float = Field(0.0, ge=0.0, le=1.0)
    end: float = Field(1.0, ge=0.0, le=1.0)


class UpscaleRef(_Frozen):
    """Upscale the init image with an upscaler model (Real-ESRGAN, ESRGAN …; studio.core.upscalers)
    instead of generating: `scale` times its size each way (the model's own factor, or resized from
    it), in tiles of `tile` input pixels (0: the whole image at once), blended where they overlap."""

    model: str  # the upscaler's .safetensors file
    sha256: str = ""
    scale: float = Field(4.0, gt=0.0, le=16.0)
    tile: int = Field(512, ge=0, le=8192)


class HiresFix(_Frozen):
    """A1111's hires fix: generate at the request's size, upscale by `scale` (`upscaler`: "latent" —
    the latents, bilinear —, "lanczos" — the decoded image —, or an upscaler model's file), then denoise
    again at `strength` with `steps` steps (0: the first pass's count; like img2img, about
    steps × strength of them run). studio.core.hires says what each pass is."""

    scale: float = Field(2.0, gt=1.0, le=8.0)
    steps: int = Field(0, ge=0, le=500)
    strength: float = Field(0.7, gt=0.0, le=1.0)
    upscaler: str = "latent"
    upscaler_sha256: str = ""  # an upscaler model's file hash (filled when the request is built)

    @field_validator("upscaler")
    @classmethod
    def _upscaler(cls, v: str) -> str:
        v = v.strip()
        if not v:
            raise ValueError("no hires upscaler given (latent, lanczos or an upscaler file)")
        return v.lower() if v.lower() in ("latent", "lanczos") else v


class FastPath(_Frozen):
    """The engine's speed settings that can change the pixels (studio.engine.fast applies them).

    Each is part of the recipe: compiled kernels, fused projections, TF32 matmuls and another memory
    layout round differently (the image differs in its last bits), and step caching ("draft") skips
    work (visibly). The defaults are what every run did before the fast path existed, so an older
    recipe reproduces as it was made. Where a setting does not apply (TF32 and CUDA graphs off
    CUDA), it is recorded as asked and does nothing."""

    sdpa: bool = True  # SDPA's fused kernels (flash / memory-efficient); off: its plain math kernel
    channels_last: bool = False  # the UNet's and the VAE's convolutions in NHWC memory layout
    tf32: bool = False  # TF32 matmuls and convolutions for fp32 work (CUDA, Ampere and newer)
    fused_qkv: bool = False  # attention's query/key/value projections as one matmul
    compile: bool = False  # torch.compile of the denoiser's repeated blocks (regional compilation)
    cuda_graphs: bool = False  # with compile on CUDA: the blocks replayed as CUDA graphs
    draft: bool = False  # "draft speed": step caching (DeepCache for UNets, first-block cache for transformers)


class BranchRef(_Frozen):
    """Continue a kept run from one of its steps: the new run does only the remaining steps."""

    parent_id: str
    step: int = Field(ge=0)


class GenerationRequest(_Frozen):
    """Everything one generation needs. Frozen and validated; JSON round-trips losslessly."""

    schema_version: int = SCHEMA_VERSION
    model: str = "demo"
    prompt: str = ""
    negative_prompt: str = ""
    steps: int = Field(20, ge=1, le=500)
    guidance_scale: float = Field(7.0, ge=0.0, le=30.0)
    guidance_rescale: float = Field(0.0, ge=0.0, le=1.0)
    # Guidance on the first guidance_end of the steps only (1: every step; studio.engine.guidance).
    guidance_end: float = Field(1.0, ge=0.0, le=1.0)
    seed: int = Field(0, ge=0, le=MAX_SEED)
    width: int = Field(512, ge=8, le=8192)
    height: int = Field(512, ge=8, le=8192)
    scheduler: str = "Euler a"  # the sampler, by A1111's name
    schedule_type: str = samplers.AUTOMATIC  # A1111's "Schedule type": Automatic, Karras, Exponential, SGM Uniform
    batch_size: int = Field(1, ge=1, le=64)
    clip_skip: int = Field(0, ge=0, le=12)
    # How steps are previewed; never changes the pixels. x0 (the model's estimate of the finished
    # picture) since schema 9; older recipes that do not say were made with latent2rgb.
    preview: PreviewMode = PreviewMode.X0
    preview_every: int = Field(1, ge=1, le=500)
    vae: str = ""  # a VAE file or folder used instead of the model's own ("": the model's)
    # The text-encoder files a FLUX/SD3 file that holds only the transformer runs with (CLIP-L,
    # CLIP-G, T5-XXL; any order: each is told apart by its header). Part of the recipe: they change
    # the pixels. Empty for every model that carries its own encoders.
    text_encoders: tuple[str, ...] = ()
    # ε- or v-prediction, where the user overrode what the model's file says (SD 2.x: Models dialog)
    prediction_type: Literal["", "epsilon", "v_prediction"] = ""
    # Filled by later features; part of the recipe already so old files stay readable.
    init_image: ImageRef | None = None
    mask: ImageRef | None = None
    strength: float = Field(1.0, ge=0.0, le=1.0)
    mask_grow: int = Field(0, ge=0, le=512)  # px the mask is dilated by
    mask_blur: int = Field(4, ge=0, le=512)  # px of feather at the mask edge
    inpaint_area: Literal["whole", "only_masked"] = "whole"
    inpaint_padding: int = Field(32, ge=0, le=2048)  # px around the mask for "only_masked"
    outpaint: tuple[int, int, int, int] | None = None  # px added left, top, right, bottom
    outpaint_fill: Literal["edge", "mirror", "noise"] = "edge"
    # Inpaint/outpaint: match the repainted colours to the input's unmasked surround before
    # compositing (studio.engine.color). Ignored by txt2img and img2img.
    color_correction: bool = True
    loras: tuple[LoraRef, ...] = ()
    controlnets: tuple[ControlNetRef, ...] = ()
    branch: BranchRef | None = None
    # An upscale (kind "upscale"): the init image through an upscaler model, no diffusion; width and
    # height are the output's size, the other fields are the source image's recipe where it had one.
    upscale: UpscaleRef | None = None
    hires: HiresFix | None = None  # hires fix: width × height is the first pass; the image is `scale` times it
    fast: FastPath = FastPath()  # speed settings that can change pixels (studio.engine.fast)
    plugins: dict[str, dict[str, Any]] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _split_scheduler(cls, data: Any) -> Any:
        """ "DPM++ 2M Karras" (older recipes, A1111 before 1.9) → scheduler "DPM++ 2M", schedule type Karras."""
        if isinstance(data, dict) and isinstance(data.get("scheduler"), str):
            sampler, schedule = samplers.split(data["scheduler"])
            data = {**data, "scheduler": sampler}
            if schedule is not None and data.get("schedule_type", samplers.AUTOMATIC) == samplers.AUTOMATIC:
                data["schedule_type"] = schedule
        if isinstance(data, dict) and isinstance(data.get("schedule_type"), str):
            data = {**data, "schedule_type": samplers.schedule_name(data["schedule_type"]) or data["schedule_type"]}
        return data

    @field_validator("scheduler")
    @classmethod
    def _known_scheduler(cls, v: str) -> str:
        problem = samplers.check(v, samplers.AUTOMATIC)
        if problem is not None:
            raise ValueError(problem)
        return v

    @field_validator("model")
    @classmethod
    def _model_named(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("no model given")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> GenerationRequest:
        if self.upscale is None:  # latents are 1/8 of the pixels; an upscale's output is any size
            for name in ("width", "height"):
                if getattr(self, name) % 8:
                    raise ValueError(f"{name} {getattr(self, name)} is not a multiple of 8")
        elif self.init_image is None:
            raise ValueError("an upscale needs an input image")
        problem = samplers.check(self.scheduler, self.schedule_type)
        if problem is not None:
            raise ValueError(problem)
        if self.hires is not None and (self.init_image is not None or self.upscale is not None):
            raise ValueError("hires fix is for text-to-image runs (A1111's too); an edit of an image is not one")
        if self.mask is not None and self.init_image is None:
            raise ValueError("a mask needs an init image")
        if self.outpaint is not None:
            if self.init_image is None:
                raise ValueError("outpainting needs an init image")
            if min(self.outpaint) < 0 or max(self.outpaint) == 0:
                raise ValueError("outpaint sizes must be ≥ 0 with at least one side > 0")
        return self

    # -- construction that reports errors the studio's way ---------------------------------------
    @classmethod
    def create(cls, **fields: Any) -> GenerationRequest:
        """Build a request, turning validation problems into one `InvalidRequest`."""
        from pydantic import ValidationError

        try:
            return cls(**fields)
        except ValidationError as exc:
            raise InvalidRequest(_explain(exc)) from None

    def replace(self, **changes: Any) -> GenerationRequest:
        """A validated copy with some fields changed."""
        data = self.model_dump()
        data.update(changes)
        return type(self).create(**data)

    # -- serialisation ----------------------------------------------------------------------------
    def to_json(self) -> str:
        return self.model_dump_json()

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    @classmethod
    def from_json(cls, text: str | bytes) -> GenerationRequest:
        try:
            data = json.loads(text)
        except (ValueError, TypeError) as exc:
            raise InvalidRequest(f"the recipe is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise InvalidRequest("the recipe is not a JSON object")
        return cls.from_dict(data)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> GenerationRequest:
        version = data.get("schema_version", SCHEMA_VERSION)
        if not isinstance(version, int) or version > SCHEMA_VERSION:
            raise InvalidRequest(f"the recipe was written by a newer studio (schema {version}); update the studio")
        if version < 2:  # made before colour correction existed, so made without it
            data = {**data, "color_correction": data.get("color_correction", False)}
        if version < 9 and "preview" not in data:  # previewed as the sampler held it then
            data = {**data, "preview": PreviewMode.LATENT2RGB.value}
        return cls.create(**{**data, "schema_version": SCHEMA_VERSION})

    @property
    def is_txt2img(self) -> bool:
        return self.init_image is None and self.branch is None

    @property
    def kind(self) -> str:
        """txt2img | img2img | inpaint | outpaint | branch | upscale."""
        if self.upscale is not None:
            return "upscale"
        if self.outpaint is not None:
            return "outpaint"
        if self.mask is not None:
            return "inpaint"
        if self.init_image is not None:
            return "img2img"
        return "branch" if self.branch is not None else "txt2img"


def _explain(exc: Any) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ())) or "request"
        msg = err.get("msg", "invalid")
        msg = msg.removeprefix("Value error, ")
        parts.append(f"{where}: {msg}")
    return "Invalid generation settings — " + "; ".join(parts)
