"""The hard-example loop benchmark runs end to end on a tiny model and ends with its JSON figures."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from engine.model.package import load_model

pytestmark = pytest.mark.float_paths  # its figures depend on the CPU's kernels: make test-kernels

ROOT = Path(__file__).resolve().parents[3]


def test_benchmark_smoke_run_prints_json_last(loop_model, tmp_path) -> None:
    _, model = loop_model
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_retrain_loop.py"), "--model", str(model), "--pool", "24",
         "--worst", "6", "--eval-hard", "8", "--eval-ordinary", "8", "--steps", "4", "--detector-steps", "4", "--size", "96",
         "--categories", "blouse,dress", "--threads", "1", "--work", str(tmp_path / "data"),
         "--save", str(tmp_path / "retrained.fkpmodel")],
        check=True, capture_output=True, text=True, cwd=ROOT, timeout=300,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ).stdout
    figures = json.loads(out.strip().splitlines()[-1])
    assert figures["pool"] == 24 and figures["worst"] == 6 and figures["steps"] == 4
    assert figures["detector_steps"] == 4
    for key in ("hard_ne_before", "hard_ne_after", "ordinary_ne_before", "ordinary_ne_after"):
        assert 0 < figures[key] < 10
    assert math.isclose(figures["hard_change"], figures["hard_ne_after"] / figures["hard_ne_before"] - 1)
    assert set(figures["hard_per_kind_before"]) <= {"crossed", "rotation", "cut", "low_contrast"}
    saved = load_model(tmp_path / "retrained.fkpmodel")
    assert saved.metadata["retrain"]["parent"] == str(model)
    assert saved.metadata["retrain"]["steps"] == 4
