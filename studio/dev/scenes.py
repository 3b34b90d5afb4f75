"""Procedural captioned scenes for the demo model, and the detector that reads them back.

A scene is one to three flat shapes (circle, square, triangle, star, ring, cross) in one of eight
palette colours, three sizes and nine positions (a 3×3 grid) on a plain, gradient, striped or
checkered background of another palette colour. Captions come in several phrasings; about 10 %
are empty so that classifier-free guidance has an unconditional branch to learn.

Some colour–shape pairs and some shape–position layouts never appear in training
(`HELD_OUT_PAIRS`, `HELD_OUT_LAYOUTS`); the evaluation prompts are made of exactly those.

The detector (`detect`) needs numpy and Pillow only: nearest-palette colour segmentation, the
background as the most common colour, connected components of the rest, shape from the region's
moments and hull (extent, solidity, holes, vertical skew) and the symmetry of its outline (the 3-,
4- and 5-fold harmonics of its radius around the centroid), position from the centroid.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

SIZE = 128
SS = 4  # supersampling factor for anti-aliased rendering

PALETTE: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 70, 220),
    "yellow": (240, 210, 40),
    "orange": (245, 130, 30),
    "purple": (140, 60, 190),
    "white": (240, 240, 240),
    "black": (25, 25, 25),
}
COLOURS = tuple(PALETTE)
SHAPES = ("circle", "square", "triangle", "star", "ring", "cross")
SIZES: dict[str, int] = {"small": 28, "medium": 40, "large": 54}  # bounding diameter, pixels
POSITIONS = (
    "top left", "top", "top right",
    "left", "center", "right",
    "bottom left", "bottom", "bottom right",
)  # fmt: skip
GRID = (0.22, 0.5, 0.78)  # centre of each row / column, as a fraction of the side
BOUNDS = (0.36, 0.64)  # where the detector splits rows / columns
BACKGROUNDS = ("plain", "gradient", "striped", "checkered")
EMPTY_CAPTION_RATE = 0.1

# Never shown in training; the evaluation asks for them.
HELD_OUT_PAIRS: frozenset[tuple[str, str]] = frozenset(
    {
        ("red", "star"),
        ("green", "ring"),
        ("blue", "triangle"),
        ("yellow", "cross"),
        ("purple", "circle"),
        ("orange", "square"),
    }
)
HELD_OUT_LAYOUTS: frozenset[tuple[str, str]] = frozenset(
    {
        ("star", "bottom left"),
        ("circle", "top right"),
        ("square", "bottom"),
        ("triangle", "left"),
        ("ring", "top left"),
        ("cross", "right"),
    }
)


@dataclass(frozen=True)
class Obj:
    shape: str
    colour: str
    size: str
    position: str


@dataclass(frozen=True)
class Scene:
    background: str
    pattern: str = "plain"
    objects: tuple[Obj, ...] = ()
    pattern_seed: int = 0  # orientation/phase of gradients and patterns


@dataclass
class Sample:
    scene: Scene
    caption: str
    image: Image.Image = field(repr=False)


def is_held_out(obj: Obj) -> bool:
    return (obj.colour, obj.shape) in HELD_OUT_PAIRS or (obj.shape, obj.position) in HELD_OUT_LAYOUTS


def _cell(position: str) -> tuple[int, int]:
    i = POSITIONS.index(position)
    return i // 3, i % 3  # row, column


def far_apart(positions: list[str]) -> bool:
    """Every two of the positions are at least two grid cells apart (rows or columns)."""
    cells = [_cell(p) for p in positions]
    for i, a in enumerate(cells):
        for b in cells[i + 1 :]:
            if max(abs(a[0] - b[0]), abs(a[1] - b[1])) < 2:
                return False
    return True


# ---------------------------------------------------------------------------------------------
# Sampling scenes and captions


def sample_scene(rng: random.Random, held_out: bool = False) -> Scene:
    """A random scene. With held_out False (training) no object is a held-out pair or layout."""
    bg = rng.choice(COLOURS)
    pattern = rng.choices(BACKGROUNDS, weights=(0.45, 0.2, 0.2, 0.15))[0]
    n = rng.choices((1, 2, 3), weights=(0.7, 0.2, 0.1))[0]
    while True:
        positions = rng.sample(POSITIONS, n)
        if n == 1 or far_apart(positions):
            break
    colours = rng.sample([c for c in COLOURS if c != bg], n)
    objs = []
    for pos, col in zip(positions, colours):
        for _ in range(100):
            obj = Obj(rng.choice(SHAPES), col, rng.choice(tuple(SIZES)), pos)
            if held_out or not is_held_out(obj):
                break
        else:  # pragma: no cover - every colour and position has allowed shapes
            raise RuntimeError("no allowed shape")
        objs.append(obj)
    return Scene(bg, pattern, tuple(objs), rng.randrange(1 << 30))


def _bg_words(scene: Scene, rng: random.Random) -> str:
    c = scene.background
    if scene.pattern == "plain" or rng.random() < 0.3:
        return c
    return {"gradient": f"{c} gradient", "striped": f"striped {c}", "checkered": f"checkered {c}"}[scene.pattern]


def _obj_words(obj: Obj, rng: random.Random, with_size: bool) -> str:
    return f"{obj.size} {obj.colour} {obj.shape}" if with_size else f"{obj.colour} {obj.shape}"


def _at(position: str) -> str:
    return "in the center" if position == "center" else f"at the {position}"


def caption(
    scene: Scene, rng: random.Random, empty_rate: float = EMPTY_CAPTION_RATE, canonical_rate: float = 0.0
) -> str:
    """One caption for the scene, in one of several phrasings (or empty, at empty_rate).

    With canonical_rate > 0, that fraction of the non-empty captions uses the evaluation's own
    phrasing (prompt_for) when the scene has a single object on a plain background.
    """
    if rng.random() < empty_rate:
        return ""
    if canonical_rate and len(scene.objects) == 1 and scene.pattern == "plain" and rng.random() < canonical_rate:
        return prompt_for(scene.objects[0], scene.background)
    bg = _bg_words(scene, rng)
    with_size = rng.random() < 0.6
    objs = list(scene.objects)
    form = rng.randrange(4)
    if form == 0:  # a large red circle at the top left on a blue background
        parts = [f"a {_obj_words(o, rng, with_size)} {_at(o.position)}" for o in objs]
        return f"{' and '.join(parts)} on a {bg} background"
    if form == 1:  # blue background, large red circle top left
        parts = [f"{_obj_words(o, rng, with_size)} {o.position}" for o in objs]
        return f"{bg} background, {', '.join(parts)}"
    if form == 2:  # red circle, top left, blue background
        parts = [f"{_obj_words(o, rng, with_size)}, {o.position}" for o in objs]
        return f"{', '.join(parts)}, {bg} background"
    # a picture of a red circle at the top left, blue background
    parts = [f"a {_obj_words(o, rng, with_size)} {_at(o.position)}" for o in objs]
    return f"a picture of {' and '.join(parts)}, {bg} background"


def prompt_for(obj: Obj, background: str) -> str:
    """The canonical phrasing used by the evaluation."""
    return f"a {obj.size} {obj.colour} {obj.shape} {_at(obj.position)} on a {background} background"


# ---------------------------------------------------------------------------------------------
# Rendering


def _shade(rgb: tuple[int, int, int], amount: float) -> np.ndarray:
    """Mix towards white (towards black for white) by amount: stays nearest to the same colour."""
    c = np.asarray(rgb, np.float32)
    target = np.zeros(3, np.float32) if min(rgb) > 200 else np.full(3, 255.0, np.float32)
    return c + (target - c) * amount


def _background(scene: Scene) -> np.ndarray:
    prng = random.Random(scene.pattern_seed)
    base = _shade(PALETTE[scene.background], 0.0)
    alt = _shade(PALETTE[scene.background], 0.16)
    if scene.pattern == "plain":
        return np.broadcast_to(base, (SIZE, SIZE, 3)).copy()
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32) / SIZE
    if scene.pattern == "gradient":
        ang = prng.uniform(0, 2 * np.pi)
        t = (np.cos(ang) * (xx - 0.5) + np.sin(ang) * (yy - 0.5)) / 1.42 + 0.5
        t = np.clip(t, 0, 1)[..., None]
        return base * (1 - t) + alt * t
    # striped / checkered: draw at SS× and box-filter for clean edges
    big = SIZE * SS
    period = prng.choice((12, 16, 20)) * SS
    im = Image.new("L", (big, big), 0)
    d = ImageDraw.Draw(im)
    if scene.pattern == "striped":
        vertical = prng.random() < 0.5
        for k in range(0, big, period):
            box = (k, 0, k + period // 2 - 1, big) if vertical else (0, k, big, k + period // 2 - 1)
            d.rectangle(box, fill=255)
    else:
        for i in range(0, big, period):
            for j in range(0, big, period):
                if ((i + j) // period) % 2 == 0:
                    d.rectangle((i, j, i + period - 1, j + period - 1), fill=255)
    m = np.asarray(im.resize((SIZE, SIZE), Image.Resampling.BOX), np.float32)[..., None] / 255.0
    return base * (1 - m) + alt * m


def _shape_polygon(shape: str, cx: float, cy: float, d: float) -> list[tuple[float, float]] | None:
    r = d / 2
    if shape == "triangle":
        return [(cx, cy - r), (cx + r, cy + r * 0.85), (cx - r, cy + r * 0.85)]
    if shape == "star":
        pts = []
        for k in range(10):
            rad = r if k % 2 == 0 else r * 0.42
            a = -np.pi / 2 + k * np.pi / 5
            pts.append((cx + rad * np.cos(a), cy + 0.08 * r + rad * np.sin(a)))
        return pts
    return None


def object_mask(obj: Obj, jitter: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """The object's coverage (0..1) on the SIZE×SIZE canvas, anti-aliased."""
    big = SIZE * SS
    row, col = _cell(obj.position)
    cx = (GRID[col] * SIZE + jitter[0]) * SS
    cy = (GRID[row] * SIZE + jitter[1]) * SS
    d = SIZES[obj.size] * SS
    r = d / 2
    im = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(im)
    if obj.shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
    elif obj.shape == "ring":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=255)
        ri = r * 0.55
        draw.ellipse((cx - ri, cy - ri, cx + ri, cy + ri), fill=0)
    elif obj.shape == "square":
        s = r * 0.86
        draw.rectangle((cx - s, cy - s, cx + s, cy + s), fill=255)
    elif obj.shape == "cross":
        s, w = r * 0.95, r * 0.95 / 3
        draw.rectangle((cx - s, cy - w, cx + s, cy + w), fill=255)
        draw.rectangle((cx - w, cy - s, cx + w, cy + s), fill=255)
    else:
        polygon = _shape_polygon(obj.shape, cx, cy, d)
        assert polygon is not None, obj.shape
        draw.polygon(polygon, fill=255)
    return np.asarray(im.resize((SIZE, SIZE), Image.Resampling.BOX), np.float32) / 255.0


