"""Upscaler models (Real-ESRGAN, ESRGAN and their relatives): which architecture a `.safetensors` file
holds and with which sizes, from its header alone (tensor names and shapes — never the weights).

Plain Python, shared by the model catalogue (`models scan`) and the engine (`studio.engine.upscale`),
which builds the network from the `UpscalerInfo` found here.

Architectures the studio runs:
- `SRVGGNetCompact` — Real-ESRGAN's compact net (realesr-general-x4v3, realesr-animevideov3):
  `body.0` a 3×3 conv, then (PReLU, conv) pairs, the last conv giving out·scale² channels for a pixel
  shuffle; the nearest-upsampled input is added.
- `RRDBNet` — ESRGAN / Real-ESRGAN (RealESRGAN_x4plus, x2plus, anime_6B, 4x-UltraSharp …), in
  Real-ESRGAN's key layout (`conv_first`, `body.N.rdbK.convM`, `conv_up1` …) or the original ESRGAN
  one (`model.0`, `model.1.sub.N.RDBK.convM.0` …). Real-ESRGAN's ×2 and ×1 nets fold the input into
  channels (pixel unshuffle) first, which shows in `conv_first`'s input width.

Recognised but not run yet (the message names the architecture): SwinIR, Swin2SR, HAT, DAT, OmniSR,
SPAN — transformer upscalers that need their own implementation (spandrel has them, but needs
torchvision, which cannot be installed beside this project's torch: see docs/architecture.md).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio.core.checkpoint import TensorInfo, read_header
from studio.core.errors import ModelNotFound, PickleRefused, UnsupportedModel

# Prefixes under which training frameworks save the weights (BasicSR's `params_ema`, DataParallel's
# `module.`); stripped before the layout is read.
WRAPPER_PREFIXES = ("params_ema.", "params.", "module.", "generator.")

# Architectures recognised by their key names that the studio does not run yet.
_NOT_YET = (
    ("HAT", ("conv_block.cab.", "overlap_attn.")),
    ("Swin2SR", ("attn.cpb_mlp.", "attn.logit_scale")),
    ("DAT", ("before_RG.", "attn.attns.")),
    ("SwinIR", ("residual_group.blocks.", "patch_embed.")),
    ("OmniSR", ("residual_layer.", "window_attention")),
    ("SPAN", ("block_1.c1_r.", "conv_cat.")),
)


@dataclass(frozen=True)
class UpscalerInfo:
    arch: str  # "SRVGGNetCompact" | "RRDBNet"
    scale: int  # output pixels per input pixel, each way
    in_channels: int = 3
    out_channels: int = 3
    params: dict[str, Any] = field(default_factory=dict)  # sizes the network is built with
    layout: str = ""  # "real-esrgan" | "esrgan" (RRDBNet's key layouts)
    prefix: str = ""  # the wrapper prefix the file's keys carry ("" when none)

    @property
    def label(self) -> str:
        """How the catalogue and the messages name it: "Real-ESRGAN compact ×4"."""
        names = {"SRVGGNetCompact": "Real-ESRGAN compact", "RRDBNet": "ESRGAN (RRDB)"}
        if self.arch == "RRDBNet" and self.layout == "real-esrgan":
            names["RRDBNet"] = "Real-ESRGAN (RRDB)"
        return f"{names.get(self.arch, self.arch)} ×{self.scale}"


class NotAnUpscaler(UnsupportedModel):
    code = "not-an-upscaler"


def strip_prefix(keys: list[str]) -> str:
    """The wrapper prefix every key starts with, or ""."""
    for prefix in WRAPPER_PREFIXES:
        if keys and all(k.startswith(prefix) for k in keys):
            return prefix
    return ""


def identify(tensors: dict[str, TensorInfo], name: str = "the file") -> UpscalerInfo:
    """The architecture and sizes of an upscaler from its tensor names and shapes.

    Raises `NotAnUpscaler` for anything else, and `UnsupportedModel` naming the architecture for an
    upscaler the studio recognises but does not run yet.
    """
    prefix = strip_prefix(list(tensors))
    t = {k[len(prefix) :]: v for k, v in tensors.items()}
    if "conv_first.weight" in t and "body.0.rdb1.conv1.weight" in t:
        return _rrdb_real_esrgan(t, prefix, name)
    if "model.0.weight" in t and "model.1.sub.0.RDB1.conv1.0.weight" in t:
        return _rrdb_esrgan(t, prefix, name)
    if "body.0.weight" in t and len(t["body.0.weight"].shape) == 4 and "conv_first.weight" not in t:
        return _compact(t, prefix, name)
    for arch, markers in _NOT_YET:
        if any(marker in k for k in t for marker in markers):
            raise UnsupportedModel(
                f"{name} is a {arch} upscaler; this architecture is not supported yet.",
                "Use a Real-ESRGAN or ESRGAN model (RRDBNet or the compact SRVGGNet).",
            )
    raise NotAnUpscaler(
        f"{name} is not an upscaler model this studio knows.",
        "Upscalers: Real-ESRGAN (RRDBNet or compact) and ESRGAN, as .safetensors.",
    )


def read(path: str | Path) -> UpscalerInfo:
    """`identify` from a file's header (checks the file is complete; refuses pickles)."""
    p = Path(path)
    if p.suffix.lower() in (".pth", ".pt", ".ckpt", ".bin"):
        raise PickleRefused(
            f"{p.name} is a pickled file, which can run code when loaded; it is refused.",
            "Use the .safetensors version of the upscaler (or convert it once with a trusted tool).",
        )
    if not p.is_file():
        raise ModelNotFound(f"Upscaler model not found: {p}")
    tensors, _meta = read_header(p)
    return identify(tensors, p.name)


