"""Evaluate a demo model: generate the held-out prompts and read every image back with the detector.

For each guidance scale, every prompt of `scenes.eval_prompts()` (held-out colour–shape pairs and
held-out shape–position layouts, never seen in training) is generated at 128×128 with its own
seed, and the detector reports the background colour and the largest object. Accuracy is given
per attribute (colour, shape, position, background) and overall (all four right at once).

The first row, "VAE round trip", reads the same held-out scenes rendered cleanly and passed
through the model's autoencoder (encode, decode) with nothing generated: the most a generated
image can reach, since every image the model makes comes out of that decoder.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from studio.dev import scenes

DEFAULT_MODEL = Path(__file__).resolve().parent.parent.parent / "resources" / "demo-model"
ATTRIBUTES = ("colour", "shape", "position", "background")


def load_pipeline(path: str | Path, scheduler: str | None = None):
    import torch
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(
        str(path),
        local_files_only=True,
        safety_checker=None,
        requires_safety_checker=False,
        torch_dtype=torch.float32,
    )
    if scheduler:
        from diffusers import DDIMScheduler, DPMSolverMultistepScheduler, EulerDiscreteScheduler

        cls = {"ddim": DDIMScheduler, "dpm": DPMSolverMultistepScheduler, "euler": EulerDiscreteScheduler}[scheduler]
        pipe.scheduler = cls.from_config(pipe.scheduler.config)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def score(image, obj: scenes.Obj, background: str) -> dict[str, bool]:
    det = scenes.detect(image)
    main = det.main()
    return {
        "colour": bool(main and main.colour == obj.colour),
        "shape": bool(main and main.shape == obj.shape),
        "position": bool(main and main.position == obj.position),
        "background": det.background == background,
    }


def accuracy(scores: list[dict[str, bool]]) -> dict[str, float]:
    """Per-attribute accuracy, "overall" (all four right at once) and their "mean" over scores."""
    n = len(scores)
    row = {a: round(sum(s[a] for s in scores) / n, 3) for a in ATTRIBUTES}
    row["overall"] = round(sum(all(s.values()) for s in scores) / n, 3)
    row["mean"] = round(sum(s[a] for s in scores for a in ATTRIBUTES) / (n * len(ATTRIBUTES)), 3)
    return row


def round_trip_scores(vae, n_per_rule: int = 3, prompts: list | None = None) -> dict[str, float]:
    """accuracy() of the detector on VAE round trips of the held-out eval scenes (or of `prompts`)."""
    import numpy as np
    import torch

    from studio.dev.demo_parts import _image_tensor

    prompts = prompts if prompts is not None else scenes.eval_prompts(n_per_rule)
    param = next(vae.parameters())
    scores = []
    for at in range(0, len(prompts), 64):  # in batches: the training set's 294 at once take GBs
        chunk = prompts[at : at + 64]
        x = _image_tensor([scenes.render(scenes.Scene(background=bg, objects=(obj,))) for obj, bg, _ in chunk]).to(
            param.device, param.dtype
        )
        with torch.no_grad():
            y = vae.decode(vae.encode(x).latent_dist.mean).sample.float().clamp(-1, 1)
        out = ((y.permute(0, 2, 3, 1).cpu().numpy() + 1) * 127.5).round().astype(np.uint8)
        scores += [score(rgb, obj, bg) for (obj, bg, _), rgb in zip(chunk, out)]
    return accuracy(scores)


def evaluate(
    model: str | Path = DEFAULT_MODEL,
    guidances: tuple[float, ...] = (1.0, 4.0, 7.0),
    steps: int = 20,
    n_per_rule: int = 3,
    scheduler: str | None = None,
    save_dir: str | Path | None = None,
    threads: int | None = None,
    guidance_end: float = 1.0,
    prompt_set: str = "held-out",
) -> dict:
    import torch

    from studio.engine.guidance import guided_steps, stop_guidance, tensor_inputs

    if threads:
        torch.set_num_threads(threads)
    pipe = load_pipeline(model, scheduler)
    prompts = scenes.eval_prompts(n_per_rule) if prompt_set == "held-out" else scenes.combo_prompts(n_per_rule)
    results: dict = {
        "model": str(model),
        "prompts": prompt_set,
        "steps": steps,
        "n_prompts": len(prompts),
        "scheduler": type(pipe.scheduler).__name__,
        "guidance_end": guidance_end,
        "vae_round_trip": round_trip_scores(pipe.vae, prompts=prompts),
        "guidance": {},
    }
    guided = guided_steps(steps, guidance_end)  # as the engine does: guidance on the first `guided` steps
    cut = (
        {
            "callback_on_step_end": lambda p, i, t, kw: stop_guidance(p, kw) if i + 1 == guided else kw,
            "callback_on_step_end_tensor_inputs": tensor_inputs(pipe),
        }
        if 0 < guided < steps
        else {}
    )
    for g in guidances:
        scores = []
        t0 = time.time()
        for i, (obj, bg, prompt) in enumerate(prompts):
            gen = torch.Generator().manual_seed(10_000 + i)
            image = pipe(
                prompt,
                num_inference_steps=steps,
                guidance_scale=g if guided else min(g, 1.0),
                generator=gen,
                height=scenes.SIZE,
                width=scenes.SIZE,
                **cut,
            ).images[0]
            scores.append(score(image, obj, bg))
            if save_dir:
                d = Path(save_dir)
                d.mkdir(parents=True, exist_ok=True)
                image.save(d / f"g{g:g}_{i:03d}.png")
        row: dict[str, Any] = dict(accuracy(scores))
        if prompt_set == "training":
            row["per_combo"] = per_combo(prompts, scores)
            row["missed"] = sorted(k for k, v in row["per_combo"].items() if v == 0)
        row["s_per_image"] = round((time.time() - t0) / len(prompts), 3)
        results["guidance"][f"{g:g}"] = row
    return results


def per_combo(prompts: list[tuple[scenes.Obj, str, str]], scores: list[dict[str, bool]]) -> dict[str, float]:
    """Share of each colour–shape–background combination's images that were wholly right."""
    hits: dict[str, list[bool]] = {}
    for (obj, bg, _), s in zip(prompts, scores):
        hits.setdefault(scenes.combo_key(obj, bg), []).append(all(s.values()))
    return {k: round(sum(v) / len(v), 3) for k, v in hits.items()}


