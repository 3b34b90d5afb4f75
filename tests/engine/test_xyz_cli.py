"""`studio generate --xyz`: every cell into the gallery under one run id, the labelled grid with its
own provenance to --out; a bad axis is one line and nothing is made."""

import json

from PIL import Image

from studio.cli import main
from studio.core import grid
from studio.core.gallery import Gallery
from studio.core.metadata import read_metadata


def _args(model, out, lib, *extra):
    return ["generate", "--model", str(model), "--prompt", "a red circle", "--steps", "2", "--size", "64x64",
            "--seed", "9", "--out", str(out), "--library", str(lib), *extra]  # fmt: skip


def test_xyz_grid_and_six_gallery_images(tiny_sd15, tmp_path, capsys):
    out, lib = tmp_path / "plot.png", tmp_path / "lib"
    assert main(_args(tiny_sd15, out, lib, "--xyz", "cfg=1,4,7", "--xyz", "seed=1,2", "--json")) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["status"] == "done" and summary["grid"] == str(out) and len(summary["cells"]) == 6
    w, h = Image.open(out).size
    assert w >= 3 * 64 and h >= 2 * 64
    with Gallery(lib) as g:
        items = g.query()
        assert len(items) == 6 and len({i.run_id for i in items}) == 1
        by_id = {i.id: i for i in items}
    record = grid.read_record(out)
    assert [a["field"] for a in record["axes"]] == ["cfg", "seed"]
    for cell in record["cells"]:
        item = by_id[cell["gallery_ids"][0]]
        assert (item.request.guidance_scale, item.seed) == (cell["values"]["cfg"], cell["values"]["seed"])
        assert item.sha256 == cell["sha256"][0]
        assert read_metadata(item.path).request == item.request  # each cell carries its own recipe
    assert "X Type: CFG scale" in Image.open(out).text["parameters"]


def test_xyz_without_gallery_writes_the_cells_beside_the_grid(tiny_sd15, tmp_path):
    out, lib = tmp_path / "p.png", tmp_path / "lib"
    assert main(_args(tiny_sd15, out, lib, "--xyz", "steps=1,2", "--no-gallery")) == 0
    cells = sorted(p.name for p in (tmp_path / "p-cells").iterdir())
    assert cells == ["cell-0-0-0.png", "cell-1-0-0.png"]
    assert read_metadata(tmp_path / "p-cells" / "cell-1-0-0.png").request.steps == 2
    assert not (lib / "gallery.sqlite3").exists() or not Gallery(lib).query()


def test_bad_axes_are_one_line_and_make_nothing(tiny_sd15, tmp_path, capsys):
    out, lib = tmp_path / "p.png", tmp_path / "lib"
    for axis, words in (("colour=1,2", "unknown plot axis"), ("cfg=1,99", "cfg=99"), ("size=60x64", "multiple of 8")):
        assert main(_args(tiny_sd15, out, lib, "--xyz", axis)) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and "\n" not in err
    assert not out.exists()
