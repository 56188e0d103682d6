"""The two-stage model end to end through the CLI: train -> predict -> eval on tiny synthetic data.

One tiny model is trained once per session (module fixture) and shared by the tests here.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from trained_fixtures import train_tiny_model  # the test-only tiny model shared with the hard-loop tests
from engine.io.annotations import load_annotations
from engine.cli import main
from engine.io.images import read_image
from engine.analysis.ne import evaluate
from engine.model.package import load_model
from engine.io.scores import load_scores, scores_path
from engine.model.pipeline import Pipeline
from engine.model.presets import get_preset
from engine.schema import CATEGORY_MASK
from engine.synth import generate_dataset

pytestmark = pytest.mark.float_paths  # its figures depend on the CPU's kernels: make test-kernels

CATEGORIES = "blouse,dress"


def _fkp(*args: str) -> int:
    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("two_stage")
    data = root / "data"
    generate_dataset(data, 64, seed=101, split="train", size=96, categories=CATEGORIES, hard_fraction=0.0, workers=1)
    generate_dataset(data, 12, seed=102, split="val", size=96, categories=CATEGORIES, hard_fraction=0.0, workers=1)
    generate_dataset(data, 16, seed=103, split="test", size=96, categories=CATEGORIES, hard_fraction=0.0, workers=1)
    model = root / "tiny.fkpmodel"
    train_tiny_model(data, model, 25, "--detector-steps", 120, "--detector-batch", 4, "--detector-lr", 2e-3,
                     "--eval-every", 120, "--half", "--box-search")
    return data, model


def _mean_layout_baseline(data, model_path, test) -> np.ndarray:
    """The trivial predictor: each category's mean keypoint layout (training set, in keypoint-box
    units) placed in the box the detector finds."""
    train = load_annotations(data / "Annotations" / "train.csv")
    present = train.visibility >= 0
    lo = np.where(present[..., None], train.coords, np.inf).min(axis=1)
    hi = np.where(present[..., None], train.coords, -np.inf).max(axis=1)
    unit = (train.coords - lo[:, None]) / np.maximum(hi - lo, 1)[:, None]
    # Per category: the mean over the images where the point is annotated.
    onehot = np.eye(5)[train.categories.astype(int)]                       # (N, 5)
    sums = np.einsum("nc,nk,nkd->ckd", onehot, present, np.where(present[..., None], unit, 0))
    counts = np.einsum("nc,nk->ck", onehot, present)[..., None]
    layout = sums / np.maximum(counts, 1)
    images = [read_image(data / i) for i in test.image_ids]
    _, _, _, boxes = Pipeline(load_model(model_path)).predict_images(images, list(test.categories.astype(int)))
    return boxes[:, None, :2] + layout[test.categories.astype(int)] * (boxes[:, None, 2:] - boxes[:, None, :2])


def test_cli_train_predict_eval_beats_the_mean_layout_baseline(trained, tmp_path, capsys, figure):
    """Model NE / baseline NE: 0.45-0.60 over FKP_TEST_SEED 0-4 x 1-2 threads; 0.45-0.66 with
    FKP_TEST_SEED 0-1 x default, SSE41 and AVX2 kernels."""
    data, model = trained
    pred_csv = tmp_path / "pred.csv"
    assert _fkp("predict", "--model", model, "--data", data, "--split", "test", "--out", pred_csv) == 0
    capsys.readouterr()
    assert _fkp("eval", data / "Annotations" / "test.csv", pred_csv, "--json") == 0
    ne = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["ne"]

    test = load_annotations(data / "Annotations" / "test.csv")
    baseline = load_annotations(pred_csv)  # same rows and categories; replace the coordinates
    baseline.coords = _mean_layout_baseline(data, model, test).astype(np.float32)
    baseline_ne = evaluate(test, baseline).ne
    figure("ne_over_baseline", ne / baseline_ne)
    assert ne < baseline_ne, f"model NE {ne:.3f} does not beat the mean-layout baseline {baseline_ne:.3f}"

    pred = load_annotations(pred_csv)
    assert list(pred.image_ids) == list(test.image_ids)
    # The category's keypoints are predicted (v = 1), the others are absent.
    np.testing.assert_array_equal(pred.visibility == 1, CATEGORY_MASK[pred.categories.astype(int)])
    ids, scores = load_scores(scores_path(pred_csv))
    assert ids == list(test.image_ids)
    mask = CATEGORY_MASK[pred.categories.astype(int)]
    assert ((scores[mask] >= 0) & (scores[mask] <= 1)).all() and (scores[~mask] == -1).all()


def test_package_records_training_metadata(trained):
    _, model = trained
    loaded = load_model(model)
    assert loaded.preset.input_size == 64 and loaded.preset.name == "lite"
    assert loaded.preset.box_search and not get_preset("lite").box_search, "--box-search is the package's default"
    meta = loaded.metadata
    assert 0 < meta["val_ne"] < 1 and meta["val_images"] == 12
    assert meta["data"].endswith("data") and meta["date"][:2] == "20"
    assert 0 <= meta["detector_val"]["mean_iou"] <= 1


def test_flip_tta_and_more_crops_agree_with_the_plain_prediction(trained, tmp_path, capsys, figure):
    """Mirrored crops are swapped back left/right: averaging them must not wreck the prediction.
    NE with / without: 0.86-1.06 over FKP_TEST_SEED 0-4 x 1-2 threads, 0.91-1.02 with FKP_TEST_SEED
    0-1 x default, SSE41 and AVX2 kernels (a left/right mix-up doubles it)."""
    data, model = trained
    plain, tta = tmp_path / "plain.csv", tmp_path / "tta.csv"
    assert _fkp("predict", "--model", model, "--data", data, "--split", "test", "--out", plain, "--no-flip-tta") == 0
    assert _fkp("predict", "--model", model, "--data", data, "--split", "test", "--out", tta,
                "--flip-tta", "--crops", 3) == 0
    test = load_annotations(data / "Annotations" / "test.csv")
    ne_plain = evaluate(test, load_annotations(plain)).ne
    ne_tta = evaluate(test, load_annotations(tta)).ne
    # A left/right mix-up would put each twin on the other side: NE would roughly double.
    figure("tta_over_plain", ne_tta / ne_plain)
    assert ne_tta < ne_plain * 1.25 + 0.01, (ne_plain, ne_tta)


def test_unreadable_and_missing_images_are_reported_and_written_as_missing(trained, tmp_path, capsys):
    data, model = trained
    copy = tmp_path / "data"
    shutil.copytree(data, copy)
    test = load_annotations(copy / "Annotations" / "test.csv")
    broken, gone = str(test.image_ids[0]), str(test.image_ids[1])
    (copy / broken).write_bytes(b"not a jpeg at all")
    (copy / gone).unlink()
    out = tmp_path / "pred.csv"
    assert _fkp("predict", "--model", model, "--data", copy, "--split", "test", "--out", out) == 0
    err = capsys.readouterr().err
    assert broken in err and gone in err
    pred = load_annotations(out)
    assert (pred.visibility[:2] == -1).all() and (pred.coords[:2] == -1).all()
    assert (pred.visibility[2:] == 1).sum() > 0
    result = evaluate(test, pred)
    assert result.missing == int((test.visibility[:2] == 1).sum())


def test_pipeline_reports_progress_partial_batches_and_stops_when_asked(trained):
    data, model = trained
    test = load_annotations(data / "Annotations" / "test.csv")
    pipeline = Pipeline(load_model(model), batch_size=4)
    seen = []
    batches = list(pipeline.iter_predict(data, list(test.image_ids), list(test.categories.astype(int)),
                                         on_progress=lambda done, total: seen.append((done, total))))
    assert [len(b) for b in batches] == [4, 4, 4, 4] and [int(b.rows[0]) for b in batches] == [0, 4, 8, 12]
    assert seen == [(0, 16), (4, 16), (8, 16), (12, 16), (16, 16)]
    calls = []
    stopped = list(pipeline.iter_predict(data, list(test.image_ids), should_stop=lambda: len(calls.append(1) or calls) > 2))
    assert len(stopped) == 2
    # Without categories the detector decides them; every row still has a valid category.
    assert all(((b.categories >= 0) & (b.categories < 5)).all() for b in stopped)
