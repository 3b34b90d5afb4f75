"""The gallery store: saving with provenance, search, filters, favourites, tags, trash, lineage, check."""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from studio.core.errors import GalleryError, GalleryItemNotFound
from studio.core.gallery import SCHEMA_VERSION, Gallery, fts_query, record_result
from studio.core.gallery.schema import DB_NAME, connect
from studio.core.metadata import export_image, read_metadata, verify
from studio.core.request import BranchRef, GenerationRequest, ImageRef, LoraRef
from studio.core.results import GenerationResult


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("STUDIO_LIBRARY", raising=False)


@pytest.fixture
def gallery(tmp_path):
    with Gallery(tmp_path / "lib") as g:
        yield g


def img(v: int = 0) -> np.ndarray:
    return np.random.default_rng(v).integers(0, 256, (16, 16, 3), dtype=np.uint8)


def add(g: Gallery, prompt: str, v: int = 0, **fields) -> object:
    info = fields.pop("info", {"sign": False})
    return g.add_image(img(v), GenerationRequest.create(prompt=prompt, seed=v, **fields), info=info)


def test_record_result_writes_each_image_once_with_provenance(tmp_path):
    req = GenerationRequest.create(prompt="a lighthouse in a storm", seed=10, batch_size=2)
    result = GenerationResult(
        request=req, images=[img(1), img(2)], seeds=[10, 11], model_name="tiny", model_hash="ab" * 32
    )
    out = tmp_path / "out.png"
    items = record_result(result, library=tmp_path / "lib", out_path=out)
    assert [i.seed for i in items] == [10, 11]
    assert len(list((tmp_path / "lib").rglob("*.png"))) == 2
    assert not out.exists()
    assert (tmp_path / "out-1.png").read_bytes() == items[0].path.read_bytes()
    assert (tmp_path / "out-2.png").read_bytes() == items[1].path.read_bytes()
    single = record_result(
        GenerationResult(request=GenerationRequest.create(prompt="one"), images=[img(3)]),
        library=tmp_path / "lib", out_path=tmp_path / "one.jpg",
    )  # fmt: skip
    assert read_metadata(tmp_path / "one.jpg").request == single[0].request
    assert verify(tmp_path / "one.jpg").state == "valid"
    meta = read_metadata(items[1].path)
    assert meta.request == req  # the request exactly as run: re-running it reproduces the batch
    assert (meta.batch_index, meta.normalised["seed"]) == (1, 11)
    assert "Seed: 11, Size: 512x512" in meta.raw["parameters"]
    assert "Batch size: 2, Batch pos: 1" in meta.raw["parameters"]
    jpg = export_image(items[1].path, tmp_path / "b.jpg")
    assert read_metadata(jpg).batch_index == 1
    assert meta.normalised["model_hash"] == "abababab" + "ab"
    assert verify(items[0].path).state == "valid"
    assert items[0].run_id == items[1].run_id and items[0].signed
    assert items[0].model == "tiny" and items[0].model_hash == "ab" * 32


def test_record_result_uses_library_dir_by_default(tmp_path, monkeypatch):
    monkeypatch.setenv("STUDIO_LIBRARY", str(tmp_path / "default-lib"))
    items = record_result(GenerationResult(request=GenerationRequest.create(prompt="x"), images=[img()]))
    assert items[0].path.parent.parent == tmp_path / "default-lib"


def test_database_settings_and_schema_version(gallery):
    conn = gallery.conn
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute("INSERT INTO tags VALUES ('no-such-item', 'x')")


def test_newer_schema_is_refused_and_reopen_keeps_data(tmp_path):
    lib = tmp_path / "lib"
    with Gallery(lib) as g:
        add(g, "kept")
    with Gallery(lib) as g:  # reopening runs no migration twice and loses nothing
        assert [i.prompt for i in g.query()] == ["kept"]
    raw = sqlite3.connect(lib / DB_NAME)
    raw.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(GalleryError, match="newer"):
        connect(str(lib / DB_NAME))


