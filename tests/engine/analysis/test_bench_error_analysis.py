"""The error-analysis benchmark runs end to end on a small file and ends with its JSON figures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]


def test_benchmark_smoke_run_prints_json_last() -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_error_analysis.py"), "--rows", "300", "--repeats", "1"],
        check=True, capture_output=True, text=True, cwd=ROOT, timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    ).stdout
    figures = json.loads(out.strip().splitlines()[-1])
    assert figures["rows"] == 300
    for key in ("evaluate_s", "analyze_errors_s", "suspects_s", "coco_export_s", "coco_import_s", "csv_load_s"):
        assert figures[key] > 0
