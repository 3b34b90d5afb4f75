"""`studio models list|scan|info|folders|download`: what models are on disk, from headers and configs only.

`list` scans the demo model, the models library and the extra folders saved in the studio's
settings (`studio models folders --add DIR`, or the window's Models dialog) together."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    models = sub.add_parser("models", help="find and identify model files")
    msub = models.add_subparsers(dest="models_command", metavar="MODELS_COMMAND", required=True)
    ls = msub.add_parser("list", help="the bundled demo model, the models library and the extra model folders")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=_list)
    fo = msub.add_parser(
        "folders", help="the extra model folders scanned with the library (A1111, ComfyUI, HF cache …)"
    )
    fo.add_argument("--add", type=Path, action="append", default=[], metavar="DIR", help="add a folder (repeatable)")
    fo.add_argument(
        "--remove", type=Path, action="append", default=[], metavar="DIR", help="remove a folder (repeatable)"
    )
    fo.add_argument("--json", action="store_true")
    fo.set_defaults(func=_folders)
    sc = msub.add_parser("scan", help="identify every model under a folder (A1111, ComfyUI, HF cache …)")
    sc.add_argument("folder", type=Path)
    sc.add_argument("--json", action="store_true")
    sc.set_defaults(func=_scan)
    info = msub.add_parser("info", help="identify one model file or folder")
    info.add_argument("path", type=Path)
    info.add_argument("--json", action="store_true")
    info.set_defaults(func=_scan_one)
    dl = msub.add_parser("download", help="download a model from the Hugging Face Hub into the models library")
    dl.add_argument("repo_id", nargs="?", help='e.g. "stabilityai/sd-turbo" (see --starters)')
    dl.add_argument("--file", action="append", default=[], help="only this file (repeatable)")
    dl.add_argument("--fp16", action="store_true", help="take the fp16 variant when the repo has one")
    dl.add_argument("--to", type=Path, default=None, help="target folder (default: models library)")
    dl.add_argument("--starters", action="store_true", help="list the curated starter models")
    dl.add_argument("--json", action="store_true")
    dl.set_defaults(func=_download)


def _print(entries, as_json: bool) -> int:
    if as_json:
        print(json.dumps([e.to_dict() for e in entries], indent=1))
        return 0
    for e in entries:
        mb = e.size_bytes / 2**20
        variant = e.variant
        if e.arch in ("flux", "sd3"):  # FLUX.1 dev, SD 3.5 large …
            variant = f"{'FLUX.1' if e.arch == 'flux' else 'SD'} {e.variant}".strip()
        what = " ".join(x for x in (e.kind, e.arch, variant and f"({variant})", e.precision) if x)
        note = f"  — {e.reason}" if e.reason else ""
        print(f"{'  ' if e.usable else '✗ '}{what:<40} {mb:9.1f} MB  {e.path}{note}")
    if not entries:
        print("no models found")
    return 0


def _list(args: argparse.Namespace) -> int:
    import sys

    from studio.core.library import scan_all

    entries, problems = scan_all()
    for p in problems:
        print(f"studio: {p}", file=sys.stderr)
    return _print(entries, args.json)


def _folders(args: argparse.Namespace) -> int:
    from studio.core import settings
    from studio.core.errors import InvalidRequest
    from studio.core.library import sources

    s = settings.load()
    for d in args.add:
        if not d.expanduser().is_dir():
            raise InvalidRequest(f"Not a folder: {d}")
        s.add_folder(d)
    for d in args.remove:
        if not s.remove_folder(d):
            raise InvalidRequest(f"Not one of the extra model folders: {d}")
    if args.add or args.remove:
        settings.save(s)
    rows = [{"path": str(src.path), "kind": src.label, "exists": src.path.exists()} for src in sources(s)]
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        for r in rows:
            print(f"{r['kind']:<14} {r['path']}{'' if r['exists'] else '  (not found)'}")
    return 0


def _scan(args: argparse.Namespace) -> int:
    from studio.core.catalogue import scan

    return _print(scan(args.folder), args.json)


def _scan_one(args: argparse.Namespace) -> int:
    from studio.core.catalogue import identify_file, identify_folder
    from studio.core.errors import ModelNotFound, NotADiffusionModel

    p = args.path
    if not p.exists():
        raise ModelNotFound(f"Not found: {p}")
    entry = identify_file(p) if p.is_file() else identify_folder(p)
    if entry is None:
        raise NotADiffusionModel(f"{p} is not a model folder (no model_index.json or config.json).")
    if not entry.usable and not args.json:
        raise NotADiffusionModel(f"cannot use {p}: {entry.reason}")
    return _print([entry], args.json)


def _download(args: argparse.Namespace) -> int:
    import sys

    from studio.core.download import STARTERS, download, plan_download
    from studio.core.errors import InvalidRequest

    if args.starters:
        for title, repo in STARTERS.items():
            print(f"{title:<28} {repo}")
        return 0
    if not args.repo_id:
        raise InvalidRequest("give a repository id, e.g. studio models download stabilityai/sd-turbo")
    if args.to is not None:
        from studio.core.files import check_writable

        if args.to.is_file():
            raise InvalidRequest(f"--to {args.to} is a file, not a folder")
        check_writable(args.to / "model_index.json", "--to")
    plan = plan_download(args.repo_id, args.file or None, fp16=args.fp16)
    bar = None
    if sys.stderr.isatty() and not args.json:
        from tqdm import tqdm

        bar = tqdm(total=plan.total_bytes, unit="B", unit_scale=True, desc=args.repo_id, file=sys.stderr)

    def progress(done: int, total: int, name: str) -> None:
        if bar is not None:
            bar.n = done
            bar.set_postfix_str(name[-30:], refresh=True)

    try:
        dest = download(plan, args.to, on_progress=progress)
    finally:
        if bar is not None:
            bar.close()
    if args.json:
        print(
            json.dumps(
                {
                    "repo_id": plan.repo_id,
                    "revision": plan.revision,
                    "path": str(dest),
                    "files": [n for n, _ in plan.files],
                    "bytes": plan.total_bytes,
                    "left_out": [n for n, _ in plan.skipped],
                    "left_out_bytes": plan.skipped_bytes,
                }
            )
        )
    else:
        print(dest)
    return 0