def test_fts_search_finds_by_words_in_the_prompt(gallery):
    a = add(gallery, "a red castle on a hill at dawn", 1)
    b = add(gallery, "portrait of an old fisherman", 2, negative_prompt="castle")
    c = add(gallery, "blue ocean waves", 3, loras=(LoraRef(name="watercolour", weight=0.8),))
    add(gallery, "a forest path", 4, model="dreamshaper")
    assert {i.id for i in gallery.search("castle")} == {a.id, b.id}  # negative prompt too
    assert [i.id for i in gallery.search("red castle")] == [a.id]  # every word must match
    assert [i.id for i in gallery.search("fisher")] == [b.id]  # prefix
    assert [i.id for i in gallery.search("watercolour")] == [c.id]  # LoRA names
    assert [i.prompt for i in gallery.search("dreamshaper")] == ["a forest path"]  # model
    assert gallery.search("submarine") == []
    assert len(gallery.search('"; DROP TABLE items; --')) == 0  # punctuation is not syntax
    gallery.add_tags(c.id, "seascape", "best")
    assert [i.id for i in gallery.search("seascape")] == [c.id]
    gallery.remove_tags(c.id, "seascape")
    assert gallery.search("seascape") == []
    assert gallery.get(c.id).tags == ["best"]
    assert fts_query("red, castle!") == '"red"* "castle"*'


def test_filters_and_sort(gallery, tmp_path):
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    old = add(gallery, "old one", 1, info={"sign": False, "created": t0})
    new = add(gallery, "new one", 2, info={"sign": False, "created": t0 + timedelta(days=10)})
    init = tmp_path / "in.png"
    init.write_bytes(new.path.read_bytes())
    edit = add(
        gallery, "edited one", 3,
        init_image=ImageRef(path=str(init)), strength=0.5,
        info={"sign": False, "created": t0 + timedelta(days=20)},
    )  # fmt: skip
    assert [i.id for i in gallery.query()] == [edit.id, new.id, old.id]
    assert [i.id for i in gallery.query(sort="oldest")] == [old.id, new.id, edit.id]
    assert [i.id for i in gallery.query(kind="img2img")] == [edit.id]
    assert [i.id for i in gallery.query(kind="txt2img", since=t0 + timedelta(days=1))] == [new.id]
    assert [i.id for i in gallery.query(until=t0 + timedelta(days=1))] == [old.id]
    gallery.set_favourite(new.id)
    assert [i.id for i in gallery.query(favourite=True)] == [new.id]
    assert [i.id for i in gallery.query("one", favourite=False)] == [edit.id, old.id]
    assert gallery.query(model="demo", limit=1, offset=1)[0].id == new.id
    assert gallery.count() == 3 and gallery.models() == ["demo"]
    with pytest.raises(GalleryError):
        gallery.query(kind="collage")


def test_get_by_prefix_and_not_found(gallery):
    item = add(gallery, "x")
    assert gallery.get(item.id[:6]).id == item.id
    with pytest.raises(GalleryItemNotFound):
        gallery.get("ffffffff")
    with pytest.raises(GalleryItemNotFound):
        gallery.get("")


def test_trash_restore_and_empty(gallery):
    keep, bin_ = add(gallery, "keep me", 1), add(gallery, "throw me", 2)
    gallery.trash(bin_.id)
    trashed = gallery.get(bin_.id)
    assert trashed.trashed and trashed.path.exists() and ".trash" in trashed.rel_path
    assert not bin_.path.exists()
    assert [i.id for i in gallery.query()] == [keep.id]
    assert gallery.search("throw") == [] and len(gallery.search("throw", trashed=True)) == 1
    gallery.restore(bin_.id)
    assert gallery.get(bin_.id).path == bin_.path and bin_.path.exists()
    gallery.trash(bin_.id)
    assert gallery.check().clean
    assert gallery.empty_trash() == 1
    assert not list((gallery.root / ".trash").rglob("*.png"))
    with pytest.raises(GalleryItemNotFound):
        gallery.get(bin_.id)
    assert gallery.check().clean


