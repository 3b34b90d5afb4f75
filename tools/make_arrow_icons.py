"""Draw the small arrow images the dark theme uses for spin-box and combo-box buttons
(`resources/icons/arrow-{up,down}[-disabled][@2x].png`). Run from the repository root:

    .venv/bin/python tools/make_arrow_icons.py
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

OUT = Path(__file__).resolve().parents[1] / "resources" / "icons"
SIZE = (10, 6)  # logical pixels; the @2x file is twice as large
COLOURS = {"": (215, 219, 227, 255), "-disabled": (93, 99, 112, 255)}  # theme text / disabled text
SUPER = 8  # drawn large, then scaled down: smooth edges


def arrow(direction: str, colour: tuple[int, int, int, int], scale: int) -> Image.Image:
    w, h = SIZE[0] * scale * SUPER, SIZE[1] * scale * SUPER
    im = Image.new("RGBA", (w, h), (0, 0, 0, 0))
    pts = [(0, h), (w / 2, 0), (w, h)] if direction == "up" else [(0, 0), (w / 2, h), (w, 0)]
    ImageDraw.Draw(im).polygon(pts, fill=colour)
    return im.resize((SIZE[0] * scale, SIZE[1] * scale), Image.Resampling.LANCZOS)


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for direction in ("up", "down"):
        for suffix, colour in COLOURS.items():
            for scale, tag in ((1, ""), (2, "@2x")):
                arrow(direction, colour, scale).save(OUT / f"arrow-{direction}{suffix}{tag}.png", optimize=True)


if __name__ == "__main__":
    main()
