"""Load FLUX.1 and SD 3/3.5 single files, as users have them, into a diffusers pipeline.

- A denoiser-only file (FLUX in BFL's or ComfyUI's layout, a GGUF, an fp8 file; SD3 without its
  encoders) plus the separate text-encoder files and VAE the request names (`text_encoders`,
  `vae`): each file is told apart by its header (`studio.core.flowmodels`), so their order does not
  matter; a missing one is named, with where it is usually kept.
- An SD 3.5 all-in-one file: transformer, VAE and whichever encoders it holds (the rest from files).

Every config comes from tensor shapes and `resources/model_defaults.json` (`studio.core.flowmodels`);
the original key layouts are turned into diffusers' by `studio.engine.flow_keys`, and diffusers'
`from_single_file` then loads the converted weights (with its GGUF quantizer for `.gguf`, which
keeps the weights quantized and dequantizes layer by layer at the compute dtype). fp8-stored weights
are cast to the compute dtype as they load. bitsandbytes NF4 files run on CUDA only.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from studio.core.checkpoint import defaults
from studio.core.errors import CorruptModel, ModelNotFound, NotADiffusionModel, StudioError, UnsupportedModel
from studio.core.families import FAMILIES, missing_encoders_message
from studio.core.flowmodels import (
    AIO_ENCODERS,
    AIO_VAE,
    FlowInfo,
    encoder_kind,
    read_any_header,
    vae16_config,
    variant_label,
)
from studio.core.paths import cache_dir
from studio.engine.devices import DeviceInfo


def check_device(finfo: FlowInfo, info: DeviceInfo) -> None:
    """One line when the file's number format cannot run on this device."""
    import torch

    label = f"{FAMILIES[finfo.arch].label} {variant_label(finfo.arch, finfo.variant)}"
    if finfo.precision == "nf4" and not info.device.startswith("cuda"):
        raise UnsupportedModel(
            f"{finfo.path.name} ({label}) is stored in bitsandbytes NF4, which runs only on an NVIDIA GPU "
            f"(CUDA); this device is {info.device}.",
            "Use a GGUF, fp8 or bf16/fp16 version of the model here.",
        )
    if finfo.precision == "nf4":  # pre-quantized NF4 single files (Forge's) need bitsandbytes' own loader
        raise UnsupportedModel(
            f"{finfo.path.name} ({label}) is a pre-quantized bitsandbytes NF4 file, which this studio cannot load yet.",
            "Use the GGUF (Q4/Q8) or fp8 version of the model: they need as little memory.",
        )
    if finfo.precision == "fp8" and not hasattr(torch, "float8_e4m3fn"):
        raise UnsupportedModel(
            f"{finfo.path.name} ({label}) is stored in fp8, which this PyTorch {torch.__version__} cannot read.",
            "Install PyTorch 2.1 or newer, or use a bf16/fp16 version of the model.",
        )


def _state(path: Path, prefix: str) -> dict:
    """The file's tensors under `prefix` (prefix removed); GGUF tensors stay quantized."""
    try:
        if path.suffix.lower() == ".gguf":
            from diffusers.models.model_loading_utils import load_gguf_checkpoint

            state = load_gguf_checkpoint(str(path))
        else:
            from safetensors.torch import load_file

            state = load_file(str(path))
    except StudioError:
        raise
    except Exception as exc:  # noqa: BLE001 — a damaged file: say which
        raise CorruptModel(f"{path.name} could not be read ({type(exc).__name__}: {exc}).") from None
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def _config_folder(name: str, config: dict[str, Any]) -> Path:
    """A content-addressed local folder with `transformer/config.json`, for `from_single_file(config=…)`."""
    payload = json.dumps(config, sort_keys=True)
    folder = cache_dir() / "flow-configs" / hashlib.sha256(payload.encode()).hexdigest()[:16]
    target = folder / name / "config.json"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_text(json.dumps(config, indent=1))
        tmp.replace(target)
    return folder


