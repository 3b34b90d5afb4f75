"""The demo-model trainer, on a few steps of a tiny VAE: every stage runs and exports a pipeline the
studio loads, a run stopped and resumed gives the same weights as one that never stopped, and the
stages that continue the shipped model (a VAE kept near its latents, a UNet started from its export,
the decoder alone on latent crops) do what they say."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from studio.dev import train_demo, train_vae  # noqa: E402

SHIPPED = Path(__file__).resolve().parents[2] / "resources" / "demo-model"
needs_shipped = pytest.mark.skipif(
    not (SHIPPED / "model_index.json").is_file(), reason="resources/demo-model is not there"
)

TINY = [
    "--threads",
    "1",
    "--vae-widths",
    "8",
    "16",
    "16",
    "16",
    "--vae-steps-64",
    "2",
    "--vae-steps-128",
    "1",
    "--vae-batch-64",
    "2",
    "--vae-batch-128",
    "1",
    "--n-scenes",
    "8",
    "--unet-steps",
    "2",
    "--batch",
    "2",
    "--ckpt-every",
    "1",
    "--export-every",
    "100",
]


def _run(work: Path, *extra: str) -> int:
    return train_demo.main(["--work", str(work), *TINY, *extra])


def _metrics(work: Path) -> list[dict]:
    return [json.loads(line) for line in (work / "metrics.jsonl").read_text().splitlines()]


def test_all_stages_export_a_pipeline_the_studio_loads(tmp_path, engine):
    from studio.core.request import GenerationRequest

    out = tmp_path / "model"
    assert _run(tmp_path / "work", "--export", str(out)) == 0
    latents = train_demo._load(tmp_path / "work" / "latents.pt")
    assert tuple(latents["latents"].shape) == (8, 4, 16, 16)
    vae_cfg = json.loads((out / "vae" / "config.json").read_text())
    assert vae_cfg["block_out_channels"] == [8, 16, 16, 16]
    assert vae_cfg["scaling_factor"] == pytest.approx(1 / latents["std"], abs=1e-4)
    assert (out / "training_step.txt").read_text().strip() == "2"
    res = engine.generate(
        GenerationRequest(model=str(out), prompt="a red circle", steps=2, seed=1, width=128, height=128, preview="none")
    )
    assert res.images[0].shape == (128, 128, 3)


def test_a_stopped_and_resumed_vae_run_equals_an_unbroken_one(tmp_path, monkeypatch):
    assert _run(tmp_path / "a", "--stage", "vae") == 0
    calls = {"n": 0}

    def deadline_after_one_step(stop_at):
        calls["n"] += 1
        return calls["n"] >= 1

    monkeypatch.setattr(train_vae, "_past", deadline_after_one_step)
    assert _run(tmp_path / "b", "--stage", "vae") == 3  # stopped at the "deadline", checkpointed
    assert train_demo._load(tmp_path / "b" / "vae.pt")["step"] == 1
    monkeypatch.undo()
    assert _run(tmp_path / "b", "--stage", "vae") == 0
    a, b = (train_demo._load(tmp_path / w / "vae.pt") for w in ("a", "b"))
    assert a["step"] == b["step"] == 3
    for k, v in a["vae"].items():
        assert torch.equal(v, b["vae"][k]), k


@needs_shipped
def test_vae_align_keeps_the_new_latents_near_the_teachers(tmp_path):
    assert (
        _run(
            tmp_path / "w",
            "--stage",
            "vae",
            "--vae-teacher",
            str(SHIPPED),
            "--vae-align",
            "1",
            "--vae-edge",
            "1",
            "--vae-object-crops",
            "1",
        )
        == 0
    )
    logged = [m for m in _metrics(tmp_path / "w") if m["stage"] == "vae"]
    assert logged and all(m["align"] > 0 for m in logged)
    assert _run(tmp_path / "plain", "--stage", "vae") == 0
    assert all(m["align"] == 0 for m in _metrics(tmp_path / "plain") if m["stage"] == "vae")


@needs_shipped
def test_unet_starts_from_an_exported_model_and_goes_on_from_its_step(tmp_path):
    from safetensors.torch import load_file

    from studio.dev.demo_parts import build_text_encoder, build_unet

    unet, te = build_unet(), build_text_encoder()
    step = train_demo.init_from_export(SHIPPED, unet, te)
    assert step == int((SHIPPED / "training_step.txt").read_text())
    saved = load_file(str(SHIPPED / "unet" / "diffusion_pytorch_model.safetensors"))
    name = "conv_in.weight"
    assert torch.equal(unet.state_dict()[name], saved[name].float())

    work = tmp_path / "w"
    assert _run(work, "--stage", "vae") == 0
    assert _run(work, "--stage", "latents") == 0
    assert _run(work, "--stage", "unet", "--init-from", str(SHIPPED), "--unet-steps", str(step + 1)) == 0
    assert [m["step"] for m in _metrics(work) if m["stage"] == "unet"] == [step + 1]


def test_decoder_stage_trains_the_decoder_alone_on_latent_crops(tmp_path):
    work = tmp_path / "w"
    assert _run(work, "--stage", "vae") == 0
    before = train_demo._load(work / "vae.pt")["vae"]
    assert _run(work, "--stage", "decoder", "--decoder-steps", "2", "--decoder-crop-steps", "1", "--vae-edge", "1") == 0
    after = train_demo._load(work / "decoder.pt")["vae"]
    frozen = [k for k in before if k.startswith(("encoder.", "quant_conv."))]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    assert any(not torch.equal(v, after[k]) for k, v in before.items() if k.startswith("decoder."))
    assert [m["step"] for m in _metrics(work) if m["stage"] == "decoder"] == [1, 2]


def test_empty_rate_sets_how_many_unet_captions_are_empty(tmp_path, monkeypatch):
    """--empty-rate is the share of empty captions (the unconditional branch guidance uses): 1.0
    trains on empty captions only, and it defaults to the scenes' rate."""
    from studio.dev import scenes

    work = tmp_path / "w"
    assert _run(work, "--stage", "vae") == 0
    assert _run(work, "--stage", "latents") == 0
    made, caption = [], scenes.caption
    monkeypatch.setattr(scenes, "caption", lambda *a, **kw: made.append(caption(*a, **kw)) or made[-1])
    assert _run(work, "--stage", "unet", "--empty-rate", "1.0") == 0
    assert len(made) == 2 * 2 and set(made) == {""}
    made.clear()
    assert _run(work, "--stage", "unet", "--empty-rate", "0.0", "--unet-steps", "4") == 0
    assert len(made) == 2 * 2 and "" not in made
    parser = argparse.ArgumentParser()
    train_demo.add_arguments(parser)
    assert parser.parse_args(["--work", "x"]).empty_rate == scenes.EMPTY_CAPTION_RATE


