"""What the trained tests share: the knobs that vary their figures, the tiny model, data built once.

A trained figure must hold on any x86-64 CPU. Another CPU (or another thread count) takes
another floating-point path, which moves a tiny model about as far as another seed does, so
every test that trains takes its seeds and torch threads from here:

    FKP_TEST_SEED=3 FKP_TEST_THREADS=2 make test

runs the suite as another machine would (defaults: seed 0, one thread). The margins asserted
by the trained tests were measured over seeds 0-4 and 1 vs 2 threads.

Under pytest-xdist the session fixtures are built once for all workers (a file lock in the
run's shared temporary folder), not once per worker.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np

TEST_SEED = int(os.environ.get("FKP_TEST_SEED", "0"))
TEST_THREADS = int(os.environ.get("FKP_TEST_THREADS", "1"))

# A test-only model: 96 px synthetic images, 64 px crops, a one-stage hourglass of a few
# thousand weights, a 96 px detector; trained briefly so it is clearly imperfect on hard cases.
LOOP_PRESET = {
    "input_size": 64,
    "radius": 8.0,
    "crop_margin": 0.12,
    "detector_min_size": 96,
    "detector_max_size": 96,
    "batch_size": 8,
    "lr": 1e-2,
    "net": {
        "blocks": [1, 1, 1, 1],
        "widths": [[16, 8], [24, 8], [32, 12], [32, 12]],
        "stem_channels": 16,
        "decoder_channels": 24,
        "num_stages": 1,
    },
}


def built_once(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """A folder filled by `build(folder)` once per test run, shared by every xdist worker."""
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        shared = shared.parent  # the run's folder, above each worker's own
    folder, done = shared / name, shared / f"{name}.done"
    with FileLock(str(shared / f"{name}.lock")):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


def train_tiny_model(data: Path, out: Path, epochs: int, *args) -> None:
    """`fkp train` of the tiny LOOP_PRESET model on `data`, seeded and threaded as the suite says."""
    from engine.cli import main

    preset_json = out.parent / f"{out.stem}.json"
    preset_json.write_text(json.dumps({**LOOP_PRESET, "epochs": epochs}))
    code = main([str(a) for a in ("train", "--data", data, "--preset", "lite", "--preset-json", preset_json,
                                  "--out", out, "--threads", TEST_THREADS, "--seed", TEST_SEED, *args)])
    assert code == 0


def hard_case_split(root: Path, n: int, seed: int, hard_fraction: float):
    """Render a 256 px synthetic `test` split under `root` -> (its Annotations, each row's hard
    kind, "ordinary" for the others)."""
    from engine.io.annotations import load_annotations
    from engine.synth import generate_dataset, load_hard_kinds

    ann = load_annotations(generate_dataset(root, n, seed=seed, split="test", size=256, hard_fraction=hard_fraction,
                                            workers=1))
    kinds = load_hard_kinds(root, "test")
    return ann, np.array([kinds.get(str(i), "ordinary") for i in ann.image_ids])
