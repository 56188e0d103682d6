"""The one prediction type (`engine.io.predictions.Predictions`): batches placed by their rows,
the rounding as saved, one mark for a missing confidence, the file form and back."""

from __future__ import annotations

import numpy as np

from engine.io.annotations import Annotations
from engine.io.predictions import MISSING_SCORE, Predictions, known_scores
from engine.schema import NUM_KEYPOINTS


def _batch(rows, ids, x: float, score: float) -> Predictions:
    part = Predictions.unpredicted(ids, np.zeros(len(ids), np.int64), rows=rows, source="model v001")
    part.coords[:, :2] = x
    part.visibility[:, :2] = 1
    part.scores[:, :2] = score
    part.present[:] = True
    return part


def test_batches_land_on_their_rows_and_the_rest_stays_unpredicted():
    whole = Predictions.unpredicted(["a", "b", "c", "d"], [0, 0, 0, 0], source="model v001")
    whole.put(_batch([3, 1], ["d", "b"], 12.4, 0.61234))
    assert whole.present.tolist() == [False, True, False, True]
    np.testing.assert_array_equal(whole.coords[[0, 2]], -1)
    assert (whole.scores[[0, 2]] == MISSING_SCORE).all() and whole.scores[1, 0] == np.float32(0.61234)
    whole.clear(np.array([3]))
    assert whole.present.tolist() == [False, True, False, False] and (whole.visibility[3] == -1).all()


def test_as_saved_rounds_present_points_and_keeps_the_missing_marks():
    saved = _batch([0], ["a"], 12.6, 0.61251).as_saved()
    assert saved.coords[0, 0, 0] == 13 and saved.scores[0, 0] == np.float32(0.613)
    assert (saved.coords[0, 2:] == -1).all() and (saved.scores[0, 2:] == MISSING_SCORE).all()
    assert np.isnan(known_scores(saved.scores)[0, 2:]).all()


def test_take_concat_and_the_file_form_keep_ids_rows_and_errors_together():
    a = _batch([0, 1], ["a", "b"], 5.0, 0.5)
    b = Predictions.unpredicted(["c"], [2], rows=[2], errors={"c": "c: not an image"})
    both = Predictions.concat([a, b])
    assert both.rows.tolist() == [0, 1, 2] and both.errors == {"c": "c: not an image"}
    picked = both.take([2, 0])
    assert picked.image_ids == ["c", "a"] and picked.errors == {"c": "c: not an image"} and picked.rows.tolist() == [2, 0]
    ann, scores = both.to_annotations()
    back = Predictions.from_annotations(ann, scores, "file")
    np.testing.assert_array_equal(back.coords, both.coords)
    np.testing.assert_array_equal(back.scores, both.scores)
    assert back.image_ids == ["a", "b", "c"] and back.present.all()


def test_a_file_without_scores_reads_as_missing_confidences_not_nan():
    ann = Annotations.from_arrays(["a"], [0], np.zeros((1, NUM_KEYPOINTS, 2)), np.ones((1, NUM_KEYPOINTS)))
    read = Predictions.from_annotations(ann, None, "file")
    assert (read.scores == MISSING_SCORE).all()
    assert (Predictions.from_annotations(ann, np.full((1, NUM_KEYPOINTS), np.nan)).scores == MISSING_SCORE).all()
