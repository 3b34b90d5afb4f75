"""Recreate: the recipe read back from a gallery PNG reproduces the same pixels."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from studio.core.gallery import record_result
from studio.core.metadata import read_metadata, verify
from studio.core.request import GenerationRequest


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))


def pixels(path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


def test_recreate_reproduces_the_same_pixels(engine, tiny_sd15, tmp_path):
    req = GenerationRequest.create(
        model=str(tiny_sd15), prompt="a red square, on: blue", negative_prompt="noise", steps=4,
        width=64, height=64, seed=11, scheduler="DPM++ 2M Karras", batch_size=2,
    )  # fmt: skip
    result = engine.generate(req)
    items = record_result(result, library=tmp_path / "lib")
    assert [i.batch_index for i in items] == [0, 1]
    for item in items:
        assert np.array_equal(pixels(item.path), result.images[item.batch_index])
    # Recreate the second image of the batch from nothing but its file.
    meta = read_metadata(items[1].path)
    assert verify(items[1].path).state == "valid"
    again = engine.generate(meta.request)  # what "Recreate" loads into the Prompt panel
    assert np.array_equal(again.images[meta.batch_index], pixels(items[1].path))
    # The comparison can fail: the batch's two images differ.
    assert not np.array_equal(again.images[0], pixels(items[1].path))