def _count(t: dict[str, TensorInfo], pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in t if (m := rx.fullmatch(k))})


def _rrdb_real_esrgan(t: dict[str, TensorInfo], prefix: str, name: str) -> UpscalerInfo:
    feat = t["conv_first.weight"].shape[0]
    in_ch = t["conv_first.weight"].shape[1]
    out_ch = t["conv_last.weight"].shape[0]
    ups = sum(f"conv_up{i}.weight" in t for i in (1, 2, 3))
    fold = in_ch // out_ch if in_ch > out_ch else 1  # pixel unshuffle: 4 channels per pixel for ×2, 16 for ×1
    unshuffle = int(math.isqrt(fold))
    if unshuffle * unshuffle != fold or (2**ups) % unshuffle:
        raise UnsupportedModel(f"{name}: an RRDBNet with {in_ch} input and {out_ch} output channels is not supported.")
    return UpscalerInfo(
        "RRDBNet",
        2**ups // unshuffle,
        in_ch // fold,
        out_ch,
        params=dict(
            num_feat=feat,
            num_block=_count(t, r"body\.(\d+)\.rdb1\.conv1\.weight"),
            num_grow=t["body.0.rdb1.conv1.weight"].shape[0],
            num_up=ups,
            unshuffle=unshuffle,
        ),
        layout="real-esrgan",
        prefix=prefix,
    )


def _rrdb_esrgan(t: dict[str, TensorInfo], prefix: str, name: str) -> UpscalerInfo:
    # model.0 conv, model.1 the RRDB trunk (sub.0 … sub.N-1, sub.N its closing conv), then per ×2 an
    # (upsample, conv, act) triple, then the HR conv + act and the last conv.
    convs = sorted(int(m.group(1)) for k in t if (m := re.fullmatch(r"model\.(\d+)\.weight", k)))
    last = convs[-1]
    ups = (last - 4) // 3
    if ups < 0 or [c for c in convs if c >= 2] != [3 + 3 * i for i in range(ups)] + [last - 2, last]:
        raise UnsupportedModel(f"{name}: an ESRGAN whose upsampler this studio does not know (pixel shuffle?).")
    blocks = _count(t, r"model\.1\.sub\.(\d+)\.RDB1\.conv1\.0\.weight")
    return UpscalerInfo(
        "RRDBNet",
        2**ups,
        t["model.0.weight"].shape[1],
        t[f"model.{last}.weight"].shape[0],
        params=dict(
            num_feat=t["model.0.weight"].shape[0],
            num_block=blocks,
            num_grow=t["model.1.sub.0.RDB1.conv1.0.weight"].shape[0],
            num_up=ups,
            unshuffle=1,
        ),
        layout="esrgan",
        prefix=prefix,
    )


