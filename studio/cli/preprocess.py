"""`studio preprocess NAME IMAGE --out FILE`: run a plugin's control-map preprocessor."""

from __future__ import annotations

import argparse
from pathlib import Path

from studio.core.errors import InvalidRequest


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("preprocess", help="make a control map (canny, hed, …) from an image")
    p.add_argument("name", help="preprocessor name (studio preprocess --list)")
    p.add_argument("image", type=Path, nargs="?")
    p.add_argument("--out", type=Path)
    p.add_argument("--list", action="store_true", help="list the preprocessors available here")
    p.set_defaults(func=run)


def preprocessors() -> dict:
    from studio.engine.plugins import PluginHost

    host = PluginHost()
    host.discover()
    procs: dict = {}
    for rec in host.enabled():
        hook = getattr(rec.plugin, "preprocessors", None)
        if hook is not None:
            procs.update(hook())
    return procs


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from PIL import Image

    from studio.core.files import atomic_write
    from studio.engine.inpaint import load_rgb
    from studio.plugin_api import PluginError

    procs = preprocessors()
    if args.list:
        print("\n".join(procs))
        return 0
    if args.name not in procs:
        raise InvalidRequest(f"unknown preprocessor {args.name!r}; available here: {', '.join(procs)}")
    if args.image is None or args.out is None:
        raise InvalidRequest("give an IMAGE and --out FILE")
    try:
        result = procs[args.name](load_rgb(args.image))
    except PluginError as exc:
        raise InvalidRequest(str(exc)) from None
    import io

    buf = io.BytesIO()
    Image.fromarray(np.asarray(result, dtype=np.uint8)).save(buf, format="PNG")
    atomic_write(args.out, buf.getvalue())
    print(args.out)
    return 0