def render(scene: Scene) -> Image.Image:
    """The scene as a SIZE×SIZE RGB image (objects jittered a few pixels, seeded by the scene)."""
    prng = random.Random(scene.pattern_seed + 1)
    img = _background(scene)
    for obj in scene.objects:
        jitter = (prng.uniform(-5, 5), prng.uniform(-5, 5))
        m = object_mask(obj, jitter)[..., None]
        img = img * (1 - m) + np.asarray(PALETTE[obj.colour], np.float32) * m
    return Image.fromarray(np.clip(img + 0.5, 0, 255).astype(np.uint8), "RGB")


def make_sample(seed: int, held_out: bool = False) -> Sample:
    """The training sample number `seed`: deterministic for a given seed."""
    rng = random.Random(seed)
    scene = sample_scene(rng, held_out=held_out)
    return Sample(scene, caption(scene, rng), render(scene))


def eval_prompts(n_per_rule: int = 3, seed: int = 1234) -> list[tuple[Obj, str, str]]:
    """Held-out single-object prompts: (object, background colour, prompt).

    For every held-out colour–shape pair and every held-out shape–position layout, n_per_rule
    prompts with the remaining attributes drawn at random (medium or large objects, and a
    background colour other than the object's).
    """
    rng = random.Random(seed)
    out = []
    for colour, shape in sorted(HELD_OUT_PAIRS):
        for _ in range(n_per_rule):
            pos = rng.choice([p for p in POSITIONS if (shape, p) not in HELD_OUT_LAYOUTS])
            obj = Obj(shape, colour, rng.choice(("medium", "large")), pos)
            bg = rng.choice([c for c in COLOURS if c != colour])
            out.append((obj, bg, prompt_for(obj, bg)))
    for shape, pos in sorted(HELD_OUT_LAYOUTS):
        for _ in range(n_per_rule):
            colour = rng.choice([c for c in COLOURS if (c, shape) not in HELD_OUT_PAIRS])
            obj = Obj(shape, colour, rng.choice(("medium", "large")), pos)
            bg = rng.choice([c for c in COLOURS if c != colour])
            out.append((obj, bg, prompt_for(obj, bg)))
    return out


