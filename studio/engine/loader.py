"""Load pipelines from local files only, and keep recent ones so switching back costs nothing.

Accepted: "demo" (the bundled demo model), a diffusers folder (model_index.json), or one
`.safetensors` checkpoint (SD 1.x / 2.x / XL and inpainting variants, LDM or diffusers layout is
detected by `studio.core.checkpoint`). Pickled checkpoints (`.ckpt`, `.bin`, `.pt`, `.pth`) can
run code when loaded and are refused unless `allow_pickle` is set.
"""

from __future__ import annotations

import importlib
import inspect
import json
import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.core.errors import (
    CorruptModel,
    ModelNotFound,
    NotADiffusionModel,
    PickleRefused,
    StudioError,
    UnsupportedModel,
)
from studio.core.paths import cache_dir, demo_model_dir
from studio.core.results import LoadProgress
from studio.engine.devices import DeviceInfo, release_memory

log = logging.getLogger(__name__)
PICKLE_SUFFIXES = {".ckpt", ".bin", ".pt", ".pth"}
SUPPORTED_PIPELINES = ("StableDiffusion", "FluxPipeline", "FluxFillPipeline")
ProgressFn = Callable[[LoadProgress], None] | None
STAGE_NAMES = {
    "text_encoder": "text encoder",
    "text_encoder_2": "second text encoder",
    "tokenizer": "tokenizer",
    "tokenizer_2": "second tokenizer",
    "text_encoder_3": "third text encoder",
    "tokenizer_3": "third tokenizer",
    "unet": "UNet",
    "transformer": "transformer",
    "vae": "VAE",
    "scheduler": "scheduler",
}


def own_aligned_memory(pipe) -> None:
    """Give every CPU weight of the pipeline its own, 64-byte-aligned memory.

    Weights read from a file can sit at any offset of it (a folder's and a single file's differ),
    and the CPU kernels take different vector paths, with different rounding, for misaligned
    data: the same weights gave different pixels from a diffusers folder and from its single
    file. Copied into fresh tensors (only those not aligned already), a seed gives the same
    image whichever format the model came in.
    """
    import torch

    with torch.no_grad():
        for part in pipe.components.values():
            if isinstance(part, torch.nn.Module):
                for t in [*part.parameters(), *part.buffers()]:
                    if t.device.type == "cpu" and t.numel() and t.data_ptr() % 64:
                        t.data = t.data.clone()


@dataclass
class LoadedModel:
    key: tuple
    name: str  # what the user calls it: "demo", a file or folder name
    path: Path
    pipe: Any
    arch: str  # a key of studio.core.families.FAMILIES: "sd1" | "sd2" | "sdxl" | "sdxl-refiner" | "sd3" | "flux"
    inpaint: bool
    base_scheduler_config: dict[str, Any]
    extra: dict[str, Any] = field(default_factory=dict)
    variant: str = ""  # flux: dev | schnell | fill; sd3: 3-medium | 3.5-medium | 3.5-large

    @property
    def is_xl(self) -> bool:
        return self.arch.startswith("sdxl")

    @property
    def family(self):
        from studio.core.families import FAMILIES

        return FAMILIES[self.arch]

    @property
    def denoiser(self):
        """The UNet or the transformer."""
        return getattr(self.pipe, self.family.denoiser)

    @property
    def guidance(self) -> str:
        """What the guidance scale means for this model: cfg | distilled | none."""
        from studio.core.families import guidance_kind

        return guidance_kind(self.arch, self.variant, self.denoiser.config.get("guidance_embeds"))


def quiet_libraries() -> None:
    """diffusers/transformers progress bars and warnings are noise in the studio: it reports its own."""
    import diffusers
    import transformers

    for lib in (diffusers.utils.logging, transformers.utils.logging):
        lib.set_verbosity_error()
        lib.disable_progress_bar()


def resolve_model(model: str) -> tuple[str, Path]:
    if model.strip().lower() == "demo":
        path = demo_model_dir()
        if not (path / "model_index.json").is_file():
            raise ModelNotFound(
                "The bundled demo model is missing from this installation.",
                f"Expected it at {path}. Choose another model, or reinstall the studio.",
            )
        return "demo", path
    path = Path(model).expanduser()
    if not path.exists():
        raise ModelNotFound(f"Model not found: {path}", "Check the path, or pick the model again.")
    return path.name, path.resolve()


def _progress(fn: ProgressFn, stage: str, fraction: float) -> None:
    if fn is not None:
        fn(LoadProgress(stage, fraction))


def _arch_of(pipe) -> str:
    name = type(pipe).__name__
    if name.startswith("Flux"):
        return "flux"
    if name.startswith("StableDiffusion3"):
        return "sd3"
    if getattr(pipe, "text_encoder_2", None) is not None or "XL" in type(pipe).__name__:
        return "sdxl" if getattr(pipe, "text_encoder", None) is not None else "sdxl-refiner"
    return "sd2" if pipe.unet.config.get("use_linear_projection") else "sd1"


