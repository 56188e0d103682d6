"""The `fkp` command line: headless access to every engine feature.

The sub-commands live by group in `data.py` and `models.py`, each registered by one
`_register_<name>(subparsers)` function (`registry.command`) that adds its parser and sets
`func` to the function that runs it; `func(args)` returns the exit code. Heavy imports (torch,
cv2) happen inside the command functions so `fkp --help` stays fast; the workflows themselves
are library functions (`engine.training.two_stage` for `fkp train`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from engine.cli import data, models  # noqa: F401  (registers their sub-commands)
from engine.cli.registry import REGISTRARS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fkp", description="FashionAI keypoint engine (headless)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in REGISTRARS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
