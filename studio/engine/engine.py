"""The engine: runs one `GenerationRequest` through a real diffusers pipeline, step by step.

Every step runs the step callbacks of `studio.engine.steps` (diffusers `PipelineCallback`s in a
`MultiPipelineCallbacks`): a cancel check, the step count, the guidance cutoff and a `StepPreview`
(plain numpy data); the same request on the same device gives bit-identical pixels (noise
comes from per-image CPU generators seeded `seed + i`, as A1111 does).

Latents handed out in previews are variance-preserving (x = √ᾱ·x₀ + √(1−ᾱ)·ε) whatever the
scheduler's own convention, so a kept step can be resumed ("branched") with another scheduler.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from studio.core.errors import InvalidRequest, OutOfMemory, PromptTooLong, StudioError
from studio.core.request import GenerationRequest, PreviewMode
from studio.core.results import GenerationResult, LoadProgress, StepPreview
from studio.engine import fast, flow
from studio.engine.components import VaeSwitch, nan_safe_decode
from studio.engine.devices import (
    DeviceInfo,
    attention_backend,
    bound_heap,
    choose_device,
    empty_cache,
    is_oom,
    memory_info,
)
from studio.engine.edits import plan_edit, steps_run
from studio.engine.embeddings import EmbeddingLibrary
from studio.engine.guidance import guided_steps
from studio.engine.hires import run_hires
from studio.engine.loader import LoadedModel, ModelCache
from studio.engine.memory import apply as apply_memory
from studio.engine.memory import auto_preset, lower, options_for
from studio.engine.plugins import PluginHost
from studio.engine.previews import latent_rgb_factors, make_drawer
from studio.engine.prompt_encoder import PromptSchedule, conditioning_for
from studio.engine.schedulers import flow_name, is_sigma_space, scheduler_for
from studio.engine.steps import Cancelled, GuidanceCutoff, Previews, SchedulerTap, StepCount, step_callbacks
from studio.engine.tiny_decoders import TinyDecoders
from studio.engine.upscale import Upscalers, run_upscale
from studio.plugin_api import PipelineContext

StepFn = Callable[[StepPreview], None] | None
ProgressFn = Callable[[LoadProgress], None] | None


class Engine:
    """Owns the loaded pipelines. Use it from one thread at a time (the window's engine thread)."""

    def __init__(
        self,
        device: str | None = None,
        dtype: str | None = None,
        *,
        allow_pickle: bool = False,
        cache_size: int = 1,
        taesd: dict[str, str | Path] | None = None,
        preset: str | None = None,
        auto_fallback: bool = False,
        plugins: PluginHost | None = None,
    ) -> None:
        bound_heap()
        self.device_info: DeviceInfo = choose_device(device, dtype)
        self.preset = preset or auto_preset(self.device_info, memory_info(self.device_info)["total_mb"])
        options_for(self.preset)  # validates the name
        self.auto_fallback = auto_fallback  # on out-of-memory, retry once with the next lower preset
        if plugins is None:
            plugins = PluginHost()
            plugins.discover()
        self.plugins = plugins
        self.allow_pickle = allow_pickle
        self.cache = ModelCache(cache_size)
        # the tiny decoders previews draw with (a model's own, or one per architecture: folder or file)
        self.tiny = TinyDecoders(self.device_info.torch_device, self.device_info.torch_dtype)
        self.tiny.set_paths(dict(taesd or {}))
        self.embeddings = EmbeddingLibrary()  # textual-inversion embeddings the prompts may name
        self.vae_switch = VaeSwitch()  # puts a request's `vae` into the pipeline
        self.upscalers = Upscalers()  # upscaler nets (Real-ESRGAN …) for upscale requests and hires fix

    # -- models -----------------------------------------------------------------------------------
    def load(
        self, model: str, on_progress: ProgressFn = None, parts: tuple[tuple[str, ...], str] = ((), "")
    ) -> LoadedModel:
        """`parts`: (text-encoder files, VAE) for a FLUX/SD3 file that holds only the transformer."""
        try:
            return self.cache.get(model, self.device_info, on_progress, self.allow_pickle, parts)
        except StudioError:
            raise
        except Exception as exc:
            if is_oom(exc):
                empty_cache(self.device_info)
                raise OutOfMemory(
                    "Not enough memory to load the model.", "Close other programs or use a smaller model."
                ) from None
            raise

    def memory_info(self) -> dict[str, float | None]:
        return memory_info(self.device_info)

    def set_taesd(self, taesd: dict[str, str | Path]) -> None:
        """The tiny autoencoder per architecture for x0 and TAESD previews (from the next run)."""
        self.tiny.set_paths(dict(taesd))

    @property
    def taesd_dirs(self) -> dict[str, Path]:
        return self.tiny.paths

    def describe(self) -> dict[str, Any]:
        """Device, dtype, memory preset and what it turns on, attention backend (for the Device dialog)."""
        info, opts = self.device_info, options_for(self.preset)  # the UNet families' meaning of the preset
        return {
            "device": info.device,
            "dtype": info.dtype,
            "name": info.name,
            "preset": self.preset,
            "auto_fallback": self.auto_fallback,
            "attention": attention_backend(info, opts.attention_slicing),
            "vae_slicing": opts.vae_slicing,
            "vae_tiling": opts.vae_tiling,
            "cpu_offload": opts.cpu_offload,
            "torch": torch.__version__,
            "fast_path": fast.recommended(info).model_dump(),  # what --fast / the window's "Fast path" turn on
        }

    # -- generation -------------------------------------------------------------------------------
    def generate(
        self,
        request: GenerationRequest,
        on_step: StepFn = None,
        cancel: threading.Event | None = None,
        on_progress: ProgressFn = None,
        branch_latent: np.ndarray | None = None,
    ) -> GenerationResult:
        if request.upscale is not None:  # an upscaler model on the input image: no diffusion model
            return run_upscale(self.upscalers, self.device_info, request, on_step, cancel)
        t0 = time.perf_counter()
        lm = self.load(request.model, on_progress, (request.text_encoders, request.vae))
        t_loaded = time.perf_counter()
        notice = ""
        lm = self._reload_if_changed(lm, request, on_progress)
        if self.vae_switch.use(lm, request.vae, self.device_info):
            lm.extra.pop("preset", None)  # VAE slicing/tiling are set on the VAE: apply the preset again
        nan_safe_decode(lm.pipe.vae)  # an fp16 decode that overflows is done again in fp32
        for attempt in (1, 2):
            lm = self._apply_preset(lm)
            try:
                if request.hires is not None:  # hires fix: two passes of the same loop (studio.engine.hires)
                    result = run_hires(self, lm, request, on_step, cancel, branch_latent, t0, t_loaded)
                else:
                    result = self._generate(
                        lm, request, on_step, cancel, branch_latent, t0, t_loaded, on_progress=on_progress
                    )
                if lm.family.flow and flow_name(request.scheduler) != request.scheduler:
                    said = f"{lm.family.label} runs flow-matching schedulers: {request.scheduler} ran as "
                    notice = f"{notice} {said}{flow_name(request.scheduler)}.".strip()
                result.notice, result.preset = notice, self.preset
                return result
            except StudioError:
                raise
            except Exception as exc:
                if not is_oom(exc):
                    raise
                empty_cache(self.device_info)
                nxt = lower(self.preset)
                if attempt == 1 and nxt and self.auto_fallback:
                    notice = f"Out of memory with the “{self.preset}” preset; switched to “{nxt}” and ran again."
                    self.preset = nxt
                    continue
                hint = f"Choose the “{nxt}” memory preset, or lower" if nxt else "Lower"
                raise OutOfMemory(
                    f"Out of memory at {request.width}×{request.height}, batch {request.batch_size} "
                    f"(preset “{self.preset}”).",
                    f"{hint} the size or batch. Nothing made so far is lost.",
                ) from None
            finally:
                self.plugins.finish()  # plugins undo what they changed on the shared, cached pipeline
        raise AssertionError("unreachable")

    def set_preset(self, preset: str) -> None:
        options_for(preset)
        self.preset = preset

    def _apply_preset(self, lm: LoadedModel) -> LoadedModel:
        """The preset's memory options on the loaded model (the flow families' meaning of it)."""
        if lm.extra.get("preset") == self.preset:
            return lm
        opts = options_for(self.preset, flow=lm.family.flow)
        apply_memory(lm.pipe, opts, self.device_info)
        if opts.layerwise_fp8 or opts.cpu_offload == "group":
            lm.extra["irreversible"] = self.device_info.device.startswith("cuda")
        lm.extra["preset"] = self.preset
        return lm

    def _reload_if_changed(self, lm: LoadedModel, request: GenerationRequest, on_progress) -> LoadedModel:
        """Layerwise fp8 storage and group offloading cannot be undone in place: a model that has them
        is read from its files again when the preset no longer asks for them."""
        opts = options_for(self.preset, flow=lm.family.flow)
        if not lm.extra.get("irreversible") or opts.layerwise_fp8 or opts.cpu_offload == "group":
            return lm
        self.cache.drop(lm.key)
        return self.load(request.model, on_progress, (request.text_encoders, request.vae))

    def _check_prompt(self, pipe, prompt: str, negative_prompt: str, t5_limit: int = 0) -> None:
        """Each text encoder's token count against its limit (CLIP: 75 + 2; T5: the family's, + </s>).
        A FLUX/SD3 model's CLIP encoders read only the first 77 tokens, as in diffusers: T5 reads it all."""
        t5 = flow.t5_tokenizer(pipe)
        for label, text in (("prompt", prompt), ("negative prompt", negative_prompt)):
            if t5 is not None:
                n = len(t5(text).input_ids)
                if n > t5_limit:
                    raise PromptTooLong(
                        f"The {label} is {n - 1} T5 tokens long; this model reads at most {t5_limit - 1}.",
                        "Shorten it (the token counter shows each encoder's count).",
                    )
                continue
            tok = pipe.tokenizer if getattr(pipe, "tokenizer", None) is not None else pipe.tokenizer_2
            limit = tok.model_max_length
            n = len(tok(text).input_ids)
            if n > limit:
                raise PromptTooLong(
                    f"The {label} is {n - 2} tokens long; this model reads at most {limit - 2}.",
                    "Shorten it (the token counter shows the length).",
                )

    def _generate(
        self, lm, request, on_step, cancel, branch_latent, t0, t_loaded, plan=None, on_progress: ProgressFn = None
    ) -> GenerationResult:
        """One sampling run. `plan`: an edit plan made elsewhere (hires fix's second pass hands its
        upscaled first pass in memory); else the request's own, when it has an input image."""
        if plan is None and request.init_image is not None:
            plan = plan_edit(request)
            if request.strength == 0:  # nothing to denoise: the input through the VAE and back
                return self._round_trip(lm, request, plan, t0, t_loaded)
        speed = fast.effective(request)
        if fast.apply(lm.pipe, speed, self.device_info) and on_progress is not None:
            on_progress(LoadProgress("compiling the model's blocks (first run; cached for later starts)…", 1.0))
        pipe = _edit_pipeline(lm, plan)
        ctx = PipelineContext(
            pipe=pipe,
            request=request,
            arch=lm.arch,
            device=self.device_info.device,
            prompt=request.prompt,
            negative_prompt=request.negative_prompt,
            size=plan.gen_size if plan is not None else (request.width, request.height),
        )
        self.plugins.prepare(ctx)
        extra_params = self.plugins.parameters(request)
        if extra_params:
            ctx.metadata["plugin_parameters"] = extra_params
        pipe = ctx.pipe  # a plugin may view it as another pipeline (ControlNet)
        fam = lm.family
        t5_limit = flow.t5_limit(lm)
        negative = ctx.negative_prompt if fam.negative_prompt else ""
        pipe.scheduler = scheduler = scheduler_for(request, lm.base_scheduler_config, fam)
        steps = request.steps if plan is None else steps_run(request, fam.flow)
        # A1111's prompt language as embeddings per step (CLIP families); None: the pipeline reads the text
        cond, ti_hashes = conditioning_for(pipe, request, ctx.prompt, negative, steps, self.embeddings, fam.flow)
        if cond is None:
            self._check_prompt(pipe, ctx.prompt, negative, t5_limit)
        seeds = [(request.seed + i) % 2**32 for i in range(request.batch_size)]
        generators = [torch.Generator("cpu").manual_seed(s) for s in seeds]
        gen_w, gen_h = plan.gen_size if plan is not None else (request.width, request.height)
        start = 0
        latents_in = swap_in = None
        if request.branch is not None:
            if lm.arch == "flux" and lm.inpaint:
                raise InvalidRequest(
                    "Branching is not available for FLUX Fill, an inpainting model; "
                    "use it for inpainting and outpainting."
                )
            # An edit's steps start where its strength puts them (`skipped` steps of the schedule in)
            skipped = request.steps - steps if plan is not None else 0
            start, branched = self._branch_start(
                lm, request, branch_latent, (gen_w, gen_h), flow.latent_shape(pipe, request.batch_size, gen_w, gen_h),
                steps, skipped,
            )  # fmt: skip
            branched = flow.pack(pipe, branched)
            if plan is None:
                latents_in = branched
            else:  # the edit pipeline prepares its input as for the parent; the branch's latent replaces it
                swap_in = branched
        elif plan is None and flow.plugin_pipeline(pipe, lm.pipe):  # e.g. FLUX ControlNet: same noise as without
            latents_in = flow.initial_noise(pipe, generators, request.batch_size, gen_w, gen_h)
        tap = SchedulerTap(scheduler, start, generators)
        guided = guided_steps(steps, request.guidance_end)  # CFG on the first `guided` steps only
        if lm.guidance == "distilled":  # one number the model follows on every step, no unconditional pass
            guided, guidance = steps, request.guidance_scale
        elif lm.guidance == "none":
            guided, guidance = 0, 0.0
        else:
            guidance = request.guidance_scale if guided > start else min(request.guidance_scale, 1.0)
        count = StepCount(start, scheduler)
        cutoff = GuidanceCutoff(pipe, count, guided, steps)
        mode = PreviewMode(request.preview)
        drawer = self._drawer(lm, pipe, mode, request.preview_every)  # says at once when "taesd" has none
        t_sample = time.perf_counter()
        previews = None
        if on_step is not None:
            previews = Previews(
                on_step,
                tap,
                count,
                drawer=drawer,
                steps=steps,
                mode=mode,
                unpack=lambda latents: flow.unpack(pipe, latents, gen_w, gen_h),  # FLUX packs its latents
                finish=plan.preview if plan is not None else None,
            )
        prompts = PromptSchedule(pipe, cond, count, cutoff) if cond is not None and cond.edits else None
        callbacks = step_callbacks(count, cutoff, cancel, previews, prompts)

        kwargs: dict[str, Any] = dict(
            num_inference_steps=request.steps,
            guidance_scale=guidance,
            guidance_rescale=request.guidance_rescale,
            height=request.height,
            width=request.width,
            num_images_per_prompt=request.batch_size,
            generator=generators,
            latents=latents_in,
            output_type="np",
            callback_on_step_end=callbacks,
            # Pipelines that know MultiPipelineCallbacks read these from it; the others are told.
            callback_on_step_end_tensor_inputs=list(dict.fromkeys(callbacks.tensor_inputs)),
        )
        if cond is not None:
            kwargs.update(cond.pipe_kwargs(start))
        else:
            kwargs.update(prompt=ctx.prompt, negative_prompt=negative or None)
            if request.clip_skip:
                kwargs["clip_skip"] = request.clip_skip
        if t5_limit:
            kwargs["max_sequence_length"] = t5_limit
        if plan is not None:
            kwargs.update(image=plan.region_image(), strength=request.strength)
            kwargs["width"], kwargs["height"] = plan.gen_size
            mask = plan.region_mask()
            if mask is not None or lm.inpaint:
                kwargs["mask_image"] = mask if mask is not None else Image.new("L", plan.gen_size, 255)
        elif lm.inpaint:  # an inpainting checkpoint asked for a plain image: blank image, everything masked
            kwargs.update(
                image=torch.zeros(1, 3, request.height, request.width),
                mask_image=torch.ones(1, 1, request.height, request.width),
                strength=1.0,
            )
        if lm.arch == "flux" and lm.inpaint and isinstance(kwargs.get("image"), torch.Tensor):
            # FLUX Fill asked for a plain image: a blank picture, everything masked (it reads images as pictures)
            kwargs["image"] = Image.new("RGB", (gen_w, gen_h))
            kwargs["mask_image"] = Image.new("L", (gen_w, gen_h), 255)
        kwargs.update(ctx.call_kwargs)
        accepted = inspect.signature(pipe.__call__).parameters
        kwargs = {k: v for k, v in kwargs.items() if k in accepted}
        status = "done"
        images: list[np.ndarray] = []
        try:
            with (
                torch.inference_mode(),
                tap,
                fast.running(lm.pipe, speed, self.device_info),
                edit_branch(pipe, swap_in),
            ):
                out = pipe(**kwargs)
            images = [(np.asarray(im) * 255).round().clip(0, 255).astype(np.uint8) for im in out.images]
            if plan is not None:
                images = [plan.finish(im) for im in images]
        except Cancelled:
            status = "cancelled"
        if previews is not None:  # the last step's preview: the finished pictures when there are some
            previews.final(images) if images else previews.flush()
        t_end = time.perf_counter()
        return GenerationResult(
            model_hash=_model_hash(lm.path),
            request=request,
            images=images,
            seeds=seeds,
            status=status,
            steps_done=count.done,
            total_steps=steps,
            device=self.device_info.device,
            dtype=self.device_info.dtype,
            model_name=lm.name,
            timings={
                "load_s": t_loaded - t0,
                "sample_s": t_end - t_sample,
                "total_s": t_end - t0,
                "preview_s": previews.preview_s if previews is not None else 0.0,
            },
            arch=lm.arch,
            model_path=str(lm.path),
            kind=request.kind,
            guidance=lm.guidance,
            branch_start=start,
            notes=list(ctx.notes),
            color_correction=_corrections(plan),
            plugin_metadata=dict(ctx.metadata),
            ti_hashes=ti_hashes,
            prediction_type=str(scheduler.config.get("prediction_type", "")),
        )

    @torch.inference_mode()
    def _round_trip(self, lm, request, plan, t0, t_loaded) -> GenerationResult:
        """Strength 0: no denoising; the region goes through the VAE and back (what a user sees)."""
        vae = lm.pipe.vae
        img = torch.from_numpy(np.array(plan.region_image())).permute(2, 0, 1)[None].float() / 127.5 - 1
        lat = vae.encode(img.to(vae.device, vae.dtype)).latent_dist.mode()
        out = vae.decode(lat).sample[0].permute(1, 2, 0).float().cpu()
        region = ((out.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
        image = plan.finish(region)
        t_end = time.perf_counter()
        return GenerationResult(
            request=request,
            images=[image] * request.batch_size,
            seeds=[(request.seed + i) % 2**32 for i in range(request.batch_size)],
            status="done",
            steps_done=0,
            total_steps=0,
            device=self.device_info.device,
            dtype=self.device_info.dtype,
            model_name=lm.name,
            model_hash=_model_hash(lm.path),
            timings={"load_s": t_loaded - t0, "sample_s": t_end - t_loaded, "total_s": t_end - t0},
            arch=lm.arch,
            model_path=str(lm.path),
            kind=request.kind,
            color_correction=_corrections(plan),
        )

    def _drawer(self, lm: LoadedModel, pipe, mode: PreviewMode, every: int):
        """How this run's step previews are drawn (studio.engine.previews.make_drawer)."""
        tiny = None
        if mode in (PreviewMode.X0, PreviewMode.TAESD):
            tiny = self.tiny.for_model(lm.path, lm.arch, pipe.vae, required=mode is PreviewMode.TAESD)
        factors, bias = latent_rgb_factors(
            lm.family.latent_space, lm.path if lm.path.is_dir() else None, channels=int(pipe.vae.config.latent_channels)
        )
        return make_drawer(mode, tiny, factors, bias, pipe.vae, every, self.device_info.device)

    # -- scheduler plumbing -------------------------------------------------------------------------
    def _branch_start(self, lm: LoadedModel, request, latent, size, shape, steps: int, skipped: int = 0):
        """(branch step, the kept latent in the scheduler's own form there). `steps`: the steps the
        run makes; `skipped`: the steps of the schedule before them (an edit's strength skips those),
        so step k of the run is step skipped + k of the schedule. An edit's pipeline is handed the
        latent as it holds it; a text-to-image pipeline scales its input by init_noise_sigma itself."""
        k = request.branch.step
        if latent is None:
            raise InvalidRequest("Branching needs the latent of the step to branch from; that step is no longer kept.")
        if not 0 < k < steps:
            raise InvalidRequest(f"Cannot branch from step {k} of a {steps}-step run.")
        lat = torch.as_tensor(np.asarray(latent, dtype=np.float32))
        if tuple(lat.shape) != tuple(shape):
            raise InvalidRequest(
                f"The kept step has shape {tuple(lat.shape)} but the new run needs {tuple(shape)}.",
                "Keep the size and batch of the parent run when branching.",
            )
        probe = scheduler_for(request, lm.base_scheduler_config, lm.family)
        scale = 1.0
        at = skipped + k
        if lm.family.flow:
            scale = flow.branch_scale(lm.pipe, probe, request.steps, at, *size)
            return k, (lat * scale).to(self.device_info.torch_device, self.device_info.torch_dtype)
        probe.set_timesteps(request.steps)
        own = 1.0 if skipped or request.init_image is not None else float(probe.init_noise_sigma)
        if is_sigma_space(probe):
            sigma = float(probe.sigmas[at * probe.order])
            scale = math.sqrt(sigma**2 + 1.0) / own
        else:
            scale = 1.0 / own
        return k, (lat * scale).to(self.device_info.torch_device, self.device_info.torch_dtype)


@contextlib.contextmanager
def edit_branch(pipe, latents: torch.Tensor | None):
    """While a branched edit runs: the pipeline prepares its latents as for the parent run (encoding
    the input, drawing the same noise from the same generators: an inpaint blends the kept area
    with that noise at every step), and the branch's latent takes the place of the first one."""
    if latents is None:
        yield
        return
    orig = pipe.prepare_latents

    @functools.wraps(orig)
    def prepare_latents(*args, **kwargs):
        out = orig(*args, **kwargs)
        if isinstance(out, tuple):
            return (latents.to(out[0].device, out[0].dtype), *out[1:])
        return latents.to(out.device, out.dtype)

    pipe.prepare_latents = prepare_latents
    try:
        yield
    finally:
        pipe.__dict__.pop("prepare_latents", None)


def _edit_pipeline(lm: LoadedModel, plan):
    """The loaded pipeline, or an img2img/inpaint view of it sharing the same weights (made once)."""
    if plan is None or lm.inpaint:
        return lm.pipe
    import diffusers

    want = "Img2Img" if plan.kind == "img2img" else "Inpaint"
    name = flow.pipeline_name(lm.arch, plan.kind) or f"StableDiffusion{'XL' if lm.is_xl else ''}{want}Pipeline"
    if name not in lm.extra:
        lm.extra[name] = getattr(diffusers, name).from_pipe(lm.pipe)
        lm.extra[name].set_progress_bar_config(disable=True)
    return lm.extra[name]


def _corrections(plan) -> list[dict[str, Any]] | None:
    """What colour correction did to each image of an inpaint/outpaint (for the CLI's JSON, the bench)."""
    if plan is None or not plan.color_correction:
        return None
    return [c.to_dict() for c in plan.corrections]


def _model_hash(path: Path) -> str:
    """The checkpoint's SHA-256 if already known; otherwise start hashing it in the background."""
    if not path.is_file():
        return ""
    from studio.core.hashing import cached_sha256, hash_in_background

    sha = cached_sha256(path)
    if sha is None:
        hash_in_background([path])
    return sha or ""
