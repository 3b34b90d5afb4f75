"""ControlNet plugin: one or more ControlNet units guide txt2img, img2img and inpainting.

Each unit of `GenerationRequest.controlnets` names a ControlNet model (a diffusers folder or one
`.safetensors` file, diffusers or original layout), a control image, a preprocessor (`none`,
`canny`, `hed`, and controlnet-aux's offline ones when installed), a weight and the fraction of
steps it acts in (start…end). `GenerationRequest.plugins["controlnet"]["guess_mode"]` turns on
guess mode. The loaded pipeline is viewed as the matching ControlNet pipeline (`from_pipe`, no
reload); ControlNet models are cached by file.

FLUX.1: diffusers' FluxControlNetModel (a folder), single or Union (`num_mode`: the unit's
preprocessor picks the Union mode — canny 0, tile 1, depth 2, blur 3, pose 4, gray 5, low quality 6),
through FluxControlNetPipeline and its img2img/inpaint twins.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from studio.plugin_api import MANIFEST_FILE, PanelHost, PipelineContext, PluginError, read_manifest

from . import preprocessors

CONTROL_FROM_CANVAS = "Use Edit canvas as control image"  # the Plugins menu entry the panel adds


class ControlNetPlugin:
    manifest = read_manifest(Path(__file__).with_name(MANIFEST_FILE))

    def __init__(self) -> None:
        self._models: dict[tuple, Any] = {}

    def panel(self, host: PanelHost) -> Any:
        """The ControlNet dock (studio_plugins.controlnet.panel) and Plugins ▸ Use Edit canvas as control image."""
        return _panel(self, host)

    def preprocessors(self) -> dict[str, preprocessors.Preprocessor]:
        return preprocessors.available()

    def parameters(self, request) -> dict[str, str]:
        """A1111 (sd-webui-controlnet) style entries for the parameters text: `ControlNet 0: "Module: …"`."""
        return {
            f"ControlNet {i}": f"Module: {u.preprocessor}, Model: {Path(u.model).stem}, Weight: {u.weight:g}, "
            f"Guidance Start: {u.start:g}, Guidance End: {u.end:g}"
            for i, u in enumerate(request.controlnets)
        }

    def preprocess(self, name: str, image: np.ndarray) -> np.ndarray:
        procs = self.preprocessors()
        if name not in procs:
            raise PluginError(f"unknown preprocessor {name!r}; available here: {', '.join(procs)}")
        return procs[name](image)

    def load_model(self, ref: str, pipe) -> Any:
        from diffusers import ControlNetModel

        path = Path(ref).expanduser()
        if not path.exists():
            raise PluginError(f"ControlNet model not found: {path}")
        st = path.stat()
        net = _denoiser(pipe)
        key = (str(path.resolve()), st.st_mtime_ns, str(net.dtype), str(net.device))
        if key not in self._models:
            try:
                if _is_flux(pipe):
                    cn = _flux_controlnet(path, pipe)
                elif path.is_dir():
                    cn = ControlNetModel.from_pretrained(path, local_files_only=True, torch_dtype=pipe.unet.dtype)
                else:
                    cn = _single_file(path, pipe)
            except PluginError:
                raise
            except Exception as exc:  # noqa: BLE001 — a broken file: say which
                raise PluginError(f"ControlNet {path.name} cannot be loaded: {exc.__class__.__name__}: {exc}") from None
            _check_fits(cn, pipe, path.name)
            self._models[key] = cn.to(net.device, net.dtype).eval()
        return self._models[key]

    def prepare(self, ctx: PipelineContext) -> None:
        units = ctx.request.controlnets
        if not units:
            return
        import diffusers
        from diffusers import MultiControlNetModel
        from PIL import Image

        from studio.engine.inpaint import load_rgb

        models, images, weights, starts, ends = [], [], [], [], []
        w, h = ctx.size
        for unit in units:
            if unit.end <= unit.start:
                raise PluginError(f"ControlNet unit {unit.model}: end ({unit.end}) must be after start ({unit.start}).")
            models.append(self.load_model(unit.model, ctx.pipe))
            try:
                src = load_rgb(unit.image.path, "control image")
            except Exception as exc:  # noqa: BLE001
                raise PluginError(str(exc)) from None
            src = np.asarray(Image.fromarray(src).resize((w, h), Image.Resampling.LANCZOS))
            images.append(Image.fromarray(self.preprocess(unit.preprocessor, src)))
            weights.append(unit.weight)
            starts.append(unit.start)
            ends.append(unit.end)
        base = type(ctx.pipe).__name__  # StableDiffusion[XL][Img2Img|Inpaint]Pipeline, Flux[Img2Img|Inpaint]Pipeline
        mode = "Inpaint" if "Inpaint" in base else "Img2Img" if "Img2Img" in base else ""
        one = len(models) == 1
        if _is_flux(ctx.pipe):
            from diffusers import FluxMultiControlNetModel

            cls = getattr(
                diffusers,
                {
                    "": "FluxControlNetPipeline",
                    "Img2Img": "FluxControlNetImg2ImgPipeline",
                    "Inpaint": "FluxControlNetInpaintPipeline",
                }[mode],
            )
            controlnet = models[0] if one else FluxMultiControlNetModel(models)
            modes = [
                UNION_MODES.get(u.preprocessor) if m.config.get("num_mode") else None for u, m in zip(units, models)
            ]
            ctx.pipe = cls.from_pipe(ctx.pipe, controlnet=controlnet)
            ctx.pipe.set_progress_bar_config(disable=True)
            ctx.call_kwargs.update(
                control_image=images[0] if one else images,
                controlnet_conditioning_scale=weights[0] if one else weights,
                control_guidance_start=starts[0] if one else starts,
                control_guidance_end=ends[0] if one else ends,
            )
            if any(m is not None for m in modes):
                ctx.call_kwargs["control_mode"] = modes[0] if one else [m or 0 for m in modes]
        else:
            xl = "XL" if "XL" in base else ""
            cls = getattr(diffusers, f"StableDiffusion{xl}ControlNet{mode}Pipeline")
            controlnet = models[0] if one else MultiControlNetModel(models)
            ctx.pipe = cls.from_pipe(ctx.pipe, controlnet=controlnet)
            ctx.pipe.set_progress_bar_config(disable=True)
            ctx.call_kwargs.update(
                {"control_image" if mode else "image": images[0] if one else images},
                controlnet_conditioning_scale=weights[0] if one else weights,
                control_guidance_start=starts[0] if one else starts,
                control_guidance_end=ends[0] if one else ends,
                guess_mode=bool(ctx.request.plugins.get("controlnet", {}).get("guess_mode", False)),
            )
        ctx.metadata["controlnets"] = [
            {
                "model": Path(u.model).name,
                "preprocessor": u.preprocessor,
                "weight": u.weight,
                "start": u.start,
                "end": u.end,
            }
            for u in units
        ]


def _panel(plugin: ControlNetPlugin, host: PanelHost) -> Any:
    from .panel import ControlNetPanel

    panel = ControlNetPanel(plugin)

    def control_from_canvas() -> None:
        image = host.edit_canvas_image()
        if image is None:
            host.show_message("The Edit canvas is empty.", "Open or paste an image there first.", kind="warning")
            return
        panel.set_image_from_array(image, 0)
        host.raise_panel(panel)

    host.add_action(
        CONTROL_FROM_CANVAS, control_from_canvas, tip="Send the image on the Edit canvas to the first ControlNet unit."
    )
    return panel


def _single_file(path: Path, pipe):
    """A ControlNet in one file: diffusers keys, or the original layout (control_model.*)."""
    from diffusers import ControlNetModel
    from safetensors.torch import load_file

    from studio.core.checkpoint import read_header

    tensors, _ = read_header(path)
    cond = tensors.get("controlnet_cond_embedding.conv_in.weight") or tensors.get(
        "control_model.input_hint_block.0.weight"
    )
    if cond is None:
        raise PluginError(f"{path.name} is not a ControlNet.")
    if "controlnet_cond_embedding.conv_in.weight" in tensors:
        widths = [
            tensors[f"controlnet_cond_embedding.blocks.{i}.weight"].shape[0]
            for i in range(0, 99)
            if f"controlnet_cond_embedding.blocks.{i}.weight" in tensors
        ]
        emb = [tensors["controlnet_cond_embedding.conv_in.weight"].shape[0]] + widths[1::2]
        cn = ControlNetModel.from_unet(pipe.unet, conditioning_embedding_out_channels=tuple(emb))
        missing, unexpected = cn.load_state_dict(load_file(str(path)), strict=False)
        if missing or unexpected:
            raise PluginError(
                f"{path.name} does not fit this model ({len(missing)} missing, {len(unexpected)} unexpected tensors)."
            )
        return cn
    import json
    import tempfile

    config = dict(ControlNetModel.from_unet(pipe.unet).config)
    with tempfile.TemporaryDirectory() as tmp:
        Path(tmp, "config.json").write_text(json.dumps(config))
        return ControlNetModel.from_single_file(str(path), config=tmp, local_files_only=True)


UNION_MODES = {"canny": 0, "tile": 1, "depth": 2, "blur": 3, "pose": 4, "gray": 5, "lq": 6}


def _is_flux(pipe) -> bool:
    return type(pipe).__name__.startswith("Flux")


def _denoiser(pipe):
    return pipe.transformer if getattr(pipe, "transformer", None) is not None else pipe.unet


def _flux_controlnet(path: Path, pipe):
    from diffusers import FluxControlNetModel

    if not path.is_dir():
        raise PluginError(f"{path.name}: FLUX ControlNets load from a diffusers folder (config.json + weights).")
    import json

    try:
        cls = json.loads((path / "config.json").read_text()).get("_class_name", "")
    except (OSError, ValueError):
        cls = ""
    if cls != "FluxControlNetModel":
        raise PluginError(f"ControlNet {path.name} ({cls or 'no config'}) was not made for this FLUX model.")
    return FluxControlNetModel.from_pretrained(path, local_files_only=True, torch_dtype=pipe.transformer.dtype)


def _check_fits(cn, pipe, name: str) -> None:
    if _is_flux(pipe):
        if (
            type(cn).__name__ != "FluxControlNetModel"
            or cn.config.joint_attention_dim != (pipe.transformer.config.joint_attention_dim)
            or cn.inner_dim != pipe.transformer.inner_dim
        ):
            raise PluginError(f"ControlNet {name} was not made for this FLUX model.")
        return
    if getattr(pipe, "unet", None) is None:
        raise PluginError(f"ControlNet {name}: ControlNet runs with SD 1.x/2.x/XL and FLUX.1 models.")
    if cn.config.cross_attention_dim != pipe.unet.config.cross_attention_dim or list(
        cn.config.block_out_channels
    ) != list(pipe.unet.config.block_out_channels):
        raise PluginError(f"ControlNet {name} was made for another model architecture.")


PLUGIN = ControlNetPlugin
