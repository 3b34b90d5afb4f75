"""Check the demo model's behaviour through the studio's own engine and plugins.

    studio dev eval-adapters --json [--only inpaint|lora|controlnet]

- inpaint     A plain scene with one object (not in the centre); a square mask over a grid cell at
              least two cells from it, as the objects of every training scene are (a cell next to
              the object would put the mask over its edge, and the new star would touch it); the
              prompt asks for "a large green star" there. Hit: inside the mask the detector finds a
              green object, and (shape) a star. Nothing outside the grown+feathered mask may change
              (checked too). The ideal answer (the scene drawn with the star, composited through
              the same mask) scores 100 %. Run with the whole picture as context (the studio's
              default) and with "Only masked" (`--inpaint-padding`, the crop the model sees around
              the mask); `star_size` is the median area of the stars found over the ideal star's
              (Only masked draws at the crop's scale, so its stars come out smaller).
- lora        The demo LoRA at weight 0 and 1 on held-out single-object prompts that ask for a plain
              background. Hit: the background is striped (`scenes.stripe_score` ≥ 1.5 grey levels;
              plain model output scores 0.3-0.9, rendered stripes 1.4-6).
- controlnet  Canny edges of a held-out scene, a prompt that names colours but no position. Hit:
              the detected object sits in the grid cell of the edges (and, reported apart, has
              their shape). The same prompts without the ControlNet give the chance baseline.

Every generation goes through `studio.engine.Engine` with a GenerationRequest, exactly as the
window and the CLI run them, so the plugins' loading and fit checks are exercised too.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter

from studio.dev import scenes
from studio.dev.eval_demo import recommended_end

ROOT = Path(__file__).resolve().parent.parent.parent
DEFAULT_MODEL = ROOT / "resources" / "demo-model"
DEFAULT_ADAPTERS = ROOT / "resources" / "demo-adapters"
LORA_FILE = "demo-striped.safetensors"
CONTROLNET_DIR = "demo-canny-controlnet"
STRIPE_HIT = 1.5


def _engine():
    from studio.engine.engine import Engine

    return Engine(device="cpu", dtype="float32")


def _req(model: Path, prompt: str, seed: int, steps: int, guidance: float, guidance_end: float = 1.0, **kw):
    from studio.core.request import GenerationRequest

    return GenerationRequest(
        model=str(model),
        prompt=prompt,
        seed=seed,
        steps=steps,
        guidance_scale=guidance,
        guidance_end=guidance_end,
        width=scenes.SIZE,
        height=scenes.SIZE,
        preview="none",
        scheduler="DDIM",
        **kw,
    )


def _scene(rng: random.Random, held_out: bool) -> scenes.Scene:
    while True:
        colour, shape = rng.choice(scenes.COLOURS), rng.choice(scenes.SHAPES)
        bg = rng.choice([c for c in scenes.COLOURS if c != colour])
        obj = scenes.Obj(shape, colour, rng.choice(("medium", "large")), rng.choice(scenes.POSITIONS))
        if held_out and not scenes.is_held_out(obj):
            continue
        return scenes.Scene(bg, "plain", (obj,))


def free_cells(position: str) -> list[str]:
    """The grid cells an object may be added at beside one at `position` (two or more cells away,
    as scenes.sample_scene places the objects of a training scene)."""
    return [p for p in scenes.POSITIONS if scenes.far_apart([p, position])]


INPAINT_OBJECT = scenes.Obj("star", "green", "large", "center")  # its position is the masked cell's


@dataclasses.dataclass(frozen=True)
class InpaintCase:
    scene: scenes.Scene  # the picture before (one object)
    cell: str  # the grid cell the mask covers
    mask: np.ndarray  # (SIZE, SIZE) uint8, 255 = repaint

    @property
    def asked(self) -> scenes.Obj:
        """The object the prompt asks for, at the masked cell."""
        return dataclasses.replace(INPAINT_OBJECT, position=self.cell)

    @property
    def prompt(self) -> str:
        return scenes.prompt_for(self.asked, self.scene.background)

    def ideal(self) -> np.ndarray:
        """The right answer: the same scene drawn with the asked object at the cell."""
        return np.asarray(scenes.render(dataclasses.replace(self.scene, objects=self.scene.objects + (self.asked,))))


def inpaint_cases(n: int, seed: int = 41) -> list[InpaintCase]:
    rng, out = random.Random(seed), []
    for _ in range(n):
        scene = _scene(rng, held_out=False)
        while (
            INPAINT_OBJECT.colour in (scene.background, scene.objects[0].colour)
            or scene.objects[0].position == "center"
        ):
            scene = _scene(rng, held_out=False)
        cell = rng.choice(free_cells(scene.objects[0].position))
        row, col = divmod(scenes.POSITIONS.index(cell), 3)
        cx, cy = int(scenes.GRID[col] * scenes.SIZE), int(scenes.GRID[row] * scenes.SIZE)
        half = 26
        mask = np.zeros((scenes.SIZE, scenes.SIZE), np.uint8)
        mask[max(0, cy - half) : cy + half, max(0, cx - half) : cx + half] = 255
        out.append(InpaintCase(scene, cell, mask))
    return out


def inpaint_found(out: np.ndarray, case: InpaintCase) -> scenes.Detected | None:
    """The largest object of the asked colour the detector finds in the masked cell, or None."""
    inside = [o for o in scenes.detect(out).objects if o.colour == INPAINT_OBJECT.colour and o.position == case.cell]
    return max(inside, key=lambda o: o.area) if inside else None


def inpaint_hits(found: scenes.Detected | None) -> tuple[bool, bool]:
    """(an object of the asked colour in the masked cell, and it has the asked shape)."""
    return found is not None, bool(found and found.shape == INPAINT_OBJECT.shape)


def star_size(found: scenes.Detected | None, case: InpaintCase) -> float | None:
    """Area of the star found in the cell over the ideal answer's (None when no star is found)."""
    ideal = inpaint_found(case.ideal(), case)
    if found is None or not inpaint_hits(found)[1] or ideal is None:
        return None
    return found.area / ideal.area