def test_lineage_input_image_and_branch(gallery):
    root_item = add(gallery, "root", 1)
    # img2img from the gallery file: the parent is found from the input's hash.
    child = add(
        gallery, "child", 2,
        init_image=ImageRef(path=str(root_item.path), sha256=root_item.sha256), strength=0.4,
    )  # fmt: skip
    assert child.parent_id == root_item.id and child.kind == "img2img"
    assert child.source_type == "compositeWithTrainedAlgorithmicMedia"
    # A branch from the child's run at step 7.
    run = gallery.add_image(img(3), GenerationRequest.create(prompt="run"), info={"sign": False}, run_id="run-42")
    branch = add(gallery, "branch", 4, branch=BranchRef(parent_id="run-42", step=7))
    assert branch.kind == "branch" and (branch.branch_run, branch.branch_step) == ("run-42", 7)
    assert [i.id for i in gallery.lineage(branch.id)] == [branch.id, run.id]
    grandchild = add(gallery, "grandchild", 5, init_image=ImageRef(path=str(child.path)))
    assert [i.id for i in gallery.lineage(grandchild.id)] == [grandchild.id, child.id, root_item.id]
    assert [i.id for i in gallery.children(root_item.id)] == [child.id]
    assert [i.id for i in gallery.children(run.id)] == [branch.id]
    # Deleting a parent for good leaves the child, unlinked.
    gallery.trash(root_item.id)
    gallery.empty_trash()
    assert gallery.get(child.id).parent_id is None


def test_check_finds_and_repairs_problems(gallery):
    a, b, c, d = (add(gallery, f"item {n}", n) for n in range(4))
    assert gallery.check().clean
    a.path.unlink()  # missing file
    b.path.write_bytes(b.path.read_bytes() + b"junk")  # changed file
    moved = gallery.root / "elsewhere" / c.path.name  # moved by hand
    moved.parent.mkdir()
    c.path.rename(moved)
    stray = gallery.root / "stray.png"  # our file, no row (e.g. a restored backup)
    stray.write_bytes(d.path.read_bytes())
    (gallery.root / "2026-01").mkdir(exist_ok=True)
    dead_tmp = gallery.root / "2026-01" / ".x.png.999999999.abcd.tmp"  # writer long gone
    dead_tmp.write_bytes(b"half")
    report = gallery.check()
    assert not report.clean
    assert set(report.missing) == {a.id, c.id}
    assert report.bad_hashes == [b.id]
    assert set(report.orphans) == {"stray.png", f"elsewhere/{c.path.name}"}
    assert report.temp_files == ["2026-01/.x.png.999999999.abcd.tmp"]
    fixed = gallery.check(repair=True)
    assert fixed.repaired and not dead_tmp.exists()
    assert gallery.get(c.id).path == moved
    with pytest.raises(GalleryItemNotFound):
        gallery.get(a.id)
    assert any(i.path == stray for i in gallery.query())
    after = gallery.check()
    assert after.bad_hashes == [b.id]  # a changed file is reported, never silently accepted
    assert not (after.missing or after.orphans or after.temp_files or after.pending)


def test_interrupted_save_is_rolled_forward_or_back(tmp_path):
    lib = tmp_path / "lib"
    with Gallery(lib) as g:
        done = add(g, "finished", 1)
        lost = add(g, "lost", 2)
        # Simulate two writers killed after the intent row: one after the rename, one before.
        g.conn.execute(
            "UPDATE items SET state = 'pending', writer_pid = 999999999 WHERE id IN (?, ?)",
            (done.id, lost.id),
        )
        lost.path.unlink()
        assert set(g.check().pending) == {done.id, lost.id}
    with Gallery(lib) as g:  # opening recovers
        assert [i.id for i in g.query()] == [done.id]
        assert g.search("finished")[0].id == done.id
        assert g.check().clean


def test_thumbnails_are_cached(gallery):
    item = add(gallery, "thumb", 1)
    thumb = gallery.thumbnail(item.id, 8)
    assert thumb.exists() and thumb.parent.name == ".thumbs"
    mtime = thumb.stat().st_mtime_ns
    time.sleep(0.01)
    assert gallery.thumbnail(item.id, 8).stat().st_mtime_ns == mtime
    from PIL import Image

    with Image.open(thumb) as im:
        assert max(im.size) <= 8


def test_items_describe_their_recipe(gallery):
    item = add(gallery, "a cat", 3, steps=12)
    words = item.describe()
    assert "a cat" in words and "12 steps" in words and "seed 3" in words
    d = item.to_dict()
    assert d["request"]["prompt"] == "a cat" and d["id"] == item.id


def test_signing_failure_never_loses_the_image(tmp_path, monkeypatch):
    bogus = tmp_path / "bogus.pem"
    bogus.write_text("not a certificate")
    monkeypatch.setenv("STUDIO_C2PA_CERT", str(bogus))
    monkeypatch.setenv("STUDIO_C2PA_KEY", str(bogus))
    result = GenerationResult(request=GenerationRequest.create(prompt="keep me anyway"), images=[img(1)])
    (item,) = record_result(result, library=tmp_path / "lib")
    assert not item.signed
    assert read_metadata(item.path).request.prompt == "keep me anyway"
    assert verify(item.path).state == "missing"