def load_transformer(finfo: FlowInfo, info: DeviceInfo, state: dict | None = None):
    import diffusers
    from diffusers import GGUFQuantizationConfig

    from studio.engine.flow_keys import leftover, strip_leftover, to_diffusers

    cfg = dict(finfo.transformer)
    cls = getattr(diffusers, cfg["_class_name"])
    if state is None:
        state = _state(finfo.path, finfo.prefix)
    if finfo.layout == "bfl":
        state = to_diffusers(state, finfo.arch)
        extra = leftover(state)
        if extra:
            raise UnsupportedModel(
                f"{finfo.path.name} has weights this studio cannot place ({len(extra)}, e.g. {extra[0]})."
            )
        state = strip_leftover(state)
    kwargs: dict[str, Any] = {}
    if finfo.gguf:
        kwargs["quantization_config"] = GGUFQuantizationConfig(compute_dtype=info.torch_dtype)
    try:
        model = cls.from_single_file(
            state,
            config=str(_config_folder("transformer", cfg)),
            subfolder="transformer",
            local_files_only=True,
            torch_dtype=info.torch_dtype,
            **kwargs,
        )
    except StudioError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise CorruptModel(
            f"{finfo.path.name}: the transformer cannot be loaded ({type(exc).__name__}: {exc})."
        ) from None
    return model.eval()


def _clip(state: dict, cfg: dict[str, Any], with_projection: bool, info: DeviceInfo):
    import torch
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    conf = {k: v for k, v in cfg.items() if not k.startswith("_") and k != "architectures"}
    prefix = cfg.get("_prefix", "text_model.")
    base = prefix.removesuffix("text_model.")
    state = {
        ("text_model." + k[len(prefix) :] if k.startswith(prefix) else k[len(base) :]): v
        for k, v in state.items()
        if k.startswith(base) and "position_ids" not in k
    }
    cls = CLIPTextModelWithProjection if with_projection else CLIPTextModel
    model = cls(CLIPTextConfig(**conf))
    if with_projection and "text_projection.weight" not in state:  # CLIP-L files often leave it out
        state["text_projection.weight"] = torch.eye(conf["projection_dim"], conf["hidden_size"])
    if not with_projection:
        state.pop("text_projection.weight", None)
    own = model.state_dict()
    state = {k if k in own else k.removeprefix("text_model."): v for k, v in state.items()}
    missing, _ = model.load_state_dict({k: v.to(torch.float32) for k, v in state.items() if k in own}, strict=False)
    if [m for m in missing if "position_ids" not in m]:
        raise CorruptModel(
            f"a CLIP text encoder file is incomplete ({len(missing)} weights missing, e.g. {missing[0]})."
        )
    return model.to(info.torch_dtype).eval()


def _t5(state: dict, cfg: dict[str, Any], info: DeviceInfo):
    import torch
    from transformers import T5Config, T5EncoderModel

    conf = {k: v for k, v in cfg.items() if k not in ("architectures", "model_type")}
    model = T5EncoderModel(T5Config(**conf))
    if "shared.weight" not in state and "encoder.embed_tokens.weight" in state:
        state["shared.weight"] = state["encoder.embed_tokens.weight"]
    state.setdefault("encoder.embed_tokens.weight", state.get("shared.weight"))
    missing, _ = model.load_state_dict(
        {k: v.to(torch.float32) for k, v in state.items() if v is not None}, strict=False
    )
    if missing:
        raise CorruptModel(
            f"the T5 text encoder file is incomplete ({len(missing)} weights missing, e.g. {missing[0]})."
        )
    return model.to(info.torch_dtype).eval()


