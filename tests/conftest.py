"""Session fixtures shared by engine and studio tests of the hard-example loop."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

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



def hard_case_split(root: Path, n: int, seed: int, hard_fraction: float):
    """Render a 256 px synthetic `test` split under `root` -> (its Annotations, each row's hard
    kind, "ordinary" for the others)."""
    from engine.annotations import load_annotations
    from engine.synth import generate_dataset, load_hard_kinds

    ann = load_annotations(generate_dataset(root, n, seed=seed, split="test", size=256, hard_fraction=hard_fraction,
                                            workers=1))
    kinds = load_hard_kinds(root, "test")
    return ann, np.array([kinds.get(str(i), "ordinary") for i in ann.image_ids])

@pytest.fixture(scope="session")
def loop_model(tmp_path_factory) -> tuple[Path, Path]:
    """(data root with Annotations/train.csv rich in hard cases, a tiny trained model package).

    Tests copy what they modify; the files here are shared by the whole session."""
    import torch

    from engine.cli import main
    from engine.synth import generate_dataset

    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("loop_model")
    data = base / "data"
    generate_dataset(data, 48, seed=201, split="train", size=96, categories="blouse,dress", hard_fraction=0.5,
                     workers=1)
    preset_json = base / "tiny.json"
    preset_json.write_text(json.dumps(LOOP_PRESET))
    model = base / "tiny.fkpmodel"
    code = main([str(a) for a in ("train", "--data", data, "--preset", "lite", "--preset-json", preset_json,
                                  "--out", model, "--epochs", 6, "--detector-steps", 200, "--detector-batch", 4,
                                  "--detector-lr", 3e-3, "--eval-every", 200, "--threads", 1)])
    assert code == 0
    return data, model
