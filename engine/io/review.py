"""The review state of each image of an annotation file: unreviewed, reviewed or skipped.

Kept in the workspace as JSON lines, one appended and fsynced per change (durable at once, as
edits are: kill -9 loses none), compacted to one line per image on request. Reading takes the
last state of each id; a torn or damaged line costs that change only, and a torn tail is cut
before the next append. The file is never opened through a link, nor if another user owns it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from engine.io.files import atomic_write_text, fsync_dir
from engine.io.state_files import open_log, read_owned

UNREVIEWED, REVIEWED, SKIPPED = "unreviewed", "reviewed", "skipped"
REVIEW_STATES = (UNREVIEWED, REVIEWED, SKIPPED)  # codes 0, 1, 2 in the studio's arrays


class ReviewLog:
    """Append-only review states of one annotation file."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._file = None

    def load(self) -> tuple[dict[str, str], list[str]]:
        """(image id -> state, damaged lines skipped as "line N: why")."""
        try:
            lines = read_owned(self.path).split(b"\n")
        except FileNotFoundError:
            return {}, []
        states, bad = {}, []
        for number, line in enumerate(lines[:-1], start=1):  # the last piece is torn or empty
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
                image_id, state = str(obj["id"]), obj["state"]
                if state not in REVIEW_STATES:
                    raise ValueError(f"unknown state {state!r}")
            except (ValueError, KeyError, TypeError) as e:
                bad.append(f"line {number}: {e}")
                continue
            except RecursionError:  # `[[[[...` thousands deep: that line only
                bad.append(f"line {number}: nested too deeply")
                continue
            states[image_id] = state
        return states, bad

    def append(self, changes: dict[str, str]) -> None:
        """Record new states (one line each) and fsync them."""
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open_log(self.path)  # a torn last line is cut, not glued to this change
            if self._file.tell() == 0:
                fsync_dir(self.path.parent)  # a new log's entry survives a crash
        self._file.write(b"".join(json.dumps({"id": i, "state": s}, ensure_ascii=False).encode("utf-8") + b"\n"
                                  for i, s in changes.items()))
        self._file.flush()
        os.fsync(self._file.fileno())

    def compact(self, states: dict[str, str]) -> None:
        """Rewrite the log as one line per image that is not unreviewed (atomically); `states`
        override the logged ones, and ids it lacks keep their last logged state."""
        self.close()
        # An id missing from the file at this save (a row dropped by a checkout, by another
        # program) may come back: its state is kept, never compacted away.
        kept = {**self.load()[0], **states}
        atomic_write_text(self.path, "".join(json.dumps({"id": i, "state": s}, ensure_ascii=False) + "\n"
                                             for i, s in kept.items() if s != UNREVIEWED))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
