"""`studio dev train-demo` and `studio dev eval-demo` (added to the `studio dev` group)."""

from __future__ import annotations

import argparse


def register_dev(dsub: argparse._SubParsersAction) -> None:
    from studio.dev import eval_demo, train_demo

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