def combo_key(obj: Obj, background: str) -> str:
    """How an object's colour–shape–background combination is named in results: "green star on blue"."""
    return f"{obj.colour} {obj.shape} on {background}"


def combo_prompts(n_per_combo: int = 1, seed: int = 4321) -> list[tuple[Obj, str, str]]:
    """Single-object prompts for every colour–shape–background combination training shows.

    One entry per combination and draw (8 colours × 6 shapes × 7 backgrounds, less the held-out
    colour–shape pairs: 294), at a position that is not a held-out layout for the shape, medium
    or large. Unlike eval_prompts() these test what was trained, to find the combinations the
    model gets wrong (train_demo --focus trains more on those).
    """
    rng = random.Random(seed)
    out = []
    for colour in COLOURS:
        for shape in SHAPES:
            if (colour, shape) in HELD_OUT_PAIRS:
                continue
            for bg in COLOURS:
                if bg == colour:
                    continue
                for _ in range(n_per_combo):
                    pos = rng.choice([p for p in POSITIONS if (shape, p) not in HELD_OUT_LAYOUTS])
                    obj = Obj(shape, colour, rng.choice(("medium", "large")), pos)
                    out.append((obj, bg, prompt_for(obj, bg)))
    return out


# ---------------------------------------------------------------------------------------------
# Detector

