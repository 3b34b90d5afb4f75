"""`studio metadata …`: read any tool's generation metadata; verify C2PA content credentials."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    meta = sub.add_parser("metadata", help="read or verify the metadata in an image file")
    msub = meta.add_subparsers(dest="metadata_command", metavar="METADATA_COMMAND", required=True)
    read = msub.add_parser("read", help="generation settings from a PNG/JPEG/WebP (any known tool)")
    read.add_argument("file", type=Path)
    read.add_argument("--json", action="store_true", help="the normalised fields as JSON")
    read.set_defaults(func=_read)
    ver = msub.add_parser("verify", help="check the file's C2PA manifest: valid / missing / invalid")
    ver.add_argument("file", type=Path)
    ver.add_argument("--json", action="store_true")
    ver.set_defaults(func=_verify)


def _read(args: argparse.Namespace) -> int:
    from studio.core.errors import MetadataError
    from studio.core.metadata import read_metadata

    try:
        result = read_metadata(args.file)
    except MetadataError as exc:
        raise MetadataError(f"{args.file}: {exc.message}", exc.hint) from None
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
        return 0
    n = result.normalised
    if result.source == "none":
        print("no generation metadata found")
    for key in (
        "source",
        "prompt",
        "negative_prompt",
        "steps",
        "sampler",
        "cfg_scale",
        "seed",
        "width",
        "height",
        "model",
        "model_hash",
    ):
        if n.get(key) not in (None, ""):
            print(f"{key}: {n[key]}")
    for lo in n.get("loras") or []:
        print(f"lora: {lo['name']} weight {lo.get('weight')} hash {lo.get('hash')}")
    if result.digital_source_type:
        print(f"digital source type: {result.digital_source_type}")
    for note in result.unmapped:
        print(f"not mapped: {note}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from studio.core.metadata import verify

    status = verify(args.file)
    if args.json:
        print(json.dumps(status.to_dict(), ensure_ascii=False, indent=2))
    else:
        print(f"{status.state}: {status.detail}")
        if status.action:
            print(f"action: {status.action} ({status.digital_source_type}) by {status.software}")
    return {"valid": 0, "missing": 3, "invalid": 1}[status.state]