def _refuse_pickles(folder: Path, allow_pickle: bool) -> None:
    for sub in folder.iterdir():
        if not sub.is_dir():
            continue
        weights = [p for p in sub.iterdir() if p.suffix in PICKLE_SUFFIXES | {".safetensors"}]
        if weights and not any(p.suffix == ".safetensors" for p in weights) and not allow_pickle:
            raise PickleRefused(
                f"{folder.name}/{sub.name} has only pickled weights ({weights[0].name}), "
                "which can run code when loaded.",
                "Convert the model to .safetensors, or allow pickled models in the settings if you trust its source.",
            )


def load_diffusers_folder(folder: Path, info: DeviceInfo, progress: ProgressFn, allow_pickle: bool):
    """Load component by component (so the user sees each stage), then assemble the pipeline."""
    import diffusers

    try:
        index = json.loads((folder / "model_index.json").read_text())
    except (OSError, ValueError) as exc:
        raise CorruptModel(f"{folder.name}/model_index.json cannot be read: {exc}") from None
    _refuse_pickles(folder, allow_pickle)
    cls_name = index.get("_class_name", "")
    pipe_cls = getattr(diffusers, cls_name, None)
    if pipe_cls is None or not cls_name.startswith(SUPPORTED_PIPELINES):
        raise UnsupportedModel(
            f"{folder.name} is a {cls_name or 'unknown'} model; this studio runs "
            "Stable Diffusion 1.x/2.x/XL/3/3.5 and FLUX.1."
        )
    parts = {k: v for k, v in index.items() if not k.startswith("_") and isinstance(v, list)}
    components: dict[str, Any] = {}
    for n, (name, (lib, cls)) in enumerate(parts.items()):
        if lib is None or cls is None or not (folder / name).exists():
            components[name] = None
            continue
        _progress(progress, f"loading {STAGE_NAMES.get(name, name)}…", n / max(len(parts), 1))
        module = importlib.import_module(lib)
        klass = getattr(module, cls)
        kwargs: dict[str, Any] = {"subfolder": name}
        if hasattr(klass, "dtype") or name in (
            "unet",
            "transformer",
            "vae",
            "text_encoder",
            "text_encoder_2",
            "text_encoder_3",
        ):
            kwargs["torch_dtype"] = info.torch_dtype
            kwargs["use_safetensors"] = None if allow_pickle else True
        if lib == "transformers" and "kenizer" not in cls:
            kwargs.pop("use_safetensors", None)
        try:
            if lib == "transformers" or "Scheduler" in cls:
                components[name] = klass.from_pretrained(str(folder), local_files_only=True, **kwargs)
            else:
                components[name] = klass.from_pretrained(folder, local_files_only=True, **kwargs)
        except StudioError:
            raise
        except Exception as exc:  # noqa: BLE001 — a broken component file: say which one
            raise CorruptModel(
                f"{folder.name}: the {STAGE_NAMES.get(name, name)} cannot be loaded ({exc.__class__.__name__}: {exc})"
            ) from None
    params = inspect.signature(pipe_cls.__init__).parameters
    for pname, p in params.items():
        if pname not in components and pname != "self" and p.default is inspect.Parameter.empty:
            components[pname] = None
    kwargs = {k: v for k, v in components.items() if k in params}
    if "requires_safety_checker" in params:
        kwargs["requires_safety_checker"] = False
    return pipe_cls(**kwargs)


def load_single_file(
    path: Path,
    info: DeviceInfo,
    progress: ProgressFn,
    allow_pickle: bool,
    parts: tuple[tuple[str, ...], str] = ((), ""),
):
    import diffusers

    from studio.core.checkpoint import identify
    from studio.engine.single_file import write_config_folder

    if path.suffix.lower() in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise PickleRefused(
                f"{path.name} is a pickled checkpoint, which can run code when loaded.",
                "Use a .safetensors version, or allow pickled models in the settings if you trust its source.",
            )
        raise UnsupportedModel(
            f"{path.name}: pickled single-file checkpoints are not supported yet; convert it to .safetensors."
        )
    if path.suffix.lower() not in (".safetensors", ".gguf"):
        raise NotADiffusionModel(f"{path.name} is not a model file (.safetensors, .gguf) or a diffusers model folder.")
    _progress(progress, "reading checkpoint header…", 0.02)
    from studio.core.flowmodels import identify_flow

    finfo = identify_flow(path)
    if finfo is not None:
        from studio.engine.flow_load import load_flow_file

        return load_flow_file(finfo, info, parts[0], parts[1], progress)
    if path.suffix.lower() == ".gguf":
        raise UnsupportedModel(f"{path.name}: only FLUX.1 and SD 3 transformers are supported in GGUF files.")
    ckpt = identify(path)
    config = write_config_folder(ckpt, cache_dir() / "single-file-configs")
    _progress(progress, f"loading {ckpt.arch.upper()} checkpoint weights…", 0.1)
    pipe_cls = getattr(diffusers, ckpt.pipeline_class)
    try:
        pipe = pipe_cls.from_single_file(
            str(path), config=str(config), local_files_only=True, torch_dtype=info.torch_dtype
        )
    except StudioError:
        raise
    except Exception as exc:  # noqa: BLE001 — a broken file: say which
        raise CorruptModel(f"{path.name} could not be loaded: {exc.__class__.__name__}: {exc}") from None
    if ckpt.arch == "sd2":  # ε or v: what the file says, else what the UNet says (studio.engine.prediction)
        from studio.engine.prediction import settle

        pipe._studio_prediction = settle(pipe, ckpt.prediction_source)
    return pipe


