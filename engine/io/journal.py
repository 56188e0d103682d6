"""The edit journal: an append-only record of every annotation edit, durable per edit.

One JSON object per line. The first line is the *base*: which annotation file the edits
apply to and what that file looked like (size, SHA-256) when the journal started. Every
later line is an *edit*: "set these keypoints of this image to these values". An undo is
journaled as the edit that restores the old values, so replaying the edits in order, in
full, reproduces the exact state the user last saw.

Each line is written, flushed and fsynced before `append` returns, so a crash or `kill -9`
loses at most the edit being written; a torn last line is ignored on reading and cut off
before the next append.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.io.files import fsync_dir
from engine.io.merge import PointChanges
from engine.io.state_files import open_log, read_owned
from engine.schema import CATEGORIES, NUM_KEYPOINTS

JOURNAL_VERSION = 1


class JournalError(Exception):
    """A journal file could not be read or does not belong to the annotation file."""


# `Edit.category` of an image that has no category (yet): a folder of photos outside the category
# folders. No FashionAI row can hold it; the studio keeps such images in the workspace.
NO_CATEGORY = -1


@dataclass(frozen=True)
class Edit:
    """Keypoints `keypoints` of image `image_id` become `coords` (K, 2) and `visibility` (K,),
    and with `category` the image's category becomes that code.

    The one representation of an edit: the journal records it, an undo step keeps the one it
    makes and the one it undoes, the document applies it. Types and shapes are checked here,
    once, whatever the values came from (a drag, a key press, a journal line)."""

    image_id: str
    keypoints: np.ndarray  # (K,) int64 keypoint indices in CSV order
    coords: np.ndarray  # (K, 2) float32 image pixels
    visibility: np.ndarray  # (K,) int8 in {-1, 0, 1}
    category: int | None = None  # a category code (0..4), NO_CATEGORY, or None: the category stays

    def __post_init__(self) -> None:
        keypoints = np.asarray(self.keypoints, dtype=np.int64).reshape(-1)
        coords = np.asarray(self.coords, dtype=np.float32).reshape(-1, 2)
        visibility = np.asarray(self.visibility, dtype=np.int64).reshape(-1)
        if not len(keypoints) == len(coords) == len(visibility):
            raise ValueError("keypoint, coordinate and visibility lists differ in length")
        if ((keypoints < 0) | (keypoints >= NUM_KEYPOINTS)).any():
            raise ValueError(f"keypoint index out of range 0..{NUM_KEYPOINTS - 1}: {keypoints.tolist()}")
        if not np.isin(visibility, (-1, 0, 1)).all():
            raise ValueError(f"visibility must be -1, 0 or 1: {visibility.tolist()}")
        if self.category is not None:
            if not (0 <= int(self.category) < len(CATEGORIES) or int(self.category) == NO_CATEGORY):
                raise ValueError(f"category code out of range 0..{len(CATEGORIES) - 1}: {self.category}")
            object.__setattr__(self, "category", int(self.category))
        for name, value in (("image_id", str(self.image_id)), ("keypoints", keypoints), ("coords", coords),
                            ("visibility", visibility.astype(np.int8))):
            object.__setattr__(self, name, value)

    def to_json(self) -> dict[str, Any]:
        return {
            "t": "set",
            "id": self.image_id,
            "k": [int(k) for k in self.keypoints],
            "xy": [[float(x), float(y)] for x, y in self.coords],
            "v": [int(v) for v in self.visibility],
            **({"c": self.category} if self.category is not None else {}),
        }

    @staticmethod
    def from_json(obj: dict[str, Any]) -> Edit:
        return Edit(obj["id"], obj["k"], obj["xy"], obj["v"], obj.get("c"))

    def record(self, before: Edit | None = None) -> dict[str, Any]:
        """The journal line: this edit and, when given, the values it replaced (`was_*`), which
        let a restore tell an undone edit from a real one and merge onto a changed file."""
        obj = self.to_json()
        if before is not None:
            obj["was_xy"] = [[float(x), float(y)] for x, y in before.coords]
            obj["was_v"] = [int(v) for v in before.visibility]
            if before.category is not None:
                obj["was_c"] = before.category
        return obj


@dataclass
class JournalContents:
    """What a journal file holds: its base record, the edits, and a note on a torn tail."""

    base: dict[str, Any]
    edits: list[Edit] = field(default_factory=list)
    befores: list[Edit | None] = field(default_factory=list)  # what each edit replaced, when recorded
    torn_tail: bool = False  # the last line was incomplete (a crash mid-write) and was ignored
    bad_lines: list[str] = field(default_factory=list)  # damaged edit lines, skipped: "line 7: ..."

    def net_changes(self) -> PointChanges:
        """Per image and keypoint, the value before the first edit and after the last; points an
        edit and its undo brought back to where they were are left out."""
        points: dict[tuple[str, int], list] = {}
        categories: dict[str, list] = {}
        for edit, before in zip(self.edits, self.befores):
            if edit.category is not None:
                was = before.category if before is not None and before.category is not None else -1
                categories.setdefault(edit.image_id, [was, None])[1] = edit.category
            for j, k in enumerate(edit.keypoints.tolist()):
                key = (edit.image_id, k)
                if key not in points:
                    was = ((before.coords[j], before.visibility[j]) if before is not None
                           else (np.full(2, np.nan, np.float32), np.int8(-1)))
                    points[key] = [was[0], was[1], None, None]
                points[key][2:] = edit.coords[j], edit.visibility[j]
        kept = [(key, p) for key, p in points.items()
                if not (p[1] == p[3] and np.array_equal(p[0], p[2]))]
        n = len(kept)
        ids = np.empty(n, dtype=object)
        ids[:] = [key[0] for key, _ in kept]
        return PointChanges(ids, np.array([key[1] for key, _ in kept], np.int64),
                            np.array([p[0] for _, p in kept], np.float32).reshape(n, 2),
                            np.array([p[1] for _, p in kept], np.int8),
                            np.array([p[2] for _, p in kept], np.float32).reshape(n, 2),
                            np.array([p[3] for _, p in kept], np.int8),
                            {i: (b, a) for i, (b, a) in categories.items() if b != a})


def file_fingerprint(path: str | os.PathLike) -> dict[str, Any]:
    """Size and SHA-256 of a file: identifies the version of the annotation file edits apply to."""
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
            size += len(chunk)
    return {"size": size, "sha256": digest.hexdigest()}


def make_base(annotations_path: str | os.PathLike) -> dict[str, Any]:
    """The base record for a journal of edits to `annotations_path` as it is on disk now."""
    path = Path(annotations_path).resolve()
    base: dict[str, Any] = {"t": "base", "version": JOURNAL_VERSION, "annotations": str(path), "time": time.time()}
    if path.exists():
        base.update(file_fingerprint(path))
    return base


def read_journal(path: str | os.PathLike) -> JournalContents:
    """Read a journal file; a torn last line is skipped, a damaged edit line is listed in
    `bad_lines` and skipped; an unreadable file or one without its base record raises JournalError."""
    path = Path(path)
    try:
        raw = read_owned(path)  # never through a planted link
    except OSError as e:
        raise JournalError(f"{path}: cannot read journal ({e.strerror or e})") from None
    lines = raw.split(b"\n")
    complete, tail = lines[:-1], lines[-1]
    torn = bool(tail.strip())  # bytes after the last newline: a write cut short
    records, bad = [], []
    for number, line in enumerate(complete, start=1):
        if not line.strip():
            continue
        try:
            records.append((number, json.loads(line)))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            bad.append((number, f"not a journal record ({e})"))
        except RecursionError:  # `[[[[...` thousands deep: that line only
            bad.append((number, "not a journal record (nested too deeply)"))
    if not records or records[0][0] != 1 or not isinstance(records[0][1], dict) or records[0][1].get("t") != "base":
        raise JournalError(f"{path}: the first record is not a journal base record")
    contents = JournalContents(base=records[0][1], torn_tail=torn)
    for number, obj in records[1:]:
        # A damaged line (another program, a disk error) costs that edit only, never the rest.
        if not isinstance(obj, dict) or obj.get("t") != "set":
            kind = obj.get("t") if isinstance(obj, dict) else type(obj).__name__
            bad.append((number, f"unknown record type {kind!r}"))
            continue
        try:
            edit = Edit.from_json(obj)
            before = (Edit(edit.image_id, edit.keypoints, obj["was_xy"], obj["was_v"], obj.get("was_c"))
                      if "was_xy" in obj or "was_v" in obj else None)
        except (KeyError, TypeError, ValueError) as e:
            bad.append((number, f"malformed edit ({e})"))
            continue
        contents.edits.append(edit)
        contents.befores.append(before)
    contents.bad_lines = [f"line {number}: {why}" for number, why in sorted(bad)]
    return contents


class Journal:
    """An open journal file: `append` makes each edit durable before it returns.

    The file is created only on the first append, so opening a data set and only looking
    at it leaves no trace.
    """

    def __init__(self, path: str | os.PathLike, base: dict[str, Any]):
        self.path = Path(path)
        self.base = base
        self._file = None

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open_log(self.path)
        if self._file.tell() == 0:  # a new journal starts with its base
            self._write(self.base)
            fsync_dir(self.path.parent)  # the new journal's entry, not only its bytes, survives a crash

    def _write(self, obj: dict[str, Any]) -> None:
        assert self._file is not None
        self._file.write(json.dumps(obj, separators=(",", ":")).encode("utf-8") + b"\n")
        self._file.flush()
        os.fsync(self._file.fileno())

    def append(self, edit: Edit, before: Edit | None = None) -> None:
        """Write one edit (and the values it replaced) and fsync it."""
        if self._file is None:
            self._open()
        self._write(edit.record(before))

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def discard(self, keep_as: str | os.PathLike | None = None) -> None:
        """End this journal: remove the file, or rename it to `keep_as` so nothing is lost."""
        self.close()
        if not self.path.exists():
            return
        if keep_as is None:
            self.path.unlink()
        else:
            os.replace(self.path, keep_as)
            fsync_dir(Path(keep_as).parent)
        fsync_dir(self.path.parent)

    def restart(self, base: dict[str, Any]) -> None:
        """Start over from a new base (after the annotations were saved)."""
        self.discard()
        self.base = base
