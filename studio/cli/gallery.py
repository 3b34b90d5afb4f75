"""`studio gallery …`: list, search, show, check and benchmark the image library."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from pathlib import Path

from studio.cli import positive_int


def register(sub: argparse._SubParsersAction) -> None:
    gal = sub.add_parser("gallery", help="the library of generated images")
    gal.add_argument("--library", type=Path, default=None, help="library folder (default: the studio's)")
    gsub = gal.add_subparsers(dest="gallery_command", metavar="GALLERY_COMMAND", required=True)

    def filters(p: argparse.ArgumentParser) -> None:
        p.add_argument("--model", help="only this model")
        p.add_argument("--kind", choices=["txt2img", "img2img", "inpaint", "outpaint", "branch", "upscale"])
        p.add_argument("--favourites", action="store_true", help="only favourites")
        p.add_argument("--tag", help="only images with this tag")
        p.add_argument("--since", help="only images made on or after this date (YYYY-MM-DD)")
        p.add_argument("--trash", action="store_true", help="list the trash instead")
        p.add_argument("--oldest", action="store_true", help="oldest first")
        p.add_argument("--limit", type=positive_int, default=50)
        p.add_argument("--json", action="store_true", help="machine-readable output")

    lst = gsub.add_parser("list", help="newest images first")
    filters(lst)
    lst.set_defaults(func=_list, query=None)

    srch = gsub.add_parser("search", help="full-text search of prompts, models, LoRAs and tags")
    srch.add_argument("query")
    filters(srch)
    srch.set_defaults(func=_list)

    show = gsub.add_parser("show", help="one image's recipe, lineage and provenance")
    show.add_argument("id", help="image id (a unique prefix will do)")
    show.add_argument("--json", action="store_true")
    show.set_defaults(func=_show)

    chk = gsub.add_parser(
        "check", help="compare files with the database, and the images' kept steps with their manifests"
    )
    chk.add_argument("--repair", action="store_true", help="fix what can be fixed")
    chk.add_argument("--no-hashes", action="store_true", help="skip re-hashing every file")
    chk.add_argument("--json", action="store_true")
    chk.set_defaults(func=_check)

    bench = gsub.add_parser("bench", help="search latency with 10,000 rows in a temporary library")
    bench.add_argument("--rows", type=positive_int, default=10_000)
    bench.add_argument("--json", action="store_true")
    bench.set_defaults(func=_bench)


def _open(args: argparse.Namespace):
    from studio.core.gallery import Gallery

    return Gallery(args.library)


def _list(args: argparse.Namespace) -> int:
    from studio.core.errors import StudioError

    since = None
    if args.since:
        try:
            since = datetime.fromisoformat(args.since).astimezone()
        except ValueError:
            raise StudioError(f"--since {args.since!r} is not a date", "Use YYYY-MM-DD.") from None
    with _open(args) as g:
        items = g.query(
            args.query, model=args.model, kind=args.kind,
            favourite=True if args.favourites else None, tag=args.tag, since=since,
            trashed=args.trash, sort="oldest" if args.oldest else "newest", limit=args.limit,
        )  # fmt: skip
    if args.json:
        print(json.dumps([i.to_dict() for i in items], ensure_ascii=False, indent=2))
        return 0
    for i in items:
        badge = "AI+edit" if i.is_composite else "AI"
        star = "★" if i.favourite else " "
        prompt = i.prompt.replace("\n", " ")
        prompt = prompt if len(prompt) <= 60 else prompt[:59] + "…"
        when = f"{i.created.astimezone():%Y-%m-%d %H:%M}"
        print(f"{i.id[:12]} {star} {when} {i.kind:8} {badge:7} {i.model[:20]:20} {prompt}")
    if not items:
        print("no images")
    return 0


def _show(args: argparse.Namespace) -> int:
    from studio.core.metadata import verify

    with _open(args) as g:
        item = g.get(args.id)
        lineage = g.lineage(item.id)[1:]
        children = g.children(item.id)
    status = verify(item.path) if item.path.exists() else None
    if args.json:
        d = item.to_dict()
        d["lineage"] = [p.id for p in lineage]
        d["children"] = [c.id for c in children]
        d["c2pa"] = status.to_dict() if status else {"state": "missing", "detail": "file is missing"}
        print(json.dumps(d, ensure_ascii=False, indent=2))
        return 0
    print(f"id:         {item.id}")
    print(f"file:       {item.path}")
    print(f"made:       {item.created.astimezone():%Y-%m-%d %H:%M:%S} ({item.kind})")
    print(f"label:      {'AI-generated, edited from an input image' if item.is_composite else 'AI-generated'}")
    print(f"recipe:     {item.describe()}")
    if item.tags:
        print(f"tags:       {', '.join(item.tags)}")
    for p in lineage:
        print(f"parent:     {p.id[:12]} {p.kind} “{p.prompt[:50]}”")
    for c in children:
        print(f"child:      {c.id[:12]} {c.kind} “{c.prompt[:50]}”")
    print(
        f"provenance: C2PA {status.state if status else 'missing'} — {status.detail if status else 'file is missing'}"
    )
    return 0


def _check(args: argparse.Namespace) -> int:
    with _open(args) as g:
        report = g.check(repair=args.repair, verify_hashes=not args.no_hashes)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(report.summary())
        for label, values in (
            ("missing file", report.missing), ("orphan file", report.orphans),
            ("changed file", report.bad_hashes), ("temp file", report.temp_files),
            ("unfinished save", report.pending), ("bad kept step file", report.step_files),
            ("kept steps without an image", report.step_orphans), ("repaired", report.repaired),
        ):  # fmt: skip
            for v in values:
                print(f"  {label}: {v}")
    return 0 if report.clean else 1


def _bench(args: argparse.Namespace) -> int:
    from studio.core.gallery import search_bench

    result = search_bench.run(rows=args.rows)
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{result['rows']} rows: search median {result['median_ms']} ms, p95 {result['p95_ms']} ms, "
            f"max {result['max_ms']} ms (target < {result['target_ms']} ms)"
        )
    return 0