_PAL = np.asarray([PALETTE[c] for c in COLOURS], np.float32)


@dataclass(frozen=True)
class Detected:
    colour: str
    shape: str
    position: str
    area: int
    features: tuple[float, ...] = ()


@dataclass(frozen=True)
class Detection:
    background: str
    objects: tuple[Detected, ...]

    def main(self) -> Detected | None:
        """The largest object found, if any."""
        return max(self.objects, key=lambda o: o.area) if self.objects else None


def classify_pixels(rgb: np.ndarray) -> np.ndarray:
    """Index into COLOURS of the nearest palette colour, per pixel."""
    x = rgb.reshape(-1, 1, 3).astype(np.float32)
    dist = ((x - _PAL[None]) ** 2).sum(-1)
    return dist.argmin(-1).reshape(rgb.shape[:2])


def _label(mask: np.ndarray) -> np.ndarray:
    """4-connected component labels (0 = background) by iterated min-propagation."""
    h, w = mask.shape
    big = h * w + 1
    lab = np.where(mask, np.arange(1, h * w + 1).reshape(h, w), big)
    while True:
        p = np.pad(lab, 1, constant_values=big)
        nb = np.minimum.reduce([p[1:-1, 1:-1], p[:-2, 1:-1], p[2:, 1:-1], p[1:-1, :-2], p[1:-1, 2:]])
        nb = np.where(mask, nb, big)
        if np.array_equal(nb, lab):
            break
        lab = nb
    return np.where(mask, lab, 0)


