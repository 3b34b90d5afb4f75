"""X/Y/Z plots as plain functions on the recipe: axes parsed (ranges, quoting, aliases), cells expanded
in A1111's order with each field set, bad values refused with one message naming the axis; the grid
drawn with its labels and written with its own provenance."""

import numpy as np
import pytest

from studio.core import grid, xyz
from studio.core.errors import InvalidRequest
from studio.core.request import ControlNetRef, GenerationRequest, ImageRef, LoraRef


def base(**kw):
    return GenerationRequest.create(prompt="a red circle on blue", seed=7, width=64, height=64, **kw)


@pytest.mark.parametrize(
    "text,key,values",
    [
        ("cfg=1,4,7", "cfg", (1.0, 4.0, 7.0)),
        ("CFG Scale=1, 4.5", "cfg", (1.0, 4.5)),
        ("seed=1-3", "seed", (1, 2, 3)),
        ("steps=10-30 (+10)", "steps", (10, 20, 30)),
        ("cfg_end=0-1 [5]", "cfg_end", (0.0, 0.25, 0.5, 0.75, 1.0)),
        ("sampler=Euler a,DPM++ 2M Karras", "scheduler", ("Euler a", "DPM++ 2M Karras")),
        ('prompt_sr=red,"green, shiny",blue', "prompt_sr", ("red", "green, shiny", "blue")),
        ("size=64x64,96x64", "size", ("64x64", "96x64")),
        ("lora:demo-striped=0,0.5,1", "lora", (0.0, 0.5, 1.0)),
    ],
)
def test_parse_axis(text, key, values):
    axis = xyz.parse_axis(text)
    assert (axis.key, axis.values) == (key, values)
    assert xyz.parse_axis(axis.spec).values == values  # spec round-trips


@pytest.mark.parametrize(
    "text,words",
    [
        ("cfg", "looks like cfg=1,4,7"),
        ("colour=1,2", "unknown plot axis 'colour'"),
        ("steps=1.5", "steps axis: '1.5' is not a whole number"),
        ("cfg=a", "cfg axis: 'a' is not a number"),
        ("prompt_sr=red", "Prompt S/R needs"),
        ("seed=", "has no values"),
        ("seed=5-1 (+1)", "the step must go"),
    ],
)
def test_parse_axis_refuses(text, words):
    with pytest.raises(InvalidRequest, match=words.replace("(", r"\(").replace(")", r"\)")):
        xyz.parse_axis(text)


def test_expand_sets_each_field_x_fastest():
    cells = xyz.expand(base(), [xyz.parse_axis("cfg=1,4,7"), xyz.parse_axis("seed=1,2")])
    assert [(c.x, c.y, c.z) for c in cells] == [(x, y, 0) for y in range(2) for x in range(3)]
    assert [(c.request.guidance_scale, c.request.seed) for c in cells] == [
        (1, 1), (4, 1), (7, 1), (1, 2), (4, 2), (7, 2)
    ]  # fmt: skip
    assert all(c.request.prompt == "a red circle on blue" and c.request.width == 64 for c in cells)
    only = xyz.expand(base(), [xyz.parse_axis("steps=2,3")])
    assert [c.request.seed for c in only] == [7, 7]  # the seed stays unless it is an axis


def test_expand_prompt_sr_size_scheduler_and_guidance_end():
    req = base(negative_prompt="no red")
    axes = [
        xyz.parse_axis("prompt_sr=red,green"),
        xyz.parse_axis("size=64x64,96x32"),
        xyz.parse_axis("sampler=DDIM,UniPC"),
    ]
    cells = xyz.expand(req, axes)
    assert len(cells) == 8 and cells[-1].index == (1, 1, 1)
    assert (cells[1].request.prompt, cells[1].request.negative_prompt) == ("a green circle on blue", "no green")
    assert (cells[2].request.width, cells[2].request.height) == (96, 32)
    assert cells[4].request.scheduler == "UniPC" and cells[0].request.prompt == req.prompt
    ends = xyz.expand(req, [xyz.parse_axis("cfg_end=0.3,1")])
    assert [c.request.guidance_end for c in ends] == [0.3, 1.0]


def test_expand_hires_fields():
    cells = xyz.expand(base(), [xyz.parse_axis("hires_scale=1.5,2"), xyz.parse_axis("hires_strength=0.3,0.6")])
    assert [(c.request.hires.scale, c.request.hires.strength) for c in cells] == [
        (1.5, 0.3),
        (2, 0.3),
        (1.5, 0.6),
        (2, 0.6),
    ]
    on = base().replace(hires={"scale": 2, "steps": 9, "upscaler": "lanczos"})
    steps = xyz.expand(on, [xyz.parse_axis("hires_steps=4,8")])
    assert [(c.request.hires.steps, c.request.hires.upscaler) for c in steps] == [(4, "lanczos"), (8, "lanczos")]