def find_t5_tokenizer(near: list[Path]):
    """The T5 tokenizer: a `t5_tokenizer/` (or `tokenizer_2`/`tokenizer_3`) folder, or a
    `tokenizer.json`, beside one of the given files or in the models library's `tokenizers/t5`.
    T5's vocabulary is in none of the weight files and the studio cannot ship it."""
    from transformers import T5TokenizerFast

    from studio.core.paths import models_dir

    candidates: list[Path] = []
    for p in near:
        d = p.parent
        candidates += [d / "t5_tokenizer", d / f"{p.stem}.tokenizer", d / "tokenizer_2", d / "tokenizer_3", d]
    candidates.append(models_dir() / "tokenizers" / "t5")
    for c in candidates:
        if (c / "tokenizer.json").is_file() or (c / "spiece.model").is_file():
            try:
                return T5TokenizerFast.from_pretrained(str(c), local_files_only=True)
            except Exception:  # noqa: BLE001 — not a T5 tokenizer: keep looking
                continue
    raise ModelNotFound(
        "The T5 tokenizer was not found: T5's vocabulary is not inside the encoder file.",
        f"Put a T5 tokenizer folder (tokenizer.json, e.g. FLUX's tokenizer_2 from a diffusers copy) beside the T5 "
        f"file as t5_tokenizer/, or in {models_dir() / 'tokenizers' / 't5'}.",
    )


def _vae(path: Path | None, state: dict | None, arch: str, info: DeviceInfo):
    from diffusers import AutoencoderKL
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    if state is None:
        assert path is not None
        if path.is_dir():
            from studio.engine.components import _component_folder

            return AutoencoderKL.from_pretrained(
                _component_folder(path, "vae"), local_files_only=True, torch_dtype=info.torch_dtype
            ).eval()
        tensors, _ = read_any_header(path)
        cfg = vae16_config(tensors, arch)
        if cfg is None:
            raise UnsupportedModel(f"{path.name} is not a VAE this model can use (FLUX/SD3 need a 16-channel VAE).")
        state = _state(path, cfg["_prefix"])
    else:
        from studio.core.checkpoint import TensorInfo

        cfg = vae16_config({k: TensorInfo(str(v.dtype), tuple(v.shape)) for k, v in state.items()}, arch)
        assert cfg is not None
    conf = {k: v for k, v in cfg.items() if not k.startswith("_")}
    import torch

    state = convert_ldm_vae_checkpoint({k: v.to(torch.float32) for k, v in state.items()}, conf)
    vae = AutoencoderKL.from_config(conf)
    missing, _ = vae.load_state_dict(state, strict=False)
    if missing:
        raise CorruptModel(f"the VAE is incomplete ({len(missing)} weights missing, e.g. {missing[0]}).")
    return vae.to(info.torch_dtype).eval()


