"""IP-Adapter plugin: image prompts ("like this picture") for SD 1.5 and SDXL, built on the public plugin API.

Recipe: `GenerationRequest.plugins["ip_adapter"] = {"units": [unit, …]}`, each unit

    {"model": IP-Adapter .safetensors, "model_sha256": …, "encoder": CLIP vision folder or .safetensors,
     "images": [{"path": …, "sha256": …, "weight": 1.0}, …], "weight": 1.0, "start": 0.0, "end": 1.0}

`weight` is the adapter's scale (0: no effect); an image's `weight` scales its CLIP embedding (as
ComfyUI's image weights do), several images give several image tokens; `start`/`end` are the share of
the steps the unit acts in, as a ControlNet unit's. Every image is recorded by its SHA-256.

How it runs (all on the shared, cached UNet, undone in `finish`): the adapter's projection and
key/value layers go into the UNet with diffusers' IP-Adapter loader (from the state dict read here:
never the hub, no `image_encoder` registered on the pipeline); the reference images are encoded by the
CLIP vision model the plugin loads itself; a forward pre-hook on the UNet hands it the image embeddings
(negative + positive, or only positive once the engine has turned guidance off) and sets each unit's
scale for the step. `finish` removes the hook and puts the UNet's own attention processors and
projection back, exactly as they were.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from studio.plugin_api import PipelineContext, PluginError, PluginManifest

from .files import AdapterInfo, check_fits, encoder_widths, load_adapter, load_encoder, read_adapter

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class Unit:
    model: str
    encoder: str
    images: tuple[tuple[str, str, float], ...]  # (path, sha256, weight)
    weight: float = 1.0
    start: float = 0.0
    end: float = 1.0


def units_of(request) -> list[Unit]:
    """The recipe's units, checked (PluginError says what is wrong with which unit)."""
    raw = (request.plugins or {}).get("ip_adapter", {}) or {}
    out = []
    for n, u in enumerate(raw.get("units", []) or []):
        try:
            images = tuple((str(i["path"]), str(i.get("sha256", "")), float(i.get("weight", 1.0))) for i in u["images"])
            unit = Unit(str(u["model"]), str(u["encoder"]), images, float(u.get("weight", 1.0)),
                        float(u.get("start", 0.0)), float(u.get("end", 1.0)))  # fmt: skip
        except (KeyError, TypeError, ValueError) as exc:
            raise PluginError(f"IP-Adapter unit {n}: malformed ({exc.__class__.__name__}: {exc})") from None
        if not unit.images:
            raise PluginError(f"IP-Adapter unit {n} has no reference image.")
        if not 0.0 <= unit.weight <= 2.0 or any(not 0.0 <= w <= 2.0 for _, _, w in unit.images):
            raise PluginError(f"IP-Adapter unit {n}: weights go from 0 to 2.")
        if not 0.0 <= unit.start < unit.end <= 1.0:
            raise PluginError(f"IP-Adapter unit {n}: start ({unit.start}) must be before end ({unit.end}), within 0…1.")
        out.append(unit)
    return out


def clip_pixels(image, size: int):
    """A CLIP vision input (1, 3, size, size) from an (H, W, 3) uint8 image: the shorter side scaled to
    `size` (bicubic), centre-cropped, normalised with CLIP's mean and std. Written here because
    transformers' CLIPImageProcessor wants torchvision, which this project cannot install."""
    import numpy as np
    import torch
    from PIL import Image

    im = Image.fromarray(image)
    k = size / min(im.size)
    im = im.resize((max(size, round(im.width * k)), max(size, round(im.height * k))), Image.Resampling.BICUBIC)
    left, top = (im.width - size) // 2, (im.height - size) // 2
    pixels = np.asarray(im.crop((left, top, left + size, top + size)), np.float32) / np.float32(255.0)
    normalised = (pixels - np.array(CLIP_MEAN, np.float32)) / np.array(CLIP_STD, np.float32)
    return torch.from_numpy(normalised.astype(np.float32)).permute(2, 0, 1)[None]


