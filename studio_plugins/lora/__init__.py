"""LoRA plugin: find LoRA files, check they fit the model, and swap them on the loaded pipeline.

- Folders: the models library's `loras/`, plus any the user adds (A1111 `models/Lora`, ComfyUI
  `models/loras`) — `STUDIO_LORA_DIRS` (os.pathsep-separated) or `LoraPlugin.folders`.
- Request: `GenerationRequest.loras` (name or path, weight −2…2) and the A1111 prompt syntax
  `<lora:name:0.8>`, which stays in the recorded prompt and is removed from what the text
  encoder reads.
- kohya (`lora_unet_…`, SDXL's with the original UNet's block names too), LyCORIS LoCon and
  diffusers/peft (`unet.….lora_A`) files load; LyCORIS LoHa, LoKr and the rarer kinds are refused
  naming their kind; a LoRA whose layers do not match the model's is refused before anything loads.
- The run records each LoRA's SHA-256 and its "addnet" hash (A1111's "Lora hashes").
- FLUX.1 and SD 3/3.5 LoRAs load in kohya's, BFL's/ComfyUI's (`diffusion_model.double_blocks.…`)
  and diffusers' (`transformer.…`) layouts, converted by the studio's shape-aware key rules
  (`studio.engine.flow_keys`).
- Changing LoRAs or weights never reloads the base model: adapters are added once per file and
  activated with `set_adapters`.
"""

from __future__ import annotations

import glob
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.plugin_api import MANIFEST_FILE, PanelHost, PipelineContext, PluginError, read_manifest

from .files import LoraFile, check_fits, flow_lora, read_lora

TAG = re.compile(r"<lora:([^:>]+)(?::(-?[0-9.]+))?>", re.IGNORECASE)


@dataclass
class _Active:
    file: LoraFile
    weight: float
    name: str  # as the request or the prompt's tag names it


class LoraPlugin:
    manifest = read_manifest(Path(__file__).with_name(MANIFEST_FILE))

    def __init__(self, folders: list[Path] | None = None) -> None:
        self.folders = folders if folders is not None else default_folders()

    # -- library ----------------------------------------------------------------------------------
    def scan(self) -> list[LoraFile]:
        found: list[LoraFile] = []
        for folder in self.folders:
            if folder.is_dir():
                for path in sorted(folder.rglob("*.safetensors")):
                    try:
                        found.append(read_lora(path))
                    except PluginError:
                        continue
        return found

    def resolve(self, name_or_path: str) -> Path:
        p = Path(name_or_path).expanduser()
        if p.suffix == ".safetensors" and p.is_file():
            return p
        if p.is_absolute() or "/" in name_or_path or os.sep in name_or_path:  # a path, not a name
            raise PluginError(f"LoRA file not found: {name_or_path}")
        pattern = f"{glob.escape(name_or_path)}.safetensors"
        for folder in self.folders:
            for cand in (folder / f"{name_or_path}.safetensors", *folder.rglob(pattern)):
                if cand.is_file():
                    return cand
        where = ", ".join(str(f) for f in self.folders) or "no LoRA folders set"
        raise PluginError(f"LoRA “{name_or_path}” was not found (looked in: {where}).")

    # -- the run ----------------------------------------------------------------------------------
    def prepare(self, ctx: PipelineContext) -> None:
        wanted: list[tuple[str, str, float]] = [(r.name, r.path or r.name, r.weight) for r in ctx.request.loras]
        for m in TAG.finditer(ctx.prompt):
            wanted.append((m[1], m[1], float(m[2]) if m[2] else 1.0))
        ctx.prompt = TAG.sub("", ctx.prompt).strip()
        pipe = ctx.pipe
        loaded: dict[str, str] = getattr(pipe, "_studio_loras", {})  # path -> adapter name
        if not wanted:
            if loaded:
                pipe.disable_lora()
            return
        active: list[_Active] = []
        for name, ref, weight in wanted:
            if not -2.0 <= weight <= 2.0:
                raise PluginError(f"LoRA “{name}” weight {weight} is outside −2…2.")
            lf = read_lora(self.resolve(ref))
            same = next((a for a in active if a.file.path == lf.path), None)
            if same is not None:  # named twice (the LoRA panel and a prompt tag): applied once
                ctx.notes.append(f"LoRA “{name}” is named twice; it was applied once, at {same.weight:g}.")
                continue
            if getattr(pipe, "transformer", None) is None:
                check_fits(lf, pipe)
            active.append(_Active(lf, weight, name))
        for a in active:
            key = str(a.file.path)
            if key not in loaded:
                adapter = f"lora{len(loaded)}_{re.sub(r'[^A-Za-z0-9_]', '_', a.file.name)}"
                if getattr(pipe, "transformer", None) is not None:  # FLUX / SD3
                    pipe.load_lora_weights(flow_lora(a.file, pipe), adapter_name=adapter)
                else:
                    pipe.load_lora_weights(key, adapter_name=adapter)
                loaded[key] = adapter
        pipe._studio_loras = loaded
        pipe.enable_lora()
        pipe.set_adapters([loaded[str(a.file.path)] for a in active], adapter_weights=[a.weight for a in active])
        ctx.metadata["loras"] = [{"name": a.file.name, "weight": a.weight, "path": str(a.file.path)} for a in active]
        ctx.metadata["lora_hashes"] = {a.file.name: a.file.sha256() for a in active}
        ctx.metadata["lora_addnet_hashes"] = {a.name: a.file.addnet_sha256() for a in active}

    def panel(self, host: PanelHost) -> Any:
        """The LoRA dock: the library, the active LoRAs and their weights (studio_plugins.lora.panel)."""
        from .panel import LoraPanel

        panel = LoraPanel(self)
        panel.insertText.connect(lambda text: host.insert_prompt_text(f" {text}"))
        return panel


def default_folders() -> list[Path]:
    from studio.core.paths import demo_adapters_dir, models_dir

    env = os.environ.get("STUDIO_LORA_DIRS", "")
    bundled = [demo_adapters_dir()] if demo_adapters_dir().is_dir() else []
    return [Path(p) for p in env.split(os.pathsep) if p] + [models_dir() / "loras"] + bundled


PLUGIN = LoraPlugin