def _compact(t: dict[str, TensorInfo], prefix: str, name: str) -> UpscalerInfo:
    convs = sorted(
        int(m.group(1)) for k in t if (m := re.fullmatch(r"body\.(\d+)\.weight", k)) and len(t[k].shape) == 4
    )
    last = convs[-1]
    if convs != list(range(0, last + 1, 2)):
        raise NotAnUpscaler(f"{name} is not an upscaler model this studio knows.")
    feat, in_ch = t["body.0.weight"].shape[:2]
    out_total = t[f"body.{last}.weight"].shape[0]
    out_ch = in_ch
    scale = math.isqrt(out_total // out_ch)
    if scale * scale * out_ch != out_total:
        raise UnsupportedModel(f"{name}: a compact net with {out_total} output channels is not one this studio knows")
    act = "prelu" if "body.1.weight" in t else "leakyrelu"
    return UpscalerInfo(
        "SRVGGNetCompact",
        scale,
        in_ch,
        out_ch,
        params=dict(num_feat=feat, num_conv=len(convs) - 2, act=act),
        prefix=prefix,
    )


def find_upscaler(name: str | Path) -> Path:
    """An upscaler model by path, or by name among the upscalers the catalogue finds in the models
    library and the extra folders (A1111's infotext names them: "Hires upscaler: 4x-UltraSharp")."""
    from studio.core.errors import InvalidRequest

    p = Path(name).expanduser()
    if p.is_file():
        return p
    from studio.core.library import scan_all

    entries, _ = scan_all()
    for e in entries:
        if e.kind == "upscaler" and Path(e.path).stem.lower() == p.stem.lower():
            return Path(e.path)
    raise InvalidRequest(
        f"Upscaler “{name}” was not found.",
        "Give an upscaler file (Real-ESRGAN / ESRGAN .safetensors), or put it in the models library.",
    )


def upscale_request(
    source: str | Path,
    model: str | Path,
    scale: float | None = None,
    tile: int = 512,
    base: Any = None,
) -> Any:
    """The recipe of upscaling the image at `source` with the upscaler `model` by `scale` (default: the
    model's own factor), in tiles of `tile` px. `base`: the source's own recipe when it has one (read
    from the file when not given); its prompt, model and seed stay with the upscaled image, what only
    shaped the source (mask, outpaint, ControlNets, branch, batch) does not."""
    from PIL import Image

    from studio.core.errors import InvalidRequest
    from studio.core.hashing import file_sha256, sha256_file
    from studio.core.request import GenerationRequest, ImageRef, UpscaleRef

    src, model = Path(source).expanduser(), Path(model).expanduser()
    if not src.is_file():
        raise InvalidRequest(f"The image to upscale was not found: {src}")
    info = read(model)
    scale = float(scale) if scale else float(info.scale)
    if not 0 < scale <= 16:
        raise InvalidRequest(f"The upscale factor must be above 0 and at most 16, not {scale:g}.")
    try:
        with Image.open(src) as im:
            width, height = im.size
    except OSError:
        raise InvalidRequest(f"{src.name} is not an image this studio can read.") from None
    seed = 0
    if base is None:
        from studio.core.errors import MetadataError
        from studio.core.metadata import read_metadata

        try:
            meta = read_metadata(src)
            base = meta.request
            recorded = meta.normalised.get("seed")
            seed = recorded if isinstance(recorded, int) else 0
        except MetadataError:
            base = None
    fields: dict[str, Any] = {}
    if base is not None:
        fields = base.model_dump()
        seed = seed or base.seed
        for name in ("mask", "outpaint", "branch", "hires"):
            fields.pop(name, None)
        fields.update(batch_size=1, controlnets=(), plugins={}, strength=1.0)
    else:
        fields["model"] = str(model.resolve())
    out_w, out_h = max(1, round(width * scale)), max(1, round(height * scale))
    fields.update(
        seed=seed,
        width=out_w,
        height=out_h,
        init_image=ImageRef(path=str(src.resolve()), sha256=sha256_file(src)),
        upscale=UpscaleRef(model=str(model.resolve()), sha256=file_sha256(model), scale=scale, tile=tile),
    )
    return GenerationRequest.create(**fields)
