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
    proc = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[3])
    assert proc.returncode == -signal.SIGKILL
    with open(path, "ab") as f:
        f.write(b'{"id": "c", "state": "maybe"}\n{"id": "d", "state": "reviewed"}\n{"id": "e", "st')  # torn
    states, bad = ReviewLog(path).load()
    assert states == {"a": "reviewed", "b": "reviewed", "d": "reviewed"}
    assert len(bad) == 1 and bad[0].startswith("line 5: unknown state 'maybe'")  # line 1: the saved mark
    log = ReviewLog(path)
    log.compact({"a": "reviewed", "b": "unreviewed", "d": "skipped"})
    assert log.load() == ({"a": "reviewed", "d": "skipped"}, [])
    assert sorted(os.listdir(tmp_path)) == ["r.review.jsonl"]


def test_a_torn_last_line_is_cut_before_the_next_change(tmp_path):
    """Issue 30, item 4: a full disk or power loss mid-line must not swallow the next session's first change."""
    path = tmp_path / "r.review.jsonl"
    ReviewLog(path).append({"a": "reviewed"})
    with open(path, "ab") as f:
        f.write(b'{"id": "b", "st')  # torn
    log = ReviewLog(path)
    log.append({"c": "skipped"})
    log.close()
    assert ReviewLog(path).load() == ({"a": "reviewed", "c": "skipped"}, [])


def test_compaction_keeps_the_states_of_ids_missing_from_the_file(tmp_path):
    """Issue 30, item 6: a row missing at one save (a checkout dropped it) gets its state back when it returns."""
    path = tmp_path / "r.review.jsonl"
    log = ReviewLog(path)
    log.append({"a": "reviewed", "gone": "skipped", "undone": "reviewed"})
    log.append({"undone": "unreviewed"})
    log.compact({"a": "skipped"})  # the file at this save lacks "gone"
    assert log.load() == ({"a": "skipped", "gone": "skipped"}, [])


def test_marks_since_the_last_save_are_pending_and_discarding_them_keeps_the_saved_ones(tmp_path):
    path = tmp_path / "r.review.jsonl"
    path.write_text('{"id": "a", "state": "reviewed"}\n')  # an earlier version's log: no saved mark
    log = ReviewLog(path)
    assert log.load_parts() == ({"a": "reviewed"}, {}, [])
    log.append({"b": "skipped", "a": "unreviewed"})
    assert log.load_parts() == ({"a": "reviewed"}, {"b": "skipped", "a": "unreviewed"}, [])
    assert log.discard_pending() == {"b": "unreviewed", "a": "reviewed"}
    assert log.load_parts() == ({"a": "reviewed"}, {}, [])
    log.append({"c": "reviewed"})
    log.compact({"c": "reviewed"})  # saved with the file: nothing pending
    assert log.load_parts() == ({"a": "reviewed", "c": "reviewed"}, {}, [])
    assert log.discard_pending() == {} and log.load()[0] == {"a": "reviewed", "c": "reviewed"}
