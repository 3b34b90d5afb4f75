"""Branching from a step of an edit run (img2img, inpaint, outpaint): the branch keeps the parent's
input image, mask and strength, and with the parent's settings it continues the parent's run."""

import numpy as np
import pytest
from PIL import Image

from studio.core.request import BranchRef, GenerationRequest, ImageRef


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("edit-branch-inputs")
    rng = np.random.default_rng(5)
    Image.fromarray((rng.random((64, 64, 3)) * 255).astype(np.uint8)).save(d / "in.png")
    m = np.zeros((64, 64), np.uint8)
    m[16:48, 8:40] = 255
    Image.fromarray(m).save(d / "mask.png")
    return d


def _edit(model, files, kind: str, scheduler: str) -> GenerationRequest:
    base = dict(
        model=str(model), prompt="a green star", steps=10, width=64, height=64, seed=2, scheduler=scheduler,
        init_image=ImageRef(path=str(files / "in.png")), strength=0.7,
    )  # fmt: skip
    if kind == "inpaint":
        base["mask"] = ImageRef(path=str(files / "mask.png"))
    elif kind == "outpaint":
        base["outpaint"] = (0, 0, 16, 0)
        base["width"] = 80
    return GenerationRequest.create(**base)


@pytest.mark.parametrize(
    ("kind", "scheduler", "tol"),
    [("img2img", "Euler", 1), ("img2img", "DDIM", 1), ("inpaint", "Euler", 1), ("outpaint", "Euler", 1)],
)
def test_an_edit_run_branches_and_continues_its_parent(engine, tiny_sd15, files, kind, scheduler, tol):
    parent = _edit(tiny_sd15, files, kind, scheduler)
    assert parent.kind == kind
    seen = []
    full = engine.generate(parent, on_step=seen.append)
    steps = len(seen)
    assert steps == 7  # strength 0.7 of 10 steps
    k = 3
    child = parent.replace(branch=BranchRef(parent_id="p", step=k))
    assert (child.init_image, child.mask, child.strength) == (parent.init_image, parent.mask, parent.strength)
    got = []
    res = engine.generate(child, on_step=got.append, branch_latent=seen[k - 1].latent)
    assert res.status == "done" and [p.step for p in got] == list(range(k + 1, steps + 1))
    diff = np.abs(res.images[0].astype(int) - full.images[0].astype(int))
    assert diff.max() <= tol, (kind, scheduler, int(diff.max()))
    other = engine.generate(child.replace(prompt="a red circle", seed=9), branch_latent=seen[k - 1].latent)
    assert not np.array_equal(other.images[0], full.images[0])


def test_an_edit_branch_keeps_what_the_mask_protects(engine, tiny_sd15, files):
    parent = _edit(tiny_sd15, files, "inpaint", "Euler")
    seen = []
    engine.generate(parent, on_step=seen.append)
    child = parent.replace(prompt="a red circle", branch=BranchRef(parent_id="p", step=2))
    res = engine.generate(child, branch_latent=seen[1].latent)
    original = np.asarray(Image.open(files / "in.png").convert("RGB"))
    far = np.ones((64, 64), bool)
    far[8:56, 0:48] = False  # well outside the mask and its blur
    assert np.array_equal(res.images[0][far], original[far])
