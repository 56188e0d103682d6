"""The `fkp` command line: headless access to every engine feature.

The sub-commands live by group in `data.py` and `models.py`, each registered by one
`_register_<name>(subparsers)` function (`registry.command`) that adds its parser and sets
`func` to the function that runs it; `func(args)` returns the exit code. A bad file, argument
or checkpoint it raises (OSError, ValueError, CheckpointError, ...) is reported by `main` in one
line, `fkp <command>: <reason>`, with exit code 2. Heavy imports (torch,
cv2) happen inside the command functions so `fkp --help` stays fast; the workflows themselves
are library functions (`engine.training.two_stage` for `fkp train`).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from engine.cli import data, models  # noqa: F401  (registers their sub-commands)
from engine.cli.registry import REGISTRARS
from engine.io.messages import describe_error, printable


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fkp", description="FashionAI keypoint engine (headless)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in REGISTRARS:
        register(sub)
    return parser


class _PrintableStream:
    """A text stream that escapes control characters (ids come from files anyone may write)."""

    def __init__(self, stream):
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(printable(text))

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def _user_errors() -> tuple[type[BaseException], ...]:
    """What a command reports in one line (bad files, arguments, checkpoints), not as a traceback.
    Imported only when something was raised: `fkp --help` needs no torch."""
    from engine.io.images import ImageError
    from engine.io.journal import JournalError
    from engine.model.checkpoints import CheckpointError
    from engine.model.hourglass import EncoderWeightsError
    from engine.training.retrain import RetrainError

    return OSError, ValueError, CheckpointError, EncoderWeightsError, RetrainError, ImageError, JournalError


def main(argv: Sequence[str] | None = None) -> int:
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _PrintableStream(stdout), _PrintableStream(stderr)
    command = ""
    try:
        args = build_parser().parse_args(argv)
        command = f" {args.command}"
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except _user_errors() as e:  # evaluated only when an exception is being matched
        print(f"fkp{command}: {describe_error(e)}", file=sys.stderr)
        return 2
    finally:
        sys.stdout, sys.stderr = stdout, stderr