def eval_inpaint(
    model: Path,
    n: int,
    steps: int,
    guidance: float,
    tmp: Path,
    area: str = "whole",
    padding: int = 32,
    guidance_end: float = 1.0,
) -> dict:
    from studio.core.request import ImageRef

    eng = _engine()
    hits = {"colour": 0, "shape": 0, "outside_unchanged": 0}
    sizes = []
    t0 = time.time()
    for i, case in enumerate(inpaint_cases(n)):
        image = scenes.render(case.scene)
        ip, mp = tmp / f"in{i}.png", tmp / f"mask{i}.png"
        image.save(ip)
        Image.fromarray(case.mask).save(mp)
        res = eng.generate(
            _req(
                model,
                case.prompt,
                20_000 + i,
                steps,
                guidance,
                guidance_end,
                init_image=ImageRef(path=str(ip)),
                mask=ImageRef(path=str(mp)),
                mask_grow=0,
                mask_blur=4,
                strength=1.0,
                inpaint_area=area,
                inpaint_padding=padding,
            )
        )
        out = res.images[0]
        grown = np.asarray(Image.fromarray(case.mask).filter(ImageFilter.MaxFilter(17)))
        hits["outside_unchanged"] += bool((out[grown == 0] == np.asarray(image)[grown == 0]).all())
        found = inpaint_found(out, case)
        colour, shape = inpaint_hits(found)
        hits["colour"] += colour
        hits["shape"] += shape
        if (size := star_size(found, case)) is not None:
            sizes.append(size)
    return {
        "n": n,
        "area": area,
        **({"padding": padding} if area == "only_masked" else {}),
        **{k: round(v / n, 3) for k, v in hits.items()},
        "star_size": round(float(np.median(sizes)), 2) if sizes else None,
        "s_per_image": round((time.time() - t0) / n, 2),
    }