def _erode(mask: np.ndarray) -> np.ndarray:
    p = np.pad(mask, 1, constant_values=False)
    return p[1:-1, 1:-1] & p[:-2, 1:-1] & p[2:, 1:-1] & p[1:-1, :-2] & p[1:-1, 2:]


def _dilate(mask: np.ndarray) -> np.ndarray:
    p = np.pad(mask, 1, constant_values=False)
    return p[1:-1, 1:-1] | p[:-2, 1:-1] | p[2:, 1:-1] | p[1:-1, :-2] | p[1:-1, 2:]


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """The mask with every region that the outside cannot reach filled in."""
    free = np.pad(~mask, 1, constant_values=True)
    outside = np.zeros_like(free)
    outside[0, :] = outside[-1, :] = outside[:, 0] = outside[:, -1] = True
    while True:
        grown = _dilate(outside) & free
        if np.array_equal(grown, outside):
            break
        outside = grown
    return ~outside[1:-1, 1:-1]


def _hull_area(points: np.ndarray) -> float:
    """Area of the convex hull of (x, y) points (Andrew's monotone chain + shoelace)."""
    pts = sorted(set(map(tuple, points.tolist())))
    if len(pts) < 3:
        return 0.0

    def cross(o, a, b):
        return (a[0] - o[0]) * (b[1] - o[1]) - (a[1] - o[1]) * (b[0] - o[0])

    lower: list = []
    for p in pts:
        while len(lower) >= 2 and cross(lower[-2], lower[-1], p) <= 0:
            lower.pop()
        lower.append(p)
    upper: list = []
    for p in reversed(pts):
        while len(upper) >= 2 and cross(upper[-2], upper[-1], p) <= 0:
            upper.pop()
        upper.append(p)
    hull = np.asarray(lower[:-1] + upper[:-1], np.float64)
    x, y = hull[:, 0], hull[:, 1]
    return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def radial_harmonics(filled: np.ndarray, edge: np.ndarray, bins: int = 72) -> tuple[float, float, float]:
    """The 3-, 4- and 5-fold harmonics of a filled region's outline (`edge`, its boundary pixels), as
    fractions of its mean radius.

    The outline's distance from the centroid is taken in `bins` directions (the farthest edge
    pixel in each); the amplitude of its k-th Fourier harmonic is how strongly the outline repeats
    k times around the centre. A drawn star has a 5-fold amplitude of 0.30-0.37 and a cross a
    4-fold one of 0.33-0.38 (the others < 0.05), a triangle 3-fold 0.29, a square 4-fold 0.15, a
    circle or ring none. Unlike solidity and extent, the count of points survives rounded tips: a
    star whose points a decoder has blurred keeps five lobes (0.2-0.35), which hull measures read
    as a cross's.
    """
    ys, xs = np.nonzero(filled)
    cy, cx = ys.mean() + 0.5, xs.mean() + 0.5
    ey, ex = np.nonzero(edge)
    dy, dx = ey + 0.5 - cy, ex + 0.5 - cx
    which = ((np.arctan2(dy, dx) + np.pi) / (2 * np.pi) * bins).astype(int) % bins
    radius = np.zeros(bins)
    np.maximum.at(radius, which, np.hypot(dy, dx))
    seen = np.nonzero(radius > 0)[0]
    radius = np.interp(np.arange(bins), seen, radius[seen], period=bins)
    amp = np.abs(np.fft.rfft(radius / radius.mean() - 1.0)) * 2 / bins
    return float(amp[3]), float(amp[4]), float(amp[5])


