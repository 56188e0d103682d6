"""The three-way merge of a session's edits onto an annotation file changed by another program."""

from __future__ import annotations

import numpy as np

from engine.io.annotations import Annotations
from engine.io.merge import PointChanges, merge_changes
from engine.schema import KEYPOINT_INDEX

K = KEYPOINT_INDEX


def _file(ids, seed=0) -> Annotations:
    rng = np.random.default_rng(seed)
    coords = rng.integers(0, 200, (len(ids), 24, 2)).astype(np.float32)
    vis = np.ones((len(ids), 24), np.int8)
    return Annotations.from_arrays(ids, [0] * len(ids), coords, vis)


def test_edits_merge_exactly_onto_the_changed_file_and_conflicts_are_listed():
    base = _file(["a", "b", "c"])
    ours = base.copy()
    ours.coords[0, K["neckline_left"]] = [10, 11]        # only we changed it
    ours.coords[1, K["shoulder_left"]] = [20, 21]        # both changed it, differently: a conflict
    ours.visibility[2, K["cuff_left_in"]] = 0            # both made the same change
    ours.coords[2, K["hemline_left"]] = [30, 31]         # an image the other side removed (below)
    changes = PointChanges.between(base.image_ids, base.coords, base.visibility, ours.coords, ours.visibility)
    assert len(changes) == 4
    # The other program: reorders the rows, adds one, edits points of its own, one the same as ours.
    theirs = Annotations.from_arrays(["d", "b", "a"], [0, 0, 0],
                                     np.concatenate([_file(["d"], 5).coords, base.coords[[1, 0]]]),
                                     np.concatenate([np.ones((1, 24), np.int8), base.visibility[[1, 0]]]))
    theirs.coords[1, K["shoulder_left"]] = [99, 98]
    theirs.coords[2, K["armpit_left"]] = [55, 56]
    result = merge_changes(changes, theirs)
    m = result.annotations
    assert m.image_ids.tolist() == ["d", "b", "a"]
    assert m.coords[2, K["neckline_left"]].tolist() == [10, 11]      # ours, applied
    assert m.coords[2, K["armpit_left"]].tolist() == [55, 56]        # theirs, kept
    assert m.coords[1, K["shoulder_left"]].tolist() == [20, 21]      # conflict: ours kept ...
    (conflict,) = result.conflicts                                   # ... and listed
    assert (conflict.image_id, conflict.keypoint, conflict.theirs) == ("b", "shoulder_left", (99.0, 98.0, 1))
    assert "kept 20_21_1 (the file had 99_98_1)" in conflict.describe()
    assert result.missing == ["c"] and result.applied == 2 and result.rows.tolist() == [1, 2]
    np.testing.assert_array_equal(m.coords[0], theirs.coords[0])
    assert theirs.coords[1, K["shoulder_left"]].tolist() == [99, 98]  # the file's copy is left alone


def test_a_change_whose_value_before_is_unknown_is_applied_without_a_conflict():
    theirs = _file(["a"])
    changes = PointChanges(np.array(["a"], dtype=object), np.array([3]), np.full((1, 2), np.nan, np.float32),
                           np.array([-1], np.int8), np.array([[7, 7]], np.float32), np.array([0], np.int8))
    result = merge_changes(changes, theirs)
    assert not result.conflicts and result.annotations.coords[0, 3].tolist() == [7, 7] and result.applied == 1