def load_flow_file(
    finfo: FlowInfo, info: DeviceInfo, text_encoders: tuple[str, ...] = (), vae: str = "", progress=None
):
    """A diffusers pipeline for a FLUX/SD3 single file plus the separate files it needs."""
    import diffusers
    from diffusers import FlowMatchEulerDiscreteScheduler

    from studio.engine.clip_vocab import build_clip_tokenizer

    check_device(finfo, info)
    fam = FAMILIES[finfo.arch]
    files: dict[str, tuple[Path, dict]] = {}
    for name in text_encoders:
        p = Path(name).expanduser()
        if not p.is_file():
            raise ModelNotFound(f"Text encoder file not found: {p}")
        tensors, _ = read_any_header(p)
        found = encoder_kind(tensors)
        if found is None:
            raise NotADiffusionModel(f"{p.name} is not a text encoder (CLIP-L, CLIP-G or T5).")
        slot, cfg = found
        if slot == "clip_l" and "clip_l" in files and finfo.arch == "sd3":  # two CLIPs: the wider one is G
            other = files["clip_l"]
            wide = (p, cfg) if cfg["hidden_size"] > other[1]["hidden_size"] else other
            narrow = other if wide[0] == p else (p, cfg)
            files["clip_l"], files["clip_g"] = narrow, wide
            continue
        files[slot] = (p, cfg)
    have = set(finfo.encoders) | set(files)
    missing = [e.slot for e in fam.encoders if e.slot not in have]
    vae_path = Path(vae).expanduser() if vae else None
    if missing or (finfo.vae is None and vae_path is None):
        msg, hint = (
            missing_encoders_message(finfo.arch, missing, finfo.path.name)
            if missing
            else (f"{finfo.path.name} holds no VAE; choose the {fam.label} VAE file (ae.safetensors for FLUX).", "")
        )
        if missing and finfo.vae is None and vae_path is None:
            msg = msg.rstrip(".") + ", and a VAE (ae.safetensors)."
        raise UnsupportedModel(msg, hint)
    if vae_path is not None and not vae_path.exists():
        raise ModelNotFound(f"VAE not found: {vae_path}")

    def step(what: str, f: float) -> None:
        if progress is not None:
            from studio.core.results import LoadProgress

            progress(LoadProgress(what, f))

    step("loading transformer…", 0.1)
    transformer = load_transformer(finfo, info)
    parts: dict[str, Any] = {}
    aio: dict | None = None
    if finfo.encoders or finfo.vae is not None:
        aio = _state(finfo.path, "")
    step("loading text encoders…", 0.5)
    for slot in [e.slot for e in fam.encoders]:
        if slot in files:
            p, cfg = files[slot]
            state = _state(p, "")
        else:
            assert aio is not None
            cfg = dict(finfo.encoders[slot])
            if "_prefix" in cfg:  # relative to the encoder's own keys
                cfg["_prefix"] = cfg["_prefix"][len(AIO_ENCODERS[slot]) :]
            state = {k[len(AIO_ENCODERS[slot]) :]: v for k, v in aio.items() if k.startswith(AIO_ENCODERS[slot])}
        if slot == "clip_g":  # OpenCLIP bigG's activation, which no shape tells
            cfg = dict(cfg, hidden_act=defaults()["sd3"]["text_encoder_2"]["hidden_act"])
        parts[slot] = _t5(state, cfg, info) if slot == "t5xxl" else _clip(state, cfg, finfo.arch == "sd3", info)
        parts[slot + "_cfg"] = cfg
    t5_near = [files["t5xxl"][0]] if "t5xxl" in files else [finfo.path]
    t5_tok = find_t5_tokenizer(t5_near)
    step("loading VAE…", 0.8)
    if finfo.vae is not None and aio is not None:
        vae_model = _vae(
            None, {k[len(AIO_VAE) :]: v for k, v in aio.items() if k.startswith(AIO_VAE)}, finfo.arch, info
        )
    else:
        vae_model = _vae(vae_path, None, finfo.arch, info)
    d = defaults()[finfo.arch]
    sched_cfg = d["scheduler_schnell"] if finfo.arch == "flux" and finfo.variant == "schnell" else d["scheduler"]
    scheduler = FlowMatchEulerDiscreteScheduler(**sched_cfg)
    limit = d["max_sequence_length"].get(finfo.variant, fam.t5_limit)
    t5_tok.model_max_length = limit

    def clip_tok(slot: str, pad: str = "<|endoftext|>"):
        return build_clip_tokenizer(parts[slot + "_cfg"]["max_position_embeddings"], pad_token=pad)

    if finfo.arch == "flux":
        cls = getattr(diffusers, d["fill_pipeline"] if finfo.variant == "fill" else d["pipeline"])
        pipe = cls(
            scheduler=scheduler,
            vae=vae_model,
            text_encoder=parts["clip_l"],
            tokenizer=clip_tok("clip_l"),
            text_encoder_2=parts["t5xxl"],
            tokenizer_2=t5_tok,
            transformer=transformer,
        )
    else:
        pipe = diffusers.StableDiffusion3Pipeline(
            transformer=transformer,
            scheduler=scheduler,
            vae=vae_model,
            text_encoder=parts["clip_l"],
            tokenizer=clip_tok("clip_l"),
            text_encoder_2=parts["clip_g"],
            tokenizer_2=clip_tok("clip_g", "!"),
            text_encoder_3=parts["t5xxl"],
            tokenizer_3=t5_tok,
        )
    pipe._studio_vae_path = str(vae_path.resolve()) if (vae_path is not None and finfo.vae is None) else ""
    return pipe
