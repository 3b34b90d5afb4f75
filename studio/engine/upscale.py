"""Upscaling with an upscaler model (Real-ESRGAN, ESRGAN): load, tile, blend, report progress, cancel.

- `Upscalers` loads a `.safetensors` upscaler (architecture from `studio.core.upscalers.identify`,
  network from `studio.engine.upscale_nets`) on the engine's device and dtype, and keeps the last few.
- `upscale_image` runs the net over an image in overlapping tiles of `tile` input pixels; each tile's
  output is weighted by a ramp that falls towards the tile's inner edges across the overlap, so the
  tiles cross-fade and no seam shows (the unweighted tile edges are where a conv net sees zero
  padding instead of the neighbouring pixels). A scale other than the net's own runs the net again
  while it is short of it (as A1111 does), then resizes with Lanczos.
- `run_upscale` is what `Engine.generate` does for a request whose `upscale` is set: the init image
  through the upscaler, with a `StepPreview` per tile (a small picture with the finished tiles in
  it), and the run's cancel flag checked between tiles.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from studio.core import upscalers
from studio.core.errors import CorruptModel, InvalidRequest
from studio.core.request import GenerationRequest
from studio.core.results import GenerationResult, StepPreview
from studio.engine.devices import DeviceInfo
from studio.engine.upscale_nets import load_state

OVERLAP = 32  # input pixels two neighbouring tiles share
PREVIEW_SIDE = 512  # the longer side of the per-tile previews
MAX_PASSES = 3  # runs of the net for a scale above its own

TileFn = Callable[[int, int, np.ndarray | None], None] | None  # (tiles done, tiles in all, preview)


class UpscaleCancelled(Exception):
    pass


class Upscalers:
    """Loaded upscaler nets, keyed by file (path, size, mtime), device and dtype; the last `size` kept."""

    def __init__(self, size: int = 2) -> None:
        self.size = size
        self._nets: OrderedDict[tuple, tuple[upscalers.UpscalerInfo, torch.nn.Module]] = OrderedDict()

    def get(self, path: str | Path, device: DeviceInfo) -> tuple[upscalers.UpscalerInfo, torch.nn.Module]:
        p = Path(path).expanduser()
        info = upscalers.read(p)  # refuses pickles, missing files and what is not an upscaler
        st = p.stat()
        key = (str(p.resolve()), st.st_size, st.st_mtime_ns, device.device, device.dtype)
        if key in self._nets:
            self._nets.move_to_end(key)
            return self._nets[key]
        from safetensors.torch import load_file

        try:
            net = load_state(info, load_file(str(p)))
        except (RuntimeError, KeyError, ValueError) as exc:
            raise CorruptModel(
                f"{p.name} does not load as a {info.label} upscaler: {str(exc).splitlines()[0]}"
            ) from None
        net = net.to(device.torch_device, device.torch_dtype)
        self._nets[key] = (info, net)
        while len(self._nets) > self.size:
            self._nets.popitem(last=False)
        return info, net


def output_size(width: int, height: int, scale: float) -> tuple[int, int]:
    """The size an image of `width`×`height` upscales to by `scale`."""
    return max(1, round(width * scale)), max(1, round(height * scale))


def _starts(length: int, tile: int, step: int) -> list[int]:
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, step))
    return starts + [length - tile]


def _ramp(n: int, lead: int, trail: int) -> torch.Tensor:
    """1 inside, rising over `lead` pixels at the start and falling over `trail` at the end."""
    w = torch.ones(n)
    if lead:
        w[:lead] = (torch.arange(lead) + 0.5) / lead
    if trail:
        w[n - trail :] = torch.minimum(w[n - trail :], torch.flip((torch.arange(trail) + 0.5) / trail, [0]))
    return w


@torch.inference_mode()
def run_net(
    net: torch.nn.Module,
    info: upscalers.UpscalerInfo,
    image: np.ndarray,
    device: DeviceInfo,
    *,
    tile: int = 512,
    overlap: int = OVERLAP,
    on_tile: TileFn = None,
    cancel: threading.Event | None = None,
    tiles_before: int = 0,
    tiles_total: int | None = None,
) -> np.ndarray:
    """One pass of the net over an (H, W, 3) uint8 image: (H·s, W·s, 3) uint8, s = `info.scale`."""
    s, fold = info.scale, info.params.get("unshuffle", 1)
    h, w = image.shape[:2]
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255.0
    ph, pw = -h % fold, -w % fold  # a net that folds pixels into channels needs sizes it divides
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    H, W = x.shape[-2:]
    tile = 0 if tile <= 0 or (tile >= H and tile >= W) else max(tile - tile % fold, 2 * overlap + fold)
    overlap = min(overlap - overlap % fold, tile // 2) if tile else 0
    ys = _starts(H, tile or H, (tile - overlap) or H)
    xs = _starts(W, tile or W, (tile - overlap) or W)
    total = tiles_total if tiles_total is not None else len(ys) * len(xs)
    acc = torch.zeros(3, H * s, W * s)
    weight = torch.zeros(1, H * s, W * s)
    preview_k = min(1.0, PREVIEW_SIDE / max(H * s, W * s))
    preview = None
    if on_tile is not None:
        pv = (max(1, round(W * s * preview_k)), max(1, round(H * s * preview_k)))
        preview = np.asarray(Image.fromarray(image).resize(pv, Image.Resampling.BILINEAR)).copy()
    th, tw = (tile or H), (tile or W)
    done = 0
    for y0 in ys:
        for x0 in xs:
            if cancel is not None and cancel.is_set():
                raise UpscaleCancelled
            crop = x[:, :, y0 : y0 + th, x0 : x0 + tw].to(device.torch_device, device.torch_dtype)
            out = net(crop).float().clamp(0, 1).cpu()[0]
            oh, ow = out.shape[-2:]
            wy = _ramp(oh, overlap * s if y0 > 0 else 0, overlap * s if y0 + th < H else 0)
            wx = _ramp(ow, overlap * s if x0 > 0 else 0, overlap * s if x0 + tw < W else 0)
            wt = (wy[:, None] * wx[None, :])[None]
            acc[:, y0 * s : y0 * s + oh, x0 * s : x0 * s + ow] += out * wt
            weight[:, y0 * s : y0 * s + oh, x0 * s : x0 * s + ow] += wt
            done += 1
            if on_tile is not None and preview is not None:
                _paste_preview(preview, out, y0 * s, x0 * s, preview_k)
                on_tile(tiles_before + done, total, preview)
    result = (acc / weight.clamp_min(1e-8))[:, : h * s, : w * s]
    return (result * 255.0).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy().copy()


def _paste_preview(preview: np.ndarray, out: torch.Tensor, y: int, x: int, k: float) -> None:
    ph, pw = preview.shape[:2]
    y0, x0 = min(ph - 1, round(y * k)), min(pw - 1, round(x * k))
    y1, x1 = min(ph, max(y0 + 1, round((y + out.shape[1]) * k))), min(pw, max(x0 + 1, round((x + out.shape[2]) * k)))
    small = F.interpolate(out[None], size=(y1 - y0, x1 - x0), mode="area")[0]
    preview[y0:y1, x0:x1] = (small * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def passes_for(scale: float, native: int) -> int:
    """How many runs of a ×`native` net reach ×`scale` (then resized down to it)."""
    if scale <= native or native <= 1:
        return 1
    return min(MAX_PASSES, math.ceil(math.log(scale) / math.log(native) - 1e-9))


def upscale_image(
    net: torch.nn.Module,
    info: upscalers.UpscalerInfo,
    image: np.ndarray,
    device: DeviceInfo,
    *,
    scale: float | None = None,
    tile: int = 512,
    on_tile: TileFn = None,
    cancel: threading.Event | None = None,
) -> np.ndarray:
    """`image` (H, W, 3) uint8 upscaled by `scale` (default: the net's own factor)."""
    scale = float(scale or info.scale)
    target = output_size(image.shape[1], image.shape[0], scale)
    n = passes_for(scale, info.scale)
    counts, size = [], (image.shape[0], image.shape[1])
    for _ in range(n):  # tiles per pass, so the progress counts all of them
        counts.append(_tile_count(size, tile, info.params.get("unshuffle", 1)))
        size = (size[0] * info.scale, size[1] * info.scale)
    out, before = image, 0
    for count in counts:
        out = run_net(
            net,
            info,
            out,
            device,
            tile=tile,
            on_tile=on_tile,
            cancel=cancel,
            tiles_before=before,
            tiles_total=sum(counts),
        )
        before += count
    if (out.shape[1], out.shape[0]) != target:
        out = np.asarray(Image.fromarray(out).resize(target, Image.Resampling.LANCZOS)).copy()
    return out


def _tile_count(size: tuple[int, int], tile: int, fold: int) -> int:
    h, w = (v + (-v % fold) for v in size)
    if tile <= 0 or (h <= tile and w <= tile):
        return 1
    tile = max(tile - tile % fold, 2 * OVERLAP + fold)
    overlap = min(OVERLAP - OVERLAP % fold, tile // 2)
    return len(_starts(h, tile, tile - overlap)) * len(_starts(w, tile, tile - overlap))


def run_upscale(
    upscaler_cache: Upscalers,
    device: DeviceInfo,
    request: GenerationRequest,
    on_step: Callable[[StepPreview], None] | None = None,
    cancel: threading.Event | None = None,
) -> GenerationResult:
    """A request of kind "upscale": its init image through its upscaler."""
    from studio.engine.inpaint import load_rgb

    assert request.upscale is not None and request.init_image is not None
    t0 = time.perf_counter()
    up = request.upscale
    info, net = upscaler_cache.get(up.model, device)
    image = load_rgb(request.init_image.path, "image to upscale")
    target = output_size(image.shape[1], image.shape[0], up.scale)
    if target[0] > 16384 or target[1] > 16384:
        raise InvalidRequest(f"×{up.scale:g} would make a {target[0]}×{target[1]} image; the most is 16384 a side.")
    t_loaded = time.perf_counter()
    state: dict[str, Any] = {"done": 0, "total": 0}

    def on_tile(done: int, total: int, preview: np.ndarray | None) -> None:
        state.update(done=done, total=total)
        if on_step is not None:
            on_step(StepPreview(done, total, 0.0, preview, None, "upscale", time.perf_counter() - t_loaded))

    status, images = "done", []
    try:
        images = [upscale_image(net, info, image, device, scale=up.scale, tile=up.tile, on_tile=on_tile, cancel=cancel)]
    except UpscaleCancelled:
        status = "cancelled"
    t_end = time.perf_counter()
    return GenerationResult(
        request=request,
        images=images,
        seeds=[request.seed],
        status=status,
        steps_done=state["done"],
        total_steps=state["total"],
        device=device.device,
        dtype=device.dtype,
        timings={"load_s": t_loaded - t0, "sample_s": t_end - t_loaded, "total_s": t_end - t0},
        kind="upscale",
        model_path=str(Path(up.model)),
        upscaler=info.label,
    )
