"""The upscaler networks the studio runs, written here (spandrel has them, but needs torchvision, which
breaks beside this project's torch): Real-ESRGAN's compact net and the RRDB net of ESRGAN and
Real-ESRGAN. Module names follow Real-ESRGAN's key layout, so its state dicts load as they are;
`esrgan_keys` renames the original ESRGAN layout onto it. `build(info)` makes the net that
`studio.core.upscalers.identify` described.

Inputs and outputs are RGB in 0…1, (N, 3, H, W); the output is `info.scale` times larger each way.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from studio.core.upscalers import UpscalerInfo


class SRVGGNetCompact(nn.Module):
    """A plain stack of 3×3 convs with activations; the last conv makes scale² sub-pixels per channel
    (pixel shuffle) and the nearest-upsampled input is added, so the net learns only the detail."""

    def __init__(self, in_ch: int, out_ch: int, num_feat: int, num_conv: int, scale: int, act: str = "prelu") -> None:
        super().__init__()
        self.scale = scale

        def activation() -> nn.Module:
            return nn.PReLU(num_parameters=num_feat) if act == "prelu" else nn.LeakyReLU(0.1, inplace=True)

        layers: list[nn.Module] = [nn.Conv2d(in_ch, num_feat, 3, 1, 1), activation()]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), activation()]
        layers.append(nn.Conv2d(num_feat, out_ch * scale * scale, 3, 1, 1))
        self.body = nn.ModuleList(layers)
        self.upsampler = nn.PixelShuffle(scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        return self.upsampler(out) + F.interpolate(x, scale_factor=self.scale, mode="nearest")


class _DenseBlock(nn.Module):
    """Five convs, each seeing the block input and every earlier conv's output; residual scaled by 0.2."""

    def __init__(self, feat: int, grow: int) -> None:
        super().__init__()
        for i in range(1, 5):
            setattr(self, f"conv{i}", nn.Conv2d(feat + (i - 1) * grow, grow, 3, 1, 1))
        self.conv5 = nn.Conv2d(feat + 4 * grow, feat, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seen = [x]
        for i in range(1, 5):
            seen.append(F.leaky_relu(getattr(self, f"conv{i}")(torch.cat(seen, 1)), 0.2))
        return self.conv5(torch.cat(seen, 1)) * 0.2 + x


class _RRDB(nn.Module):
    def __init__(self, feat: int, grow: int) -> None:
        super().__init__()
        self.rdb1, self.rdb2, self.rdb3 = (_DenseBlock(feat, grow) for _ in range(3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * 0.2 + x


class RRDBNet(nn.Module):
    """ESRGAN's generator: a trunk of residual-in-residual dense blocks, then ×2 nearest upsampling
    + conv per `num_up`. `unshuffle` > 1 folds the input into channels first (Real-ESRGAN ×2, ×1)."""

    def __init__(
        self, in_ch: int, out_ch: int, num_feat: int, num_block: int, num_grow: int, num_up: int, unshuffle: int = 1
    ) -> None:
        super().__init__()
        self.unshuffle, self.num_up = unshuffle, num_up
        self.conv_first = nn.Conv2d(in_ch * unshuffle * unshuffle, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*(_RRDB(num_feat, num_grow) for _ in range(num_block)))
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        for i in range(1, num_up + 1):
            setattr(self, f"conv_up{i}", nn.Conv2d(num_feat, num_feat, 3, 1, 1))
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, out_ch, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for i in range(1, self.num_up + 1):
            feat = F.leaky_relu(getattr(self, f"conv_up{i}")(F.interpolate(feat, scale_factor=2, mode="nearest")), 0.2)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), 0.2))


def esrgan_keys(state: dict[str, torch.Tensor], num_up: int) -> dict[str, torch.Tensor]:
    """The original ESRGAN layout (`model.0`, `model.1.sub.N.RDBK.convM.0`, upsampling convs at
    `model.3`, `model.6` …) renamed onto `RRDBNet`'s."""
    last = 4 + 3 * num_up
    fixed = {"model.0.": "conv_first.", f"model.{last - 2}.": "conv_hr.", f"model.{last}.": "conv_last."}
    fixed.update({f"model.{3 + 3 * i}.": f"conv_up{i + 1}." for i in range(num_up)})
    out: dict[str, torch.Tensor] = {}
    trunk = re.compile(r"model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)")
    closing = re.compile(r"model\.1\.sub\.(\d+)\.(weight|bias)")
    for key, value in state.items():
        if m := trunk.fullmatch(key):
            out[f"body.{m[1]}.rdb{m[2]}.conv{m[3]}.{m[4]}"] = value
        elif m := closing.fullmatch(key):
            out[f"conv_body.{m[2]}"] = value
        else:
            prefix = next((p for p in fixed if key.startswith(p)), None)
            out[fixed[prefix] + key[len(prefix) :] if prefix else key] = value
    return out


def build(info: UpscalerInfo) -> nn.Module:
    p = info.params
    if info.arch == "SRVGGNetCompact":
        return SRVGGNetCompact(info.in_channels, info.out_channels, p["num_feat"], p["num_conv"], info.scale, p["act"])
    if info.arch == "RRDBNet":
        return RRDBNet(
            info.in_channels,
            info.out_channels,
            p["num_feat"],
            p["num_block"],
            p["num_grow"],
            p["num_up"],
            p["unshuffle"],
        )
    raise ValueError(f"no network for {info.arch}")


def load_state(info: UpscalerInfo, state: dict[str, torch.Tensor]) -> nn.Module:
    """The net for `info` with `state` (the file's tensors) loaded; every tensor must fit."""
    if info.prefix:
        state = {k[len(info.prefix) :]: v for k, v in state.items()}
    if info.layout == "esrgan":
        state = esrgan_keys(state, info.params["num_up"])
    net = build(info)
    net.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    return net.eval()