def format_table(results: dict) -> str:
    head = "| guidance | colour | shape | position | background | overall (all 4) | mean |"
    rows = list(results["guidance"].items())
    if "vae_round_trip" in results:
        rows.insert(0, ("VAE round trip (ceiling)", results["vae_round_trip"]))
    lines = [head, "|---|---|---|---|---|---|---|"]
    for label, r in rows:
        cells = [f"{r[k] * 100:.0f} %" for k in (*ATTRIBUTES, "overall", "mean")]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=str(DEFAULT_MODEL), help="diffusers folder of the model")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, nargs="+", default=[1.0, 4.0, 7.0])
    p.add_argument(
        "--n-per-rule", type=int, default=3, help="prompts per held-out rule (with --prompts training: per combination)"
    )
    p.add_argument(
        "--prompts",
        default="held-out",
        choices=["held-out", "training"],
        help="held-out pairs and layouts (the target), or every combination training shows",
    )
    p.add_argument("--scheduler", default=None, choices=["ddim", "dpm", "euler"], help="override the model's scheduler")
    p.add_argument("--save-dir", default=None, help="also save every generated image here")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument(
        "--guidance-end",
        type=float,
        default=None,
        help="guidance on this share of the steps only, as GenerationRequest.guidance_end (1: every "
        "step; default: the model's recommended setting, as the window and `studio generate` use)",
    )


def recommended_end(model: str | Path) -> float:
    """The share of the steps the studio guides for this model (the demo model's: 0.5; others 1)."""
    from studio.core import recommend

    rec = recommend.for_model(str(model))
    return rec.cfg_end if rec else 1.0


def run(args: argparse.Namespace) -> int:
    end = args.guidance_end if args.guidance_end is not None else recommended_end(args.model)
    results = evaluate(
        args.model,
        tuple(args.guidance),
        args.steps,
        args.n_per_rule,
        args.scheduler,
        args.save_dir,
        args.threads,
        end,
        args.prompts,
    )
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print(
            f"{results['model']}: {results['n_prompts']} {results['prompts']} prompts, {results['steps']} "
            f"steps, {results['scheduler']}, guidance on {results['guidance_end']:g} of the steps"
        )
        print(format_table(results))
        for g, row in results["guidance"].items():
            if "missed" in row:
                print(f"guidance {g}: never right: {', '.join(row['missed']) or 'none'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m studio.dev.eval_demo", description=__doc__)
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
