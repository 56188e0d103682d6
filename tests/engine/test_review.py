"""The review-state log: durable per change, last state wins, damaged lines cost only themselves."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from engine.io.review import ReviewLog


def test_states_survive_kill_9_and_a_damaged_line_costs_only_itself(tmp_path):
    path = tmp_path / "r.review.jsonl"
    script = f"""
import os, signal
from engine.io.review import ReviewLog
log = ReviewLog({str(path)!r})
log.append({{"a": "reviewed", "b": "skipped"}})
log.append({{"b": "reviewed"}})
os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == -signal.SIGKILL
    with open(path, "ab") as f:
        f.write(b'{"id": "c", "state": "maybe"}\n{"id": "d", "state": "reviewed"}\n{"id": "e", "st')  # torn
    states, bad = ReviewLog(path).load()
    assert states == {"a": "reviewed", "b": "reviewed", "d": "reviewed"}
    assert len(bad) == 1 and bad[0].startswith("line 4: unknown state 'maybe'")
    log = ReviewLog(path)
    log.compact({"a": "reviewed", "b": "unreviewed", "d": "skipped"})
    assert log.load() == ({"a": "reviewed", "d": "skipped"}, [])
    assert sorted(os.listdir(tmp_path)) == ["r.review.jsonl"]
