"""Search latency at scale: fill a temporary library with N rows and time FTS queries."""

from __future__ import annotations

import random
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from studio.core.gallery.store import Gallery
from studio.core.request import GenerationRequest

_WORDS = [
    "castle",
    "dragon",
    "forest",
    "river",
    "portrait",
    "woman",
    "man",
    "cat",
    "dog",
    "city",
    "night",
    "neon",
    "rain",
    "sunset",
    "mountain",
    "ocean",
    "ship",
    "robot",
    "knight",
    "wizard",
    "flower",
    "garden",
    "snow",
    "desert",
    "temple",
    "street",
    "cyberpunk",
    "watercolor",
    "oil",
    "painting",
    "photo",
    "cinematic",
    "lighting",
    "detailed",
    "sharp",
    "soft",
    "golden",
    "hour",
    "fog",
    "lantern",
    "bridge",
    "clock",
    "tower",
    "market",
    "crowd",
    "astronaut",
    "moon",
    "galaxy",
    "nebula",
    "library",
    "candle",
    "owl",
    "fox",
    "wolf",
    "bear",
]
_QUERIES = ("castle", "dragon forest", "neon rain", "golden hour portrait", "owl", "moon galaxy", "snow fox")


def fill(gallery: Gallery, n: int, seed: int = 0) -> None:
    """Insert n rows (no image files: only the database is being measured)."""
    rng = random.Random(seed)
    req_json = GenerationRequest.create(prompt="bench").to_json()
    now = time.time()
    models = ["sd15", "dreamshaper", "realistic-vision", "anything-v5"]
    kinds = ["txt2img"] * 6 + ["img2img", "inpaint", "outpaint", "branch"]
    with gallery._tx() as conn:  # one transaction: this is a fixture, not the save path
        for i in range(n):
            prompt = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(6, 30)))
            negative = " ".join(rng.choice(_WORDS) for _ in range(rng.randint(0, 8)))
            conn.execute(
                "INSERT INTO items (id, rel_path, created_at, kind, model, prompt, negative_prompt, "
                "loras, seed, width, height, request_json, sha256, favourite) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    uuid.uuid4().hex, f"bench/{i}.png", now - i * 60, rng.choice(kinds),
                    rng.choice(models), prompt, negative, rng.choice(["", "detail", "ink"]), i,
                    512, 512, req_json, "0" * 64, int(rng.random() < 0.1),
                ),
            )  # fmt: skip
            gallery._index(conn, conn.execute("SELECT last_insert_rowid()").fetchone()[0])


def run(rows: int = 10_000, repeats: int = 20, library: Path | None = None) -> dict[str, Any]:
    """Fill a (temporary) library with `rows` rows and time searches; milliseconds."""
    with tempfile.TemporaryDirectory(prefix="studio-bench-") as tmp:
        lib = Path(library) if library else Path(tmp) / "lib"
        with Gallery(lib) as g:
            t = time.perf_counter()
            fill(g, rows)
            fill_s = time.perf_counter() - t
            timings: dict[str, list[float]] = {}
            hits: dict[str, int] = {}
            cases: list[tuple[str, dict[str, Any]]] = [(q, {}) for q in _QUERIES] + [
                ("castle", {"model": "sd15", "favourite": None}),
                ("", {"kind": "img2img"}),
                ("dragon", {"limit": 200}),
            ]
            for q, filters in cases:
                label = q + (" " + " ".join(f"{k}={v}" for k, v in filters.items()) if filters else "")
                for _ in range(repeats):
                    t = time.perf_counter()
                    res = g.ids(q, **filters) if "limit" not in filters else g.query(q, **filters)
                    timings.setdefault(label.strip(), []).append((time.perf_counter() - t) * 1000)
                hits[label.strip()] = len(res)
            all_ms = [x for v in timings.values() for x in v]
            return {
                "rows": rows,
                "fill_s": round(fill_s, 2),
                "queries": {
                    k: {"median_ms": round(statistics.median(v), 2), "max_ms": round(max(v), 2), "hits": hits[k]}
                    for k, v in timings.items()
                },
                "median_ms": round(statistics.median(all_ms), 2),
                "p95_ms": round(sorted(all_ms)[int(len(all_ms) * 0.95) - 1], 2),
                "max_ms": round(max(all_ms), 2),
                "target_ms": 50,
            }