def test_expand_lora_and_controlnet_weights():
    cn = ControlNetRef(model="/m/cn", image=ImageRef(path="/i/c.png"), weight=1.0)
    req = base(loras=(LoraRef(name="style", weight=0.8),), controlnets=(cn, cn))
    cells = xyz.expand(req, [xyz.parse_axis("lora:style=0,1"), xyz.parse_axis("controlnet:1=0.25,0.5")])
    assert [c.request.loras[0].weight for c in cells] == [0, 1, 0, 1]
    assert [c.request.controlnets[1].weight for c in cells] == [0.25, 0.25, 0.5, 0.5]
    assert all(c.request.controlnets[0].weight == 1.0 for c in cells)
    ip = base(plugins={"ip_adapter": {"units": [{"model": "/m/ip.safetensors", "weight": 1.0}]}})
    weights = xyz.expand(ip, [xyz.parse_axis("ip_adapter=0,0.5")])
    assert [c.request.plugins["ip_adapter"]["units"][0]["weight"] for c in weights] == [0, 0.5]
    assert xyz.parse_axis("ip_adapter:0=1").title == "IP-Adapter 0 weight"
    tagged = xyz.expand(base().replace(prompt="a cat <lora:ink:0.3>"), [xyz.parse_axis("lora:ink=0.5,1")])
    assert [c.request.prompt for c in tagged] == ["a cat <lora:ink:0.5>", "a cat <lora:ink:1>"]
    added = xyz.expand(base(), [xyz.parse_axis("lora:new=0.5")])
    assert added[0].request.loras == (LoraRef(name="new", weight=0.5),)


def test_expand_refuses_with_one_message():
    cases = [
        ([xyz.parse_axis("cfg=1,40")], "cfg=40"),
        ([xyz.parse_axis("size=60x64")], "width 60 is not a multiple of 8"),
        ([xyz.parse_axis("controlnet=0.5")], "no ControlNet unit 0"),
        ([xyz.parse_axis("prompt_sr=purple,green")], "'purple' is not in the prompt"),
        ([xyz.parse_axis("cfg=1"), xyz.parse_axis("cfg=2")], "same field"),
        ([xyz.parse_axis(f"{k}=1,2") for k in ("cfg", "seed", "steps", "clip_skip")], "at most 3 axes"),
        ([xyz.parse_axis("seed=1-20"), xyz.parse_axis("steps=1-20")], "400 cells; the most is 256"),
        ([xyz.parse_axis("sampler=Nope")], "unknown scheduler"),
    ]
    for axes, words in cases:
        with pytest.raises(InvalidRequest, match=words):
            xyz.expand(base(), axes)


def test_grid_draws_labels_and_cells_and_records_them(tmp_path):
    axes = [xyz.parse_axis("cfg=1,4,7"), xyz.parse_axis("seed=1,2")]
    cells = xyz.expand(base(), axes)
    images = {c.index: np.full((64, 64, 3), 40 * (c.x + 3 * c.y), np.uint8) for c in cells[:5]}
    picture = grid.draw(axes, images, (64, 64))
    lay = grid.layout(axes, (64, 64))
    assert picture.shape == (lay.top + 2 * 64, lay.left + 3 * 64, 3)
    for c in cells[:5]:  # each finished cell where it belongs
        x0, y0 = lay.cell_box(*c.index)
        assert (picture[y0 : y0 + 64, x0 : x0 + 64] == 40 * (c.x + 3 * c.y)).all()
    x0, y0 = lay.cell_box(2, 1, 0)
    assert (picture[y0 + 5, x0 + 5] == grid.EMPTY).all()  # not made yet
    assert (picture[: lay.top - 2, lay.left :] < 128).any()  # the column headers are drawn
    assert (picture[lay.top :, : lay.left - 2] < 128).any()  # and the row headers
    record = grid.provenance(axes, cells, {(0, 0, 0): {"gallery_ids": ["abc"]}})
    path = grid.write(tmp_path / "g.png", picture, axes, cells, record)
    back = grid.read_record(path)
    assert [a["title"] for a in back["axes"]] == ["CFG scale", "Seed"]
    assert back["cells"][0]["gallery_ids"] == ["abc"] and back["cells"][5]["values"] == {"cfg": 7.0, "seed": 2}
    assert GenerationRequest.from_dict(back["cells"][4]["request"]) == cells[4].request
    from PIL import Image

    from studio.core.metadata import read_metadata

    text = Image.open(path).text["parameters"]
    assert 'X Type: CFG scale, X Values: "1, 4, 7", Y Type: Seed' in text
    meta = read_metadata(path)
    assert meta.normalised["prompt"] == "a red circle on blue" and "compositeSynthetic" in meta.digital_source_type


def test_three_axes_draw_side_by_side_subgrids():
    axes = [xyz.parse_axis("cfg=1,2"), xyz.parse_axis("seed=1,2"), xyz.parse_axis("steps=2,3,4")]
    cells = xyz.expand(base(), axes)
    picture = grid.draw(axes, {c.index: np.zeros((64, 64, 3), np.uint8) for c in cells}, (64, 64))
    lay = grid.layout(axes, (64, 64))
    assert picture.shape[1] == 3 * (lay.left + 2 * 64) + 2 * lay.gap and lay.z_title > 0
