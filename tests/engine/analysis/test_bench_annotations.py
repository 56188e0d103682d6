"""The annotation benchmark runs end to end on a small file and ends with its JSON figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_benchmark_smoke_run_prints_json_last() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_annotations.py"), "--rows", "300", "--repeats", "1"],
        check=True, capture_output=True, text=True, cwd=ROOT, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ).stdout
    figures = json.loads(out.strip().splitlines()[-1])
    assert figures["rows"] == 300
    for key in ("load_s", "save_s", "baseline_load_s", "baseline_save_s", "ne_arrays_s", "ne_evaluate_s"):
        assert figures[key] > 0
