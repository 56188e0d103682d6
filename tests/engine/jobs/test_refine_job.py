"""The refinement after a correction as the studio's model thread runs it (`refine_job`): a
point set by hand is never moved, untouched points are predicted again, nothing set gives the
prediction back, and the loaded model and an image's candidate peaks are kept between corrections."""

from __future__ import annotations

import numpy as np
import pytest

from engine.io.annotations import load_annotations
from engine.io.predictions import Predictions
from engine.jobs.model_jobs import RefinerHolder, refine_job
from engine.schema import CATEGORY_MASK

pytestmark = pytest.mark.float_paths  # predictions of a trained model: make test-kernels


def _predicted(workspace, row: int) -> tuple[str, int, Predictions]:
    from engine.model.package import load_model
    from engine.model.pipeline import Pipeline

    truth = load_annotations(workspace.root / "Annotations" / "train.csv").subset(np.array([row]))
    pred, scores, errors = Pipeline(load_model(workspace.model_path("v001"))).predict(workspace.root, truth)
    assert errors == {}
    return str(truth.image_ids[0]), int(truth.categories[0]), Predictions.from_annotations(pred, scores, "model v001")


def test_refine_job_keeps_set_points_and_predicts_the_others_again(workspace):
    holder = RefinerHolder()
    image_id, category, predicted = _predicted(workspace, 0)
    mask = CATEGORY_MASK[category]
    nothing = refine_job(holder, workspace, "v001", image_id, category, predicted, np.zeros(24, bool),
                         predicted.coords[0])(None)["prediction"]
    np.testing.assert_array_equal(nothing.coords, predicted.as_saved().coords)  # nothing set: as predicted
    loaded = holder.refiner
    fixed = np.zeros(24, bool)
    fixed[np.flatnonzero(mask)[:3]] = True
    set_xy = predicted.coords[0] + np.where(fixed[:, None], 25.0, 0.0)
    result = refine_job(holder, workspace, "v001", image_id, category, predicted, fixed, set_xy)(None)
    out = result["prediction"]
    assert holder.refiner is loaded and len(loaded._peaks) == 1, "the model and the image's peaks are kept"
    assert result["hints"] is False  # the tiny model's net takes no hints: the shape model re-decodes
    assert out.image_ids == predicted.image_ids and out.rows.tolist() == [0] and out.present[0]
    # The set points' predictions are left as they were (their annotations are what counts).
    np.testing.assert_array_equal(out.coords[0, fixed], predicted.as_saved().coords[0, fixed])
    assert (out.coords[0, ~mask] == -1).all() and (out.visibility[0, ~mask] == -1).all()
    assert (out.visibility[0, mask] >= 0).all()
