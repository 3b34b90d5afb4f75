"""`studio dev train-demo` and `studio dev eval-demo` (added to the `studio dev` group)."""

from __future__ import annotations

import argparse


def register_dev(dsub: argparse._SubParsersAction) -> None:
    from studio.dev import eval_adapters, eval_demo, train_adapters, train_demo, train_preview

    train = dsub.add_parser(
        "train-demo",
        help="train the bundled demo model from scratch on procedural scenes",
        description=train_demo.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train_demo.add_arguments(train)
    train.set_defaults(func=train_demo.run)

    ev = dsub.add_parser(
        "eval-demo",
        help="score a demo model on held-out prompts with the procedural detector",
        description=eval_demo.__doc__,
    )
    eval_demo.add_arguments(ev)
    ev.set_defaults(func=eval_demo.run)

    ta = dsub.add_parser(
        "train-adapters",
        help="train the demo LoRA (striped backgrounds) or the demo ControlNet (Canny edges) on the demo model",
        description=train_adapters.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train_adapters.add_arguments(ta)
    ta.set_defaults(func=train_adapters.run)

    ea = dsub.add_parser(
        "eval-adapters",
        help="check inpainting, the demo LoRA and the demo ControlNet through the engine",
        description=eval_adapters.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    eval_adapters.add_arguments(ea)
    ea.set_defaults(func=eval_adapters.run)

    tp = dsub.add_parser(
        "train-preview-decoder",
        help="distil a tiny preview decoder (AutoencoderTiny's decoder) from a model's VAE decoder",
        description=train_preview.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train_preview.add_arguments(tp)
    tp.set_defaults(func=train_preview.run)
