"""`studio dev eval-demo --prompts training`: every trained combination, and which it gets wrong."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")

from studio.dev import eval_demo, scenes


def test_per_combo_counts_an_image_right_only_when_all_four_are():
    prompts = scenes.combo_prompts(2)[:4]  # two combinations, two draws each
    right = dict.fromkeys(eval_demo.ATTRIBUTES, True)
    scores = [right, right, right, {**right, "shape": False}]
    per = eval_demo.per_combo(prompts, scores)
    first, second = (scenes.combo_key(o, bg) for o, bg, _ in (prompts[0], prompts[2]))
    assert per == {first: 1.0, second: 0.5}


def test_training_prompts_report_every_combination_and_the_missed(tiny_sd15, monkeypatch, capsys):
    combos = scenes.combo_prompts
    monkeypatch.setattr(scenes, "combo_prompts", lambda n: combos(1)[:3])
    r = eval_demo.evaluate(tiny_sd15, guidances=(1.0,), steps=2, prompt_set="training")
    row = r["guidance"]["1"]
    assert r["prompts"] == "training" and r["n_prompts"] == 3
    assert set(row["per_combo"]) == {scenes.combo_key(o, bg) for o, bg, _ in combos(1)[:3]}
    # A randomly initialised model draws no shapes: every combination is missed, and said so.
    assert row["missed"] == sorted(row["per_combo"]) and row["overall"] == 0.0
    assert r["vae_round_trip"]["background"] <= 1.0

    assert (
        eval_demo.main(
            ["--model", str(tiny_sd15), "--prompts", "training", "--guidance", "1", "--steps", "1", "--json"]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert out["guidance"]["1"]["missed"]
