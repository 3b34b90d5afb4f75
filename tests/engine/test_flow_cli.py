"""`studio generate` and `studio models scan` with FLUX/SD3 files as ComfyUI keeps them: the recipe
names the encoder files and round-trips to the same pixels; bad input gets one line and exit 2."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from studio.cli import main


def _args(files, out, *extra):
    args = [
        "generate",
        "--model",
        str(files.model),
        "--prompt",
        "a red circle",
        "--steps",
        "3",
        "--size",
        "64x64",
        "--seed",
        "4",
        "--out",
        str(out),
        "--no-gallery",
        *extra,
    ]
    for enc in files.encoders:
        args += ["--text-encoder", str(enc)]
    return args + (["--vae", str(files.vae)] if files.vae else [])


def test_cli_transformer_only_recipe_round_trips(tiny_flow, tmp_path, capsys, engine):
    from studio.core.metadata.readers import read_metadata

    files = tiny_flow("flux-dev", "comfy")
    out = tmp_path / "flux.png"
    assert main(_args(files, out, "--json")) == 0
    summary = json.loads(capsys.readouterr().out)
    req = summary["request"]
    assert sorted(req["text_encoders"]) == sorted(str(p.resolve()) for p in files.encoders)
    assert req["vae"] == str(files.vae.resolve()) and req["guidance_scale"] == 3.5 and req["scheduler"] == "Euler"
    read = read_metadata(out)
    assert read.request is not None and read.request.text_encoders == tuple(req["text_encoders"])
    text = read.raw.get("parameters", "")
    assert "Distilled CFG Scale: 3.5" in text and "CFG scale: 1," in text and "Module 2: clip_l" in text
    again = engine.generate(read.request).images[0]
    assert np.array_equal(again, np.asarray(Image.open(out).convert("RGB")))


def test_cli_missing_encoders_one_line_exit_2(tiny_flow, tmp_path, capsys):
    files = tiny_flow("flux-dev", "comfy")
    rc = main(
        [
            "generate",
            "--model",
            str(files.model),
            "--prompt",
            "x",
            "--size",
            "64x64",
            "--steps",
            "1",
            "--out",
            str(tmp_path / "x.png"),
            "--no-gallery",
        ]
    )
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert "CLIP-L" in err and "T5-XXL" in err and "models/clip" in err and "Traceback" not in err
    assert not (tmp_path / "x.png").exists()


def test_cli_scan_names_both_families(tiny_flow, capsys):
    flux, sd3 = tiny_flow("flux-schnell").model, tiny_flow("sd3-medium").model
    for model, want in ((flux, "checkpoint flux (FLUX.1 schnell)"), (sd3, "checkpoint sd3 (SD 3 medium)")):
        assert main(["models", "scan", str(model.parent)]) == 0
        assert want in capsys.readouterr().out
    assert main(["models", "info", str(flux), "--json"]) == 0
    (entry,) = json.loads(capsys.readouterr().out)
    assert (entry["arch"], entry["variant"], entry["kind"]) == ("flux", "schnell", "checkpoint")