def shape_features(mask: np.ndarray) -> tuple[float, ...]:
    """(extent, solidity, hole fraction, vertical skew, 3-, 4-, 5-fold harmonic) of one region.

    extent = filled area / bounding-box area; solidity = filled area / convex-hull area (hull of
    the pixel corners); hole fraction = enclosed background / filled area; skew = the normalised
    third central moment of the rows (a triangle pointing up has its mass low: positive skew);
    the harmonics are `radial_harmonics` of the filled region.
    """
    filled = _fill_holes(mask)
    area = float(filled.sum())
    ys, xs = np.nonzero(filled)
    h = ys.max() - ys.min() + 1
    w = xs.max() - xs.min() + 1
    extent = area / float(h * w)
    edge = filled & ~_erode(filled)
    ey, ex = np.nonzero(edge)
    corners = np.concatenate([np.stack([ex + dx, ey + dy], 1) for dx in (0, 1) for dy in (0, 1)], 0)
    solidity = area / max(_hull_area(corners), 1.0)
    hole = (area - float(mask.sum())) / area
    yc = ys - ys.mean()
    skew = float((yc**3).mean() / max((yc**2).mean(), 1e-6) ** 1.5)
    return (extent, solidity, hole, skew, *radial_harmonics(filled, edge))


LOBES = 0.15  # a harmonic this strong (half a drawn star's or cross's) and the strongest: k lobes


def classify_shape(features: tuple[float, ...]) -> str:
    extent, solidity, hole, skew, h3, h4, h5 = features
    if hole > 0.1:
        return "ring"
    if h5 >= LOBES and h5 > max(h3, h4):  # five points, even with rounded tips
        return "star"
    if solidity > 0.86:
        if skew < -0.25 or skew > 0.25 or extent < 0.63:
            return "triangle"
        return "square" if extent > 0.87 else "circle"
    if h4 >= LOBES and h4 > max(h3, h5):
        return "cross"
    return "cross" if solidity + extent > 1.2 else "star"


def position_of(cx: float, cy: float, size: int = SIZE) -> str:
    col = 0 if cx < BOUNDS[0] * size else (1 if cx < BOUNDS[1] * size else 2)
    row = 0 if cy < BOUNDS[0] * size else (1 if cy < BOUNDS[1] * size else 2)
    return POSITIONS[row * 3 + col]


def detect(image: Image.Image | np.ndarray, min_area: int = 60) -> Detection:
    """Background colour and the objects on it (colour, shape, position) of a scene image."""
    rgb = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image)
    size = rgb.shape[0]
    cls = classify_pixels(rgb)
    counts = np.bincount(cls.ravel(), minlength=len(COLOURS))
    bg = int(counts.argmax())
    fg = _erode(cls != bg)  # drop one-pixel rims of blended colour at edges
    fg = _dilate(fg) & (cls != bg)
    labels = _label(fg)
    objs = []
    for lab in np.unique(labels):
        if lab == 0:
            continue
        m = labels == lab
        area = int(m.sum())
        if area < min_area:
            continue
        colour = COLOURS[int(np.bincount(cls[m], minlength=len(COLOURS)).argmax())]
        feats = shape_features(m)
        ys, xs = np.nonzero(_fill_holes(m))
        cy = (ys.min() + ys.max() + 1) / 2
        cx = (xs.min() + xs.max() + 1) / 2
        objs.append(Detected(colour, classify_shape(feats), position_of(cx, cy, size), area, feats))
    return Detection(COLOURS[bg], tuple(objs))


def stripe_score(image: Image.Image | np.ndarray) -> float:
    """How striped the background is (the demo LoRA's style), in grey levels.

    The rows and the columns of background pixels are averaged; the score is the larger of the
    two profiles' jumps from one line to the next (mean absolute difference), so a smooth gradient
    scores ~0, and stripes (period 12-20 px, contrast ~16 % towards white) score several levels.
    """
    rgb = np.asarray(image.convert("RGB") if isinstance(image, Image.Image) else image).astype(np.float32)
    cls = classify_pixels(rgb)
    bg = cls == np.bincount(cls.ravel()).argmax()
    grey = rgb.mean(-1)
    best = 0.0
    for axis in (0, 1):
        counts = bg.sum(axis=1 - axis)
        sums = np.where(bg, grey, 0).sum(axis=1 - axis)
        ok = counts >= 0.25 * bg.shape[1 - axis]
        profile = sums[ok] / counts[ok]
        if len(profile) > 8:
            best = max(best, float(np.abs(np.diff(profile)).mean()))
    return best
