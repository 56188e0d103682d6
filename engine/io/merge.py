"""Three-way merge of a session's keypoint edits onto an annotation file that changed meanwhile.

An edit is per image and keypoint, so the merge is exact: each point this session changed
(from `before` to `after`) is set on the file as it is now ("theirs") when the file still
holds `before` there, or already holds `after`. Where the file holds a third value both sides
touched the point: a conflict, listed for the user; this session's value is kept (the save
that merges is the user's), and the caller keeps the other version aside. A point the image's
merged category has no place for (one side changed the category, the other placed the point)
is cleared, and listed as a conflict too (`Conflict.cleared`): no FashionAI row can hold it. A
file rewritten as a test split (`image_id,image_category`) gets its keypoint columns back when
an edit places a point (as a restore does), so no edit is silently left out of the save.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from engine.io.annotations import Annotations
from engine.schema import CATEGORIES, CATEGORY_MASK, KEYPOINTS


@dataclass
class PointChanges:
    """Keypoints a session changed: point p is keypoint `keypoints[p]` of image `image_ids[p]`,
    from (`before_xy`, `before_v`) to (`after_xy`, `after_v`). A NaN `before_xy` means the
    value before is unknown (a journal written before they were recorded)."""

    image_ids: np.ndarray   # (P,) object
    keypoints: np.ndarray   # (P,) int64
    before_xy: np.ndarray   # (P, 2) float32
    before_v: np.ndarray    # (P,) int8
    after_xy: np.ndarray    # (P, 2) float32
    after_v: np.ndarray     # (P,) int8
    # Image id -> (category before, after) for images whose category changed (before -1: unknown).
    categories: dict[str, tuple[int, int]] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.keypoints)

    @classmethod
    def between(cls, image_ids: np.ndarray, before_xy: np.ndarray, before_v: np.ndarray,
                after_xy: np.ndarray, after_v: np.ndarray, before_categories: np.ndarray | None = None,
                after_categories: np.ndarray | None = None) -> PointChanges:
        """The points (and categories) that differ between two (N, 24) versions of the same rows."""
        changed = (after_v != before_v) | (after_xy != before_xy).any(axis=2)
        rows, ks = np.nonzero(changed)
        ids = np.asarray(image_ids, dtype=object)
        categories = {}
        if before_categories is not None and after_categories is not None:
            moved = np.flatnonzero(np.asarray(before_categories) != np.asarray(after_categories))
            categories = {str(ids[r]): (int(before_categories[r]), int(after_categories[r])) for r in moved.tolist()}
        return cls(ids[rows], ks.astype(np.int64), before_xy[rows, ks], before_v[rows, ks], after_xy[rows, ks],
                   after_v[rows, ks], categories)


@dataclass(frozen=True)
class Conflict:
    """A point both sides changed: `ours` was kept over `theirs`; or, with `cleared` (why: "skirt
    has no neckline_left"), a point neither value of which the merged category can hold: cleared."""

    image_id: str
    keypoint: str
    ours: tuple[float, float, int]
    theirs: tuple[float, float, int]
    cleared: str = ""

    def describe(self) -> str:
        def fmt(p) -> str:
            return f"{p[0]:g}_{p[1]:g}_{p[2]}"

        if self.cleared:
            return (f"{self.image_id} {self.keypoint}: cleared, {self.cleared} "
                    f"(this session had {fmt(self.ours)}, the file {fmt(self.theirs)})")
        if self.keypoint == "image_category":
            return (f"{self.image_id} category: kept {CATEGORIES[self.ours[2]]} "
                    f"(the file had {CATEGORIES[self.theirs[2]]})")
        return f"{self.image_id} {self.keypoint}: kept {fmt(self.ours)} (the file had {fmt(self.theirs)})"


@dataclass
class MergeResult:
    annotations: Annotations        # the file as it is now, with this session's changes applied
    rows: np.ndarray                # rows of `annotations` whose values the changes set
    applied: int                    # points set from this session
    conflicts: list[Conflict] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # edited images no longer in the file
    category_rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # rows whose category it set

    @property
    def cleared(self) -> list[Conflict]:
        """The points cleared because the merged category has no place for them."""
        return [c for c in self.conflicts if c.cleared]

    def describe(self) -> str:
        parts = [f"{self.applied} edited points applied to the file as it is now"]
        both = len(self.conflicts) - len(self.cleared)
        if both:
            parts.append(f"{both} changed on both sides (this session's value kept)")
        if self.cleared:
            parts.append(f"{len(self.cleared)} points cleared that the image's category has no place for")
        if self.missing:
            parts.append(f"{len(set(self.missing))} edited images are no longer in the file")
        return "; ".join(parts)


def merge_changes(changes: PointChanges, theirs: Annotations, uncategorized: np.ndarray | None = None) -> MergeResult:
    """Apply `changes` onto a copy of `theirs` (see the module docstring). `uncategorized` (bool per
    row of `theirs`): rows whose category is a stand-in, so that any category given is a change;
    a change to no category (`NO_CATEGORY`) is left to the caller (no row of a file can hold it)."""
    merged = theirs.copy()
    index = theirs.id_index()
    # Categories first: the points below are checked against the category they end up in.
    category_rows, category_conflicts = [], []
    for image_id, (before, after) in changes.categories.items():
        row = index.get(image_id)
        if row is None or after < 0:
            continue
        now = int(theirs.categories[row])
        if now != after or (uncategorized is not None and uncategorized[row]):
            if before >= 0 and now != before:
                category_conflicts.append(Conflict(image_id, "image_category", (0.0, 0.0, after), (0.0, 0.0, now)))
            merged.categories[row] = after
            category_rows.append(row)
    rows = np.array([index.get(str(i), -1) for i in changes.image_ids.tolist()], dtype=np.int64)
    found = rows >= 0
    missing = sorted({str(i) for i in changes.image_ids[~found]})
    r, k = rows[found], changes.keypoints[found]
    before_xy, before_v = changes.before_xy[found], changes.before_v[found]
    after_xy, after_v = changes.after_xy[found], changes.after_v[found]
    now_xy, now_v = theirs.coords[r, k], theirs.visibility[r, k]
    unknown_before = np.isnan(before_xy).any(axis=1)
    same_as_before = (now_v == before_v) & (now_xy == before_xy).all(axis=1)
    same_as_after = (now_v == after_v) & (now_xy == after_xy).all(axis=1)
    conflict = ~unknown_before & ~same_as_before & ~same_as_after
    merged.coords[r, k] = after_xy
    merged.visibility[r, k] = after_v
    if (after_v >= 0).any() and not merged.has_keypoints:
        merged.add_keypoint_columns()  # rewritten as a test split meanwhile: the edits need the columns
    # Points the merged category has no place for: a point this session set, or any point of an
    # image whose category it set (an image whose category is a stand-in, and stays one, is no row
    # of the file: its points stay as they are).
    named = np.asarray(category_rows, np.int64)
    touched = np.unique(np.concatenate([r, named]))
    ours = np.zeros((len(touched), len(KEYPOINTS)), bool)
    ours[np.searchsorted(touched, r), k] = True
    ours[np.searchsorted(touched, named)] = True
    if uncategorized is not None:
        ours[np.asarray(uncategorized, bool)[touched] & ~np.isin(touched, named)] = False
    stray = ours & (merged.visibility[touched] >= 0) & ~CATEGORY_MASK[merged.categories[touched].astype(np.int64)]
    stray_rows, stray_ks = touched[np.nonzero(stray)[0]], np.nonzero(stray)[1]
    cleared = [Conflict(str(theirs.image_ids[row]), KEYPOINTS[kp],
                        (float(merged.coords[row, kp, 0]), float(merged.coords[row, kp, 1]),
                         int(merged.visibility[row, kp])),
                        (float(theirs.coords[row, kp, 0]), float(theirs.coords[row, kp, 1]),
                         int(theirs.visibility[row, kp])),
                        f"{CATEGORIES[int(merged.categories[row])]} has no {KEYPOINTS[kp]}")
               for row, kp in zip(stray_rows.tolist(), stray_ks.tolist())]
    merged.coords[stray_rows, stray_ks] = -1
    merged.visibility[stray_rows, stray_ks] = -1
    dropped = {(row, kp) for row, kp in zip(stray_rows.tolist(), stray_ks.tolist())}
    kept = np.array([(row, kp) not in dropped for row, kp in zip(r.tolist(), k.tolist())], bool)
    conflict &= kept
    conflicts = [Conflict(str(theirs.image_ids[row]), KEYPOINTS[kp], (float(a[0]), float(a[1]), int(av)),
                          (float(t[0]), float(t[1]), int(tv)))
                 for row, kp, a, av, t, tv in zip(r[conflict].tolist(), k[conflict].tolist(), after_xy[conflict],
                                                  after_v[conflict].tolist(), now_xy[conflict],
                                                  now_v[conflict].tolist())]
    missing = sorted(set(missing) | {i for i in changes.categories if i not in index})
    # Rows whose values differ from the file's now: set by this session, or cleared.
    rows = np.unique(np.concatenate([r[~same_as_after & kept], np.asarray(category_rows, np.int64),
                                     stray_rows[theirs.visibility[stray_rows, stray_ks] >= 0]]))
    return MergeResult(merged, rows, int((~same_as_after & kept).sum()) + len(category_rows),
                       category_conflicts + conflicts + cleared, missing, np.asarray(category_rows, np.int64))
