"""The hard set: the images a retrain aims at (no torch, no Qt).

Each member joined for a reason: "worst-ne" (ranked among the worst by per-image NE),
"manual" (added by hand) or "corrected" (its annotation was edited). An image the user takes
out is kept as "removed", so a later edit does not bring it back as corrected. The set lives in
the workspace (`hard_set.csv`), saved after every change.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from engine.analysis.ne import pooled_ne
from engine.io.workspace import HARD_REASONS, REMOVED, Workspace


class HardSet:
    """The hard set of one workspace: image id -> reason, "removed" entries included."""

    def __init__(self, entries: Mapping[str, str] | None = None, workspace: Workspace | None = None):
        self.entries: dict[str, str] = dict(entries or {})
        self.workspace = workspace

    @classmethod
    def load(cls, workspace: Workspace, problems: list[str] | None = None) -> HardSet:
        """The workspace's saved hard set; a malformed row raises ValueError naming the file and
        row, or with a `problems` list is skipped and named there (`Workspace.load_hard_set`)."""
        return cls(workspace.load_hard_set(problems), workspace)

    def members(self) -> list[str]:
        """The image ids in the set, sorted (removed ones excluded)."""
        return sorted(i for i, r in self.entries.items() if r != REMOVED)

    def member_rows(self, row_of: Mapping[str, int]) -> np.ndarray:
        """Sorted rows of the members present in a data set (`row_of`: its id index)."""
        return np.array(sorted(row_of[i] for i in self.members() if i in row_of), np.int64)

    def add(self, image_ids: Iterable[str], reason: str = "manual") -> int:
        """Add images that are not members (removed ones come back); returns how many joined."""
        if reason not in HARD_REASONS:
            raise ValueError(f"a hard-set reason is one of {', '.join(HARD_REASONS)}, got {reason!r}")
        new = [i for i in dict.fromkeys(map(str, image_ids)) if self.entries.get(i, REMOVED) == REMOVED]
        for i in new:
            self.entries[i] = reason
        self._changed(bool(new))
        return len(new)

    def remove(self, image_ids: Iterable[str]) -> None:
        """Take images out; an edited image then stays out (not re-added as corrected)."""
        ids = list(map(str, image_ids))
        for i in ids:
            self.entries[i] = REMOVED
        self._changed(bool(ids))

    def corrected(self, image_ids: Iterable[str]) -> int:
        """Edited images join as "corrected" unless the set already knows them (members or removed)."""
        new = [i for i in dict.fromkeys(map(str, image_ids)) if i not in self.entries]
        for i in new:
            self.entries[i] = "corrected"
        self._changed(bool(new))
        return len(new)

    def worst(self, image_ids: Sequence[str], ne: np.ndarray, n: int,
              categories: np.ndarray | None = None) -> list[str]:
        """The ids of the `n` non-members with the largest per-image NE (`n` per category when
        `categories` are given); images without NE are never picked."""
        ids = np.asarray(image_ids, dtype=str)
        ne = np.where(np.isfinite(ne) & ~np.isin(ids, self.members()), ne, -np.inf)
        if categories is None:
            rows = np.argsort(-ne, kind="stable")[:n]
        else:
            rows = np.concatenate([r[np.argsort(-ne[r], kind="stable")[:n]]
                                   for r in (np.flatnonzero(categories == c) for c in np.unique(categories))])
        return [str(i) for i in ids[rows[np.isfinite(ne[rows])]]]

    def ne(self, row_of: Mapping[str, int], errors: np.ndarray) -> float:
        """NE of the members from a data set's (N, 24) point errors (NaN when none is scored)."""
        rows = self.member_rows(row_of)
        return pooled_ne(errors[rows]) if len(rows) else float("nan")

    def _changed(self, changed: bool) -> None:
        if changed and self.workspace is not None:
            self.workspace.save_hard_set(self.entries)