def eval_lora(model: Path, lora: Path, n: int, steps: int, guidance: float, guidance_end: float = 1.0) -> dict:
    from studio.core.request import LoraRef

    eng, rng = _engine(), random.Random(42)
    prompts = []
    for _ in range(n):
        scene = _scene(rng, held_out=True)
        prompts.append(scenes.prompt_for(scene.objects[0], scene.background))
    out: dict = {"n": n}
    for weight in (0.0, 1.0):
        found, scores = 0, []
        for i, prompt in enumerate(prompts):
            loras = (LoraRef(name="demo-striped", path=str(lora), weight=weight),) if weight else ()
            res = eng.generate(_req(model, prompt, 30_000 + i, steps, guidance, guidance_end, loras=loras))
            score = scenes.stripe_score(res.images[0])
            scores.append(score)
            found += score >= STRIPE_HIT
        out[f"weight_{weight:g}"] = {"striped": round(found / n, 3), "mean_score": round(float(np.mean(scores)), 2)}
    return out


def eval_controlnet(
    model: Path, controlnet: Path, n: int, steps: int, guidance: float, tmp: Path, guidance_end: float = 1.0
) -> dict:
    from studio.core.request import ControlNetRef, ImageRef

    eng, rng = _engine(), random.Random(43)
    cases = []
    for i in range(n):
        scene = _scene(rng, held_out=True)
        p = tmp / f"control{i}.png"
        scenes.render(scene).save(p)
        o = scene.objects[0]
        cases.append((o, p, f"a {o.size} {o.colour} {o.shape} on a {scene.background} background"))
    out: dict = {"n": n}
    for use in (False, True):
        pos = shape = 0
        for i, (o, p, prompt) in enumerate(cases):
            units = (
                (ControlNetRef(model=str(controlnet), image=ImageRef(path=str(p)), preprocessor="canny"),)
                if use
                else ()
            )
            res = eng.generate(_req(model, prompt, 40_000 + i, steps, guidance, guidance_end, controlnets=units))
            main = scenes.detect(res.images[0]).main()
            pos += bool(main and main.position == o.position)
            shape += bool(main and main.shape == o.shape)
        out["with_controlnet" if use else "without"] = {"position": round(pos / n, 3), "shape": round(shape / n, 3)}
    return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default=str(DEFAULT_MODEL))
    p.add_argument("--adapters", default=str(DEFAULT_ADAPTERS), help="folder of the demo adapters")
    p.add_argument("--only", choices=["inpaint", "lora", "controlnet"], action="append")
    p.add_argument("-n", type=int, default=20, help="trials per check")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--guidance", type=float, default=4.0)
    p.add_argument(
        "--guidance-end",
        type=float,
        default=None,
        help="guidance on this share of the steps only (GenerationRequest.guidance_end; default: "
        "the model's recommended setting)",
    )
    p.add_argument(
        "--inpaint-padding", type=int, default=8, help="px of context around the mask for the Only masked run"
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--threads", type=int, default=None)


def run(args: argparse.Namespace) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    model, adapters = Path(args.model), Path(args.adapters)
    only = args.only or ["inpaint", "lora", "controlnet"]
    end = args.guidance_end if args.guidance_end is not None else recommended_end(model)
    results: dict = {"model": str(model), "steps": args.steps, "guidance": args.guidance, "guidance_end": end}
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        if "inpaint" in only:
            results["inpaint"] = eval_inpaint(model, args.n, args.steps, args.guidance, tmp, guidance_end=end)
            results["inpaint_only_masked"] = eval_inpaint(
                model, args.n, args.steps, args.guidance, tmp, "only_masked", args.inpaint_padding, end
            )
        if "lora" in only:
            results["lora"] = eval_lora(model, adapters / LORA_FILE, args.n, args.steps, args.guidance, end)
        if "controlnet" in only:
            results["controlnet"] = eval_controlnet(
                model, adapters / CONTROLNET_DIR, args.n, args.steps, args.guidance, tmp, end
            )
    print(json.dumps(results, indent=2 if args.json else None))
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m studio.dev.eval_adapters",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    return run(p.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
