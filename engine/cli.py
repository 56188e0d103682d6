"""The `fkp` command line: headless access to every engine feature.

Each sub-command is registered by one `_register_<name>(subparsers)` function that adds its
parser and sets `func` to the function that runs it; `func(args)` returns the exit code.
Heavy imports (torch, cv2) happen inside the command functions so `fkp --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

_REGISTRARS: list[Callable[[argparse._SubParsersAction], None]] = []


def _command(register: Callable[[argparse._SubParsersAction], None]):
    """Decorator: add a sub-command registrar to the `fkp` parser."""
    _REGISTRARS.append(register)
    return register


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fkp", description="FashionAI keypoint engine (headless)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in _REGISTRARS:
        register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


# --- sub-commands -------------------------------------------------------------------------


if __name__ == "__main__":
    sys.exit(main())
