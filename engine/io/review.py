"""The review state of each image of an annotation file: unreviewed, reviewed or skipped.

Kept in the workspace as JSON lines, one appended and fsynced per change (durable at once, as
edits are: kill -9 loses none), compacted to one line per image on request. Reading takes the
last state of each id; a torn or damaged line costs that change only, and a torn tail is cut
before the next append. The file is never opened through a link, nor if another user owns it.

Review marks share the edits' history: a `{"saved": true}` line follows the states saved with
the annotation file (written by `compact` at each save, and first in a new log), and the lines
after the last one are the marks made since, pending as unsaved edits are (`load_parts`): a
session that discards its edits discards them too (`discard_pending`). A log of an earlier
version has no such line: all its marks count as saved.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from engine.io.files import atomic_write_text, fsync_dir
from engine.io.state_files import open_log, read_owned

UNREVIEWED, REVIEWED, SKIPPED = "unreviewed", "reviewed", "skipped"
REVIEW_STATES = (UNREVIEWED, REVIEWED, SKIPPED)  # codes 0, 1, 2 in the studio's arrays
SAVED_MARK = b'{"saved": true}\n'  # the states before it were saved with the annotation file


class ReviewLog:
    """Append-only review states of one annotation file."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._file = None

    def load(self) -> tuple[dict[str, str], list[str]]:
        """(image id -> state, damaged lines skipped as "line N: why"), saved and pending alike."""
        saved, pending, bad = self.load_parts()
        return {**saved, **pending}, bad

    def load_parts(self) -> tuple[dict[str, str], dict[str, str], list[str]]:
        """(states saved with the annotation file, states set since the last save, damaged lines)."""
        try:
            lines = read_owned(self.path).split(b"\n")
        except FileNotFoundError:
            return {}, {}, []
        parts: list[dict[str, str]] = [{}]  # the states between two saved marks
        bad = []
        for number, line in enumerate(lines[:-1], start=1):  # the last piece is torn or empty
            if not line.strip():
                continue
            if line + b"\n" == SAVED_MARK:
                parts.append({})
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
            parts[-1][image_id] = state
        if len(parts) == 1:  # an earlier version's log (no saved mark): every state was saved
            return parts[0], {}, bad
        saved = {k: v for part in parts[:-1] for k, v in part.items()}
        return saved, parts[-1], bad

    def append(self, changes: dict[str, str]) -> None:
        """Record new states (one line each) and fsync them."""
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            marked = self.path.is_file() and SAVED_MARK in read_owned(self.path)
            self._file = open_log(self.path)  # a torn last line is cut, not glued to this change
            if self._file.tell() == 0:
                fsync_dir(self.path.parent)  # a new log's entry survives a crash
            if not marked:  # a new log, or an earlier version's: what it holds so far was saved
                self._file.write(SAVED_MARK)
        self._file.write((SAVED_MARK if not changes else b"") + b"".join(json.dumps({"id": i, "state": s}, ensure_ascii=False).encode("utf-8") + b"\n"
                                  for i, s in changes.items()))
        self._file.flush()
        os.fsync(self._file.fileno())

    def compact(self, states: dict[str, str]) -> None:
        """Rewrite the log as one line per image that is not unreviewed, then the saved mark
        (atomically: the annotation file was just saved with these states); `states` override
        the logged ones, and ids it lacks keep their last logged state."""
        self.close()
        # An id missing from the file at this save (a row dropped by a checkout, by another
        # program) may come back: its state is kept, never compacted away.
        self._rewrite({**self.load()[0], **states})

    def discard_pending(self) -> dict[str, str]:
        """Forget the states set since the last save (their edits were discarded): the log keeps
        the saved states only. Returns id -> the saved state of each id that had a pending one."""
        self.close()
        saved, pending, _bad = self.load_parts()
        if pending:
            self._rewrite(saved)
        return {i: saved.get(i, UNREVIEWED) for i in pending}

    def mark_saved(self) -> None:
        """Append the saved mark (when `compact` could not rewrite the log at a save)."""
        self.append({})

    def _rewrite(self, states: dict[str, str]) -> None:
        atomic_write_text(self.path, "".join(json.dumps({"id": i, "state": s}, ensure_ascii=False) + "\n"
                                             for i, s in states.items() if s != UNREVIEWED)
                          + SAVED_MARK.decode())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
