"""Behaviour of the shipped demo model and its adapters, checked through the studio's own engine.

Few steps and few trials, so this stays inside the suite's budget; `studio dev eval-adapters` and
`studio dev eval-demo` measure the same things on more trials (numbers in the model card). Every
run is seeded and bit-identical on a CPU, so these are deterministic.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from studio.dev import eval_adapters, scenes

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "resources" / "demo-model"
ADAPTERS = ROOT / "resources" / "demo-adapters"

pytestmark = pytest.mark.skipif(not (MODEL / "model_index.json").is_file(), reason="resources/demo-model is not there")
needs_adapters = pytest.mark.skipif(
    not (ADAPTERS / eval_adapters.LORA_FILE).is_file() or not (ADAPTERS / eval_adapters.CONTROLNET_DIR).is_dir(),
    reason="resources/demo-adapters is not there",
)


@pytest.fixture(autouse=True)
def one_thread():
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small convolutions: one thread is the fastest on a busy CPU
    yield
    torch.set_num_threads(threads)


def test_guidance_pulls_towards_the_prompt(engine):
    """Guidance gets more of the held-out prompts wholly right (colour, shape, place and background)
    than guidance 1 (no guidance): the demo model's recommended setting (CFG 7 on the first half of the
    steps) and the same CFG 7 on every step, which over-shoots on this model (the model card's
    table). This model gets colour and place right even without guidance; what guidance adds is the
    shape, and that needs the full 20 steps."""
    from studio.core import recommend
    from studio.core.request import GenerationRequest
    from studio.dev.eval_demo import score

    rec = recommend.for_model("demo")
    assert rec.cfg > 1.0 and 0 < rec.cfg_end < 1

    def right(g: float, end: float = 1.0) -> int:
        hits = 0
        for i, (obj, bg, prompt) in enumerate(scenes.eval_prompts(1)):
            req = GenerationRequest(
                model=str(MODEL),
                prompt=prompt,
                steps=20,
                guidance_scale=g,
                guidance_end=end,
                seed=i,
                width=128,
                height=128,
                preview="none",
                scheduler="DDIM",
            )
            hits += all(score(engine.generate(req).images[0], obj, bg).values())
        return hits

    none, early = right(1.0), right(rec.cfg, rec.cfg_end)
    print(f"of 12: guidance 1 {none}, CFG {rec.cfg:g} on {rec.cfg_end:.0%} of the steps {early}")
    assert early >= none + CFG_MARGIN
    assert early > right(rec.cfg)


@needs_adapters
def test_striped_lora_adds_its_style_at_weight_1_only():
    r = eval_adapters.eval_lora(MODEL, ADAPTERS / eval_adapters.LORA_FILE, n=LORA_N, steps=10, guidance=4.0)
    assert r["weight_0"]["striped"] == 0.0
    assert r["weight_1"]["striped"] >= LORA_MIN
    assert r["weight_1"]["mean_score"] > 2 * r["weight_0"]["mean_score"]


@needs_adapters
def test_controlnet_puts_the_shape_where_the_edges_are(tmp_path):
    r = eval_adapters.eval_controlnet(
        MODEL, ADAPTERS / eval_adapters.CONTROLNET_DIR, n=CN_N, steps=10, guidance=4.0, tmp=tmp_path
    )
    assert r["with_controlnet"]["position"] >= CN_MIN
    assert r["with_controlnet"]["position"] > r["without"]["position"]


def test_inpainting_fills_the_mask_with_the_asked_colour(tmp_path):
    r = eval_adapters.eval_inpaint(MODEL, n=INPAINT_N, steps=10, guidance=4.0, tmp=tmp_path)
    assert r["outside_unchanged"] == 1.0
    assert r["colour"] >= INPAINT_MIN


CFG_MARGIN = 2  # of 12 prompts (measured: 7 at guidance 1, 10 at CFG 7 on the first half of the steps)
LORA_N, LORA_MIN = 4, 0.75
CN_N, CN_MIN = 4, 0.75
INPAINT_N, INPAINT_MIN = 4, 0.75