class IPAdapterPlugin:
    manifest = PluginManifest(
        name="ip_adapter",
        version="1.0",
        title="IP-Adapter",
        contributes=("prepare", "finish", "parameters", "panel"),
        description="Image prompts: reference images steer the picture (SD 1.5 and SDXL IP-Adapters).",
        order=30,
    )

    def __init__(self) -> None:
        self._adapters: dict[tuple, tuple[AdapterInfo, dict]] = {}
        self._encoders: dict[tuple, Any] = {}

    def panel(self, host: Any = None) -> Any:
        """The window's IP-Adapter panel (Qt is imported here, only by the window)."""
        from .panel import IPAdapterPanel

        return IPAdapterPanel(self, host)

    # -- the recipe's words -----------------------------------------------------------------------------
    def parameters(self, request) -> dict[str, str]:
        return {
            f"IP-Adapter {i}": f"Model: {Path(u.model).stem}, Encoder: {Path(u.encoder).stem}, Weight: {u.weight:g}, "
            f"Images: {len(u.images)}, Guidance Start: {u.start:g}, Guidance End: {u.end:g}"
            for i, u in enumerate(units_of(request))
        }

    # -- loading (cached by file) ---------------------------------------------------------------------
    def adapter(self, path: str) -> tuple[AdapterInfo, dict]:
        info = read_adapter(path)
        key = (str(info.path.resolve()), info.path.stat().st_mtime_ns)
        if key not in self._adapters:
            self._adapters = {key: (info, load_adapter(info))}  # the last one: they are tens of MB
        return self._adapters[key]

    def encoder(self, path: str, device, dtype):
        p = Path(path).expanduser()
        stamp = p.stat().st_mtime_ns if p.exists() else 0
        key = (str(p.resolve()), stamp, str(device), str(dtype))
        if key not in self._encoders:
            self._encoders = {key: load_encoder(p).to(device, dtype).eval()}
        return self._encoders[key]

    # -- the run ------------------------------------------------------------------------------------------
    def prepare(self, ctx: PipelineContext) -> None:
        units = units_of(ctx.request)
        if not units:
            return
        import torch

        unet = getattr(ctx.pipe, "unet", None)
        if unet is None:
            raise PluginError("IP-Adapters work with SD 1.x and SDXL models; this model has no UNet to add them to.")
        loaded = [self.adapter(u.model) for u in units]
        for info, _ in loaded:
            check_fits(info, unet)
        embeds = [self._embeds(u, info, unet) for u, (info, _) in zip(units, loaded)]
        key = tuple((str(info.path), info.path.stat().st_mtime_ns) for info, _ in loaded)
        if getattr(unet, "_studio_ip_adapter", None) != key:
            _restore(unet)
            hid_type = unet.config.encoder_hid_dim_type
            unet._studio_ip_saved = (dict(unet.attn_processors), unet.encoder_hid_proj, hid_type)
            # diffusers' IP-Adapter loader for the UNet (what pipe.load_ip_adapter calls once it has the
            # state dict), so no image encoder or feature extractor is registered on the shared pipeline
            unet._load_ip_adapter_weights([sd for _, sd in loaded], low_cpu_mem_usage=False)
            unet._studio_ip_adapter = key
        processors = [p for p in unet.attn_processors.values() if isinstance(getattr(p, "scale", None), list)]
        offset = ctx.request.branch.step if getattr(ctx.request, "branch", None) else 0
        state: dict[str, Any] = {"calls": 0, "first_len": None}

        def hook(module, args, kwargs):
            sample = args[0] if args else kwargs["sample"]
            timesteps = ctx.pipe.scheduler.timesteps
            if state["first_len"] is None:
                state["first_len"] = len(timesteps)
            total = offset + state["first_len"]
            i = offset + state["calls"]
            state["calls"] += 1
            scales = [u.weight if not (i / total < u.start or (i + 1) / total > u.end) else 0.0 for u in units]
            for proc in processors:
                proc.scale = list(scales)
            n = sample.shape[0]
            batch = []
            for neg, pos in embeds:
                if n % 2 == 0 and n // 2 == ctx.request.batch_size:  # guided: negative then positive halves
                    e = torch.cat([_repeat(neg, n // 2), _repeat(pos, n // 2)])
                else:  # guidance off for this step (or never on): the positive half only
                    e = _repeat(pos, n)
                batch.append(e.to(sample.device, unet.dtype))
            added = dict(kwargs.get("added_cond_kwargs") or {})
            added["image_embeds"] = batch
            return args, {**kwargs, "added_cond_kwargs": added}

        old = getattr(unet, "_studio_ip_hook", None)
        if old is not None:
            old.remove()
        unet._studio_ip_hook = unet.register_forward_pre_hook(hook, with_kwargs=True)
        ctx.metadata["ip_adapters"] = [
            {
                "model": Path(u.model).name,
                "encoder": Path(u.encoder).name,
                "weight": u.weight,
                "start": u.start,
                "end": u.end,
                "images": [{"sha256": sha, "weight": w} for _, sha, w in u.images],
            }
            for u in units
        ]

    def _embeds(self, unit: Unit, info: AdapterInfo, unet):
        """(negative, positive) image embeddings of a unit's images, each (1, n_images, …)."""
        import torch

        from studio.engine.inpaint import load_rgb

        encoder = self.encoder(unit.encoder, unet.device, unet.dtype)
        width = encoder_widths(encoder)[info.kind]
        if width != info.image_dim:
            raise PluginError(
                f"IP-Adapter {info.path.name} takes {info.image_dim}-wide image features; the encoder "
                f"{Path(unit.encoder).name} gives {width} (SD 1.5 and *_vit-h adapters want ViT-H/14, "
                "ip-adapter_sdxl ViT-bigG/14)."
            )
        size = int(encoder.config.image_size)
        pos = []
        with torch.inference_mode():
            for path, _sha, weight in unit.images:
                try:
                    image = load_rgb(path, "reference image")
                except Exception as exc:  # noqa: BLE001 — a missing or unreadable image: say which
                    raise PluginError(str(exc)) from None
                pixels = clip_pixels(image, size).to(unet.device, unet.dtype)
                pos.append(_encode(encoder, pixels, info.kind) * weight)
            positive = torch.stack(pos)[None]  # (1, n, dim) or (1, n, seq, hidden)
            if info.kind == "plain":
                negative = torch.zeros_like(positive)  # as diffusers: a zero embedding is "no image"
            else:
                blank = torch.zeros(1, 3, size, size, device=unet.device, dtype=unet.dtype)
                negative = torch.stack([_encode(encoder, blank, info.kind)] * len(pos))[None]
        return negative, positive

    def finish(self, ctx: PipelineContext) -> None:
        unet = getattr(ctx.pipe, "unet", None)  # FLUX / SD3 pipelines have a transformer instead
        if unet is not None:
            _restore(unet)


def _encode(encoder, pixels, kind: str):
    if kind == "plain":
        return encoder(pixels).image_embeds[0]
    return encoder(pixels, output_hidden_states=True).hidden_states[-2][0]


def _repeat(t, n: int):
    return t.expand(n, *t.shape[1:]) if t.shape[0] == 1 else t


def _restore(unet) -> None:
    """Put the UNet back as it was before an IP-Adapter was loaded into it (no-op when none is)."""
    hook = getattr(unet, "_studio_ip_hook", None)
    if hook is not None:
        hook.remove()
        unet._studio_ip_hook = None
    saved = getattr(unet, "_studio_ip_saved", None)
    if saved is None:
        return
    processors, projection, hid_type = saved
    unet.encoder_hid_proj = projection  # first: a plus adapter's resampler has attention layers of its own
    unet.config.encoder_hid_dim_type = hid_type
    unet.set_attn_processor(processors)
    unet._studio_ip_saved = None
    unet._studio_ip_adapter = None


PLUGIN = IPAdapterPlugin