def _parts_for(path: Path, parts: tuple[tuple[str, ...], str]) -> tuple[tuple[str, ...], str]:
    """The separate files that matter for loading `path`: only a FLUX/SD3 single file takes any
    (encoders; and its VAE when the file holds none — otherwise the VAE is swapped after loading)."""
    encoders, vae = parts
    if not path.is_file() or path.suffix.lower() not in (".safetensors", ".gguf"):
        return (), ""
    from studio.core.errors import StudioError as _Err
    from studio.core.flowmodels import identify_flow

    try:
        finfo = identify_flow(path)
    except _Err:
        return (), ""
    if finfo is None:
        return (), ""
    resolved = tuple(sorted(str(Path(e).expanduser().resolve()) for e in encoders))
    return resolved, (str(Path(vae).expanduser().resolve()) if vae and finfo.vae is None else "")


class ModelCache:
    """Loaded pipelines by (path, size, mtime, device, dtype), most recent last; thread-confined."""

    def __init__(self, capacity: int = 2) -> None:
        self.capacity = max(1, capacity)
        self._items: OrderedDict[tuple, LoadedModel] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0  # how many times weights were read from disk (tests and benchmarks look)
        quiet_libraries()

    def names(self) -> list[str]:
        """The loaded models' names, least recently used first (`studio cluster status` lists them)."""
        with self._lock:
            return [lm.name for lm in self._items.values()]

    def get(
        self,
        model: str,
        info: DeviceInfo,
        progress: ProgressFn = None,
        allow_pickle: bool = False,
        parts: tuple[tuple[str, ...], str] = ((), ""),
    ) -> LoadedModel:
        """`parts`: the text-encoder files and VAE a denoiser-only FLUX/SD3 file is loaded with."""
        name, path = resolve_model(model)
        st = (
            path.stat()
            if path.is_file()
            else (path / "model_index.json").stat()
            if (path / "model_index.json").exists()
            else path.stat()
        )
        parts = _parts_for(path, parts)
        key = (str(path), st.st_size, st.st_mtime_ns, info.device, info.dtype, parts)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                _progress(progress, "model ready", 1.0)
                return self._items[key]
            # Make room before loading, not after: a switch then never holds more than `capacity` models.
            evicted = 0
            while len(self._items) >= self.capacity:
                self._items.popitem(last=False)
                evicted += 1
        if evicted:
            release_memory(info)
        loaded = self._load(key, name, path, info, progress, allow_pickle, parts)
        with self._lock:
            self._items[key] = loaded
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
        return loaded

    def _load(self, key, name, path, info, progress, allow_pickle, parts) -> LoadedModel:
        if path.is_dir():
            if not (path / "model_index.json").is_file():
                raise NotADiffusionModel(
                    f"{path.name} is a folder without model_index.json: not a diffusers model folder."
                )
            pipe = load_diffusers_folder(path, info, progress, allow_pickle)
        else:
            pipe = load_single_file(path, info, progress, allow_pickle, parts)
        _progress(progress, f"moving model to {info.device}…", 0.95)
        pipe = pipe.to(info.torch_device)
        if pipe.device.type == "cpu":
            own_aligned_memory(pipe)
        pipe.set_progress_bar_config(disable=True)
        self.loads += 1
        _progress(progress, "model ready", 1.0)
        arch = _arch_of(pipe)
        lm = LoadedModel(
            key=key,
            name=name,
            path=path,
            pipe=pipe,
            arch=arch,
            inpaint=False,
            base_scheduler_config=dict(pipe.scheduler.config),
            extra={"prediction": getattr(pipe, "_studio_prediction", None)},
        )
        if arch == "flux":
            lm.variant = (
                "fill"
                if type(pipe).__name__ == "FluxFillPipeline"
                else ("dev" if pipe.transformer.config.guidance_embeds else "schnell")
            )
            lm.inpaint = lm.variant == "fill"
        elif arch == "sd3":
            cfg = pipe.transformer.config
            lm.variant = "3.5-medium" if cfg.dual_attention_layers else "3.5-large" if cfg.qk_norm else "3-medium"
        else:
            lm.inpaint = pipe.unet.config.in_channels == 9
        vae_path = getattr(pipe, "_studio_vae_path", "")
        if vae_path:  # a denoiser-only file's VAE is its own: the request's `vae` names it
            lm.extra["own_vae"], lm.extra["vae_path"] = pipe.vae, vae_path
        return lm

    def drop(self, key: tuple) -> None:
        """Forget one loaded model (its weights were changed in place)."""
        with self._lock:
            self._items.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
