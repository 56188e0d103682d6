"""An adapt retrain holds out a share of the reviewed images (issue 31, item 3): never trained on,
measured before and after beside the old domain's hold-out, in `fkp retrain --json` and the job's report."""

from __future__ import annotations

import json
import math

import pytest

from trained_fixtures import TEST_SEED  # the suite's seed
from engine.cli import main
from engine.io.annotations import load_annotations
from engine.model.package import load_model
from engine.synth import load_hard_kinds
from engine.training import retrain as retrain_module
from engine.training.retrain import choose_reviewed_holdout

pytestmark = pytest.mark.float_paths  # predictions of a trained model: make test-kernels


def test_the_reviewed_hold_out_rule():
    ids = [f"Images/blouse/{i:03d}.jpg" for i in range(100)]
    held, note = choose_reviewed_holdout(ids, seed=0)
    assert len(held) == 20 and not note                        # 1 in 5
    assert choose_reviewed_holdout(ids[::-1], seed=0) == (held, note)  # the order does not matter
    assert choose_reviewed_holdout(ids, seed=1)[0] != held     # the seed does
    assert set(held) <= set(ids)
    assert len(choose_reviewed_holdout(ids[:30], 0)[0]) == 10  # at least 10 ...
    assert len(choose_reviewed_holdout(ids[:20], 0)[0]) == 10  # ... while 10 are left to train on
    for n, k in ((15, 5), (12, 3), (10, 2)):                   # fewer: what the rule allows, said
        held, note = choose_reviewed_holdout(ids[:n], 0)
        assert len(held) == k and f"only {n} reviewed images: {k} held out" in note
    for n in (9, 4, 1):                                         # too few to measure anything: none
        held, note = choose_reviewed_holdout(ids[:n], 0)
        assert held == [] and f"only {n} reviewed image(s), fewer than 10: none held out" in note


def test_adapt_retrain_never_trains_on_the_reviewed_hold_out_and_reports_it(loop_model, tmp_path, capsys,
                                                                            monkeypatch):
    data, model_path = loop_model
    reviewed = list(load_hard_kinds(data, "train"))[:20]
    assert len(reviewed) == 20
    # Every dataset the retrain trains on (augmented crops) is recorded.
    trained_on: list[str] = []
    real = retrain_module.KeypointCropDataset

    def recording(root, annotations, preset, augment=None, **kwargs):
        if augment is not None:
            trained_on.extend(map(str, annotations.image_ids))
        return real(root, annotations, preset, augment=augment, **kwargs)

    monkeypatch.setattr(retrain_module, "KeypointCropDataset", recording)
    hard = tmp_path / "reviewed.txt"
    hard.write_text("\n".join(reviewed) + "\n")
    out = tmp_path / "adapted.fkpmodel"
    code = main(["retrain", "--model", str(model_path), "--data", str(data), "--hard", str(hard), "--out", str(out),
                 "--mode", "adapt", "--steps", "6", "--batch-size", "4", "--detector-steps", "0",
                 "--boxes", "annotated", "--seed", str(TEST_SEED), "--json"])
    assert code == 0
    printed = capsys.readouterr().out
    report = json.loads(printed.strip().splitlines()[-1])
    held, note = choose_reviewed_holdout(reviewed, TEST_SEED)
    assert report["reviewed_holdout_images"] == len(held) == 10 and not note
    assert report["hard_images"] == 10  # the other half of the reviewed images
    assert trained_on and not set(trained_on) & set(held)
    assert set(reviewed) - set(held) <= set(trained_on)
    for side in ("before", "after"):
        assert math.isfinite(report[side]["reviewed_holdout"]) and report[side]["reviewed_holdout"] > 0
        assert report[side]["reviewed_holdout_seconds"] > 0
        assert math.isfinite(report[side]["overall"])  # the old domain's hold-out, beside it
    assert "reviewed held-out NE" in printed and "review seconds" in printed
    assert load_model(out).metadata["retrain"]["reviewed_holdout_images"] == 10


def test_the_hard_mode_holds_out_no_reviewed_images(loop_model):
    """A hard-set retrain keeps every hard image to train on (the hold-out is the adapt mode's)."""
    data, model_path = loop_model
    ann = load_annotations(data / "Annotations" / "train.csv")
    hard = list(load_hard_kinds(data, "train"))[:12]
    config = retrain_module.RetrainConfig(steps=2, batch_size=4, detector_steps=0, boxes="annotated", seed=TEST_SEED)
    result, _ = retrain_module.retrain_and_save(load_model(model_path), data, ann, hard, config, None,
                                                save=lambda r: None)
    assert result.reviewed_holdout_ids == [] and len(result.hard_ids) == 12
    assert math.isnan(result.after.reviewed_holdout) and result.report()["reviewed_holdout_images"] == 0
    assert "reviewed_holdout" not in result.report()["after"]  # no NaN that never equals itself
    with pytest.raises(retrain_module.RetrainError, match="not in the hard set"):
        retrain_module.retrain(load_model(model_path), data, ann, hard, config, reviewed_holdout_ids=["nope.jpg"])