def test_gallery_and_metadata_stay_plain_python():
    import subprocess
    import sys

    code = (
        "import sys, studio.core.gallery, studio.core.metadata, studio.core.hashing, "
        "studio.core.gallery.search_bench, studio.cli.gallery, studio.cli.metadata\n"
        "studio.core.metadata.provenance.ensure_identity\n"
        "bad = [m for m in ('PySide6', 'torch', 'diffusers', 'studio.qt', 'studio.engine') if m in sys.modules]\n"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_unwritable_out_path_is_a_clean_error_and_keeps_the_gallery_copy(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = GenerationResult(request=GenerationRequest.create(prompt="kept"), images=[img(1)])
    with pytest.raises(GalleryError, match="could not write"):
        record_result(result, library=tmp_path / "lib", out_path=blocker / "sub" / "out.png")
    with Gallery(tmp_path / "lib") as g:
        assert [i.prompt for i in g.query()] == ["kept"] and g.check().clean


def test_migrations_upgrade_an_existing_library(tmp_path, monkeypatch):
    from studio.core.gallery import schema

    lib = tmp_path / "lib"
    with Gallery(lib) as g:
        item = add(g, f"made under schema {schema.SCHEMA_VERSION}")
    n = schema.SCHEMA_VERSION
    nxt = (
        "ALTER TABLE items ADD COLUMN rating INTEGER NOT NULL DEFAULT 0;\nCREATE INDEX items_rating ON items (rating);"
    )
    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, (n + 1, nxt)])
    monkeypatch.setattr(schema, "SCHEMA_VERSION", n + 1)
    with Gallery(lib) as g:
        assert g.conn.execute("PRAGMA user_version").fetchone()[0] == n + 1
        assert g.conn.execute("SELECT rating FROM items WHERE id = ?", (item.id,)).fetchone()[0] == 0
        assert g.search("schema")[0].id == item.id
    # A migration that fails leaves the library as it was.
    monkeypatch.setattr(schema, "MIGRATIONS", [*schema.MIGRATIONS, (n + 2, "ALTER TABLE nope ADD COLUMN x;")])
    monkeypatch.setattr(schema, "SCHEMA_VERSION", n + 2)
    with pytest.raises(GalleryError):
        Gallery(lib)
    raw = sqlite3.connect(lib / DB_NAME)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == n + 1
    raw.close()


def test_a_schema_1_library_gains_the_queue_and_keeps_its_images(tmp_path):
    """Libraries made before the upscale kind and the durable queue (schema 1) open with both."""
    from studio.core.gallery import schema

    lib = tmp_path / "lib"
    lib.mkdir()
    raw = sqlite3.connect(lib / DB_NAME)
    for statement in schema._statements(schema.MIGRATIONS[0][1]):
        raw.execute(statement)
    raw.execute("PRAGMA user_version = 1")
    raw.commit()
    raw.close()
    with Gallery(lib) as g:
        add(g, "an image from before the queue")
        assert g.conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION >= 2
        assert g.conn.execute("SELECT count(*) FROM jobs").fetchone()[0] == 0
        assert g.check().clean


def test_the_split_store_keeps_its_public_names():
    """store.py was split into schema / items / search / check / images: what other code imports
    from studio.core.gallery and studio.core.gallery.store is still there, and is the same object."""
    import studio.core.gallery as pkg
    from studio.core.gallery import check, images, items, search, store

    assert {"KINDS", "SCHEMA_VERSION", "CheckReport", "Gallery", "GalleryItem", "fts_query", "record_result"} <= set(
        pkg.__all__
    )
    for name in pkg.__all__:
        assert getattr(pkg, name) is not None
    assert store.GalleryItem is items.GalleryItem and pkg.GalleryItem is items.GalleryItem
    assert store.CheckReport is check.CheckReport and store.fts_query is search.fts_query
    assert store.make_thumbnail is images.make_thumbnail and store.write_copy is images.write_copy
    assert store.THUMBS_DIR == ".thumbs" and store.TRASH_DIR == ".trash" and callable(store.item_json)
    assert {"recover", "check", "query", "search", "ids", "trash", "restore", "lineage", "thumbnail"} <= set(
        dir(store.Gallery)
    )
