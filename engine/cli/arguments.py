"""Argument types of the `fkp` commands: a count, a size or a rate out of range is refused by
the parser with a one-line message, before any work starts."""

from __future__ import annotations

import argparse
import math


def positive_int(text: str) -> int:
    """An integer >= 1 (a count of images, steps, epochs; a size)."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """An integer >= 0 (passes, workers, steps that may be skipped)."""
    return _int_at_least(text, 0)


def positive_float(text: str) -> float:
    """A finite number > 0 (a learning rate, minutes)."""
    value = _finite(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not above 0")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0 (a penalty, a threshold)."""
    value = _finite(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is below 0")
    return value


def fraction(text: str) -> float:
    """A finite number from 0 to 1."""
    value = _finite(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not between 0 and 1")
    return value


def _int_at_least(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"{text!r} is below {low}")
    return value


def _finite(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not a finite number")
    return value


# The runtime arguments' help, one text each: every command that takes one says the same.
THREADS_HELP = "CPU threads for torch (default: {default})"
DEVICE_HELP = "cpu, cuda or cuda:N (default: CUDA when available{ranks})"
SEED_HELP = "random seed of the run (default 0)"


def add_runtime_arguments(p: argparse.ArgumentParser, *, device: bool = True, seed: bool = True,
                          threads_default: str = "torch's choice", torchrun: bool = False) -> None:
    """Declare `--threads` (and `--device`, `--seed` unless told not to) on a command."""
    p.add_argument("--threads", type=positive_int, help=THREADS_HELP.format(default=threads_default))
    if device:
        ranks = "; under torchrun each rank's cuda:LOCAL_RANK" if torchrun else ""
        p.add_argument("--device", help=DEVICE_HELP.format(ranks=ranks))
    if seed:
        p.add_argument("--seed", type=int, default=0, help=SEED_HELP)