def test_focus_trains_on_the_combinations_an_evaluation_missed(tmp_path, monkeypatch):
    """--focus takes an `eval-demo --prompts training --json` result: with --focus-rate 1 every
    scene of every batch is a single-object scene of a combination it got wrong, drawn as often as
    it was wrong; a combination it always got right is never drawn for the focus part."""
    from studio.dev import scenes

    work = tmp_path / "w"
    assert _run(work, "--stage", "vae") == 0
    assert _run(work, "--stage", "latents") == 0
    singles = [i for i in range(8) if len(train_demo.scene_of(i).objects) == 1]
    assert len(singles) >= 2
    key = lambda i: scenes.combo_key(train_demo.scene_of(i).objects[0], train_demo.scene_of(i).background)  # noqa: E731
    missed, right = key(singles[0]), key(singles[1])
    assert missed != right
    results = tmp_path / "combos.json"
    results.write_text(json.dumps({"guidance": {"7": {"per_combo": {missed: 0.5, right: 1.0}}}}))

    idx, w = train_demo.focus_scenes(results, torch.tensor(singles))
    assert {key(i) for i in idx.tolist()} == {missed} and torch.allclose(w, torch.full_like(w, 0.5))

    seen, caption = [], scenes.caption
    monkeypatch.setattr(scenes, "caption", lambda scene, *a, **kw: seen.append(scene) or caption(scene, *a, **kw))
    assert _run(work, "--stage", "unet", "--focus", str(results), "--focus-rate", "1.0") == 0
    assert len(seen) == 2 * 2
    assert {scenes.combo_key(s.objects[0], s.background) for s in seen} == {missed}

    nothing = tmp_path / "none.json"
    nothing.write_text(json.dumps({"guidance": {"7": {"per_combo": {right: 1.0}}}}))
    with pytest.raises(ValueError, match="no training scene"):
        train_demo.focus_scenes(nothing, torch.tensor(singles))
