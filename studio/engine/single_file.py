"""A local diffusers config folder for a single-file checkpoint, so `from_single_file` asks no hub."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from studio.core.checkpoint import CheckpointInfo, defaults


def write_config_folder(info: CheckpointInfo, root: Path) -> Path:
    """A local diffusers config folder for `info` (content-addressed, so reused across loads)."""
    from diffusers import EulerDiscreteScheduler
    from transformers import CLIPTextConfig

    from studio.engine.clip_vocab import build_clip_tokenizer

    payload = json.dumps([info.arch, info.inpaint, info.prediction_type, info.configs], sort_keys=True)
    folder = root / hashlib.sha256(payload.encode()).hexdigest()[:16]
    if (folder / "model_index.json").is_file():
        return folder
    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    d = defaults()[info.arch]
    index: dict[str, Any] = {"_class_name": info.pipeline_class, "_diffusers_version": "0.30.0"}
    for name in ("unet", "vae"):
        (tmp / name).mkdir(exist_ok=True)
        (tmp / name / "config.json").write_text(json.dumps(info.configs[name], indent=1))
    index["unet"] = ["diffusers", "UNet2DConditionModel"]
    index["vae"] = ["diffusers", "AutoencoderKL"]
    for te, tok in (("text_encoder", "tokenizer"), ("text_encoder_2", "tokenizer_2")):
        cfg = info.configs.get(te)
        if cfg is None:
            if info.arch.startswith("sdxl"):
                index[te], index[tok] = [None, None], [None, None]
            continue
        cls = cfg["architectures"][0]
        CLIPTextConfig(**{k: v for k, v in cfg.items() if k != "architectures"}).save_pretrained(tmp / te)
        conf = json.loads((tmp / te / "config.json").read_text())
        conf["architectures"] = [cls]
        (tmp / te / "config.json").write_text(json.dumps(conf, indent=1))
        pad = d[te]["pad_token"]
        build_clip_tokenizer(cfg["max_position_embeddings"], pad_token=pad).save_pretrained(tmp / tok)
        index[te] = ["transformers", cls]
        index[tok] = ["transformers", "CLIPTokenizer"]
    sched = dict(defaults()["scheduler_common"], prediction_type=info.prediction_type)
    EulerDiscreteScheduler(**sched).save_config(tmp / "scheduler")
    index["scheduler"] = ["diffusers", "EulerDiscreteScheduler"]
    if not info.arch.startswith("sdxl"):
        index.update(safety_checker=[None, None], feature_extractor=[None, None], requires_safety_checker=False)
    else:
        index.update(force_zeros_for_empty_prompt=True)
    (tmp / "model_index.json").write_text(json.dumps(index, indent=1))
    try:
        tmp.rename(folder)
    except OSError:  # another process wrote it first
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return folder
