"""`studio generate` end to end: PNG with provenance, gallery record, JSON summary, one-line errors."""

import json

import numpy as np
import pytest
from PIL import Image

from studio.cli import main


def test_generate_writes_png_with_recipe_and_gallery_row(tiny_models, tmp_path, capsys):
    model = tiny_models("sd15", "single-file")
    out = tmp_path / "out.png"
    lib = tmp_path / "lib"
    rc = main(
        [
            "generate",
            "--model",
            str(model),
            "--prompt",
            "a red, circle: top",
            "--steps",
            "3",
            "--size",
            "64x64",
            "--seed",
            "5",
            "--out",
            str(out),
            "--json",
            "--library",
            str(lib),
            "--previews-dir",
            str(tmp_path / "prev"),
        ]
    )
    assert rc == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["status"] == "done" and summary["files"] == [str(out)] and summary["seeds"] == [5]
    img = Image.open(out)
    assert img.size == (64, 64)
    assert "a red, circle: top" in img.text["parameters"] and "Seed: 5" in img.text["parameters"]
    assert len(list((tmp_path / "prev").glob("step-*.png"))) == 3
    from studio.core.gallery import Gallery

    with Gallery(lib) as g:
        assert len(g.search("circle")) == 1
    from studio.core.metadata import read_metadata

    meta = read_metadata(out)
    assert meta.normalised["model_hash"]  # first 10 hex of the checkpoint file's SHA-256
    assert meta.request.seed == 5


def test_no_gallery_and_batch_names(tiny_sd15, tmp_path):
    out = tmp_path / "b.png"
    assert (
        main(
            [
                "generate",
                "--model",
                str(tiny_sd15),
                "--prompt",
                "x",
                "--steps",
                "2",
                "--size",
                "64x64",
                "--batch",
                "2",
                "--no-gallery",
                "--library",
                str(tmp_path / "lib"),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    a, b = (np.asarray(Image.open(tmp_path / f"b-{i}.png")) for i in (1, 2))
    assert a.shape == (64, 64, 3) and not np.array_equal(a, b)
    assert not (tmp_path / "lib").exists()


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--model", "/no/such/model"], "Model not found"),
        (["--size", "13x64"], "multiple of 8"),
        (["--size", "big"], "--size must look like"),
        (["--scheduler", "Heun++"], "unknown scheduler"),
        (["--clip-skip", "5"], "Clip skip 5 goes past"),  # a prompt past 75 tokens is read in chunks now
    ],
)
def test_bad_input_exits_non_zero_with_one_line(tiny_sd15, tmp_path, capsys, argv, words):
    base = {"--model": str(tiny_sd15), "--prompt": "x", "--size": "64x64", "--steps": "2"}
    for flag, value in zip(argv[::2], argv[1::2]):
        base[flag] = value
    args = ["generate", *[x for kv in base.items() for x in kv], "--out", str(tmp_path / "o.png"), "--no-gallery"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1 and err.startswith("studio: ")
    assert not (tmp_path / "o.png").exists()


def test_unset_steps_cfg_scheduler_take_the_model_familys_recommended(tiny_sd15, tmp_path, capsys):
    """Like the window when a model is chosen: the demo model gets CFG 7 on the first half of the steps
    only (on every step it distorts its shapes, see its model card) and DPM++ 2M, an SD 1.x model
    SD 1.x's settings; what is given wins."""
    from studio.cli.generate import FALLBACK_CFG, FALLBACK_SCHEDULER
    from studio.core import recommend

    def request(*argv):
        out = tmp_path / "r.png"
        assert (
            main(
                [
                    "generate",
                    "--prompt",
                    "a red circle",
                    "--size",
                    "64x64",
                    "--seed",
                    "1",
                    "--no-gallery",
                    "--out",
                    str(out),
                    "--json",
                    "--preview",
                    "none",
                    *argv,
                ]
            )
            == 0
        )
        return json.loads(capsys.readouterr().out)["request"]

    demo = recommend.for_model("demo")
    r = request("--steps", "2")
    assert (r["model"], r["guidance_scale"], r["scheduler"]) == ("demo", demo.cfg, demo.scheduler)
    assert r["guidance_end"] == demo.cfg_end < 1  # guidance on the early steps only (see its model card)
    assert (demo.cfg, demo.cfg_end, demo.scheduler) != (FALLBACK_CFG, 1.0, FALLBACK_SCHEDULER)
    sd1 = recommend.for_model(str(tiny_sd15))
    assert sd1 is not None and sd1.family == "sd1"
    r = request("--model", str(tiny_sd15))
    assert (r["steps"], r["guidance_scale"], r["scheduler"], r["guidance_end"]) == (
        sd1.steps,
        sd1.cfg,
        sd1.scheduler,
        1.0,
    )
    assert (r["scheduler"], r["schedule_type"]) == ("DPM++ 2M", "Karras") == (sd1.scheduler, sd1.schedule_type)
    r = request("--model", str(tiny_sd15), "--steps", "2", "--cfg", "5.5", "--scheduler", "Euler", "--cfg-end", "0.4")
    assert (r["steps"], r["guidance_scale"], r["scheduler"], r["guidance_end"]) == (2, 5.5, "Euler", 0.4)
