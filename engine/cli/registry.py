"""The `fkp` sub-commands: each registers itself with `@command` (a function that adds its parser
and sets `func`, which runs it and returns the exit code)."""

from __future__ import annotations

import argparse
from collections.abc import Callable

REGISTRARS: list[Callable[[argparse._SubParsersAction], None]] = []


def command(register: Callable[[argparse._SubParsersAction], None]):
    """Decorator: add a sub-command registrar to the `fkp` parser."""
    REGISTRARS.append(register)
    return register
