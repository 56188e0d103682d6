"""The adapt retrain's recipe (issue 31): its learning-rate schedule, batches with pseudo-labelled
images, self-training, and a fixture-sized run in which the default recipe learns a new domain."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from trained_fixtures import TEST_SEED
from engine.analysis.ne import evaluate
from engine.io.annotations import concat_annotations, load_annotations
from engine.model.package import load_model
from engine.synth import generate_dataset
from engine.training.retrain import (RetrainConfig, mixed_batches, predict_annotated_boxes, pseudo_labels, retrain,
                                     retrain_lr_factor)
from engine.training.retrain_config import ADAPT_SETTINGS

pytestmark = pytest.mark.float_paths  # its figures depend on the CPU's kernels: make test-kernels

VAL_CSV = __import__("pathlib").Path(__file__).resolve().parents[2] / "data" / "fashionai" / "val.csv"


def test_the_schedule_warms_up_from_below_the_peak_and_ends_low():
    # A one-step retrain never runs at the peak (it used to: warm-up 1 step, cosine from 0).
    assert retrain_lr_factor(0, 1, 0.1) == pytest.approx(0.5 * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi / 2))))
    assert retrain_lr_factor(0, 1, 0.1) < 0.3
    factors = [retrain_lr_factor(s, 100, 0.1) for s in range(100)]
    peak = int(np.argmax(factors))
    assert 8 <= peak <= 10 and factors[0] < 0.1 * factors[peak] + 1e-9
    assert all(a < b for a, b in zip(factors[:peak], factors[1:peak + 1]))        # up during the warm-up
    assert all(a >= b for a, b in zip(factors[peak:], factors[peak + 1:]))        # then only down
    assert factors[-1] < 0.05 and max(factors) <= 1.0


def test_mixed_batches_with_pseudo_labelled_images_keep_each_share():
    plain = mixed_batches(n_hard=5, n_replay=40, batch_size=8, hard_share=0.5, steps=20, seed=3)
    # Without pseudo-labelled images the batches are the ones they always were.
    assert np.array_equal(plain, mixed_batches(5, 40, 8, 0.5, 20, 3, n_pseudo=0, pseudo_share=0.25))
    b = mixed_batches(n_hard=5, n_replay=40, batch_size=8, hard_share=0.5, steps=20, seed=3, n_pseudo=7,
                      pseudo_share=0.25)
    assert b.shape == (20, 8)
    assert (b[:, :4] < 5).all() and ((b[:, 4:6] >= 5) & (b[:, 4:6] < 45)).all() and (b[:, 6:] >= 45).all()
    counts = np.bincount(b[:, 6:].ravel() - 45, minlength=7)
    assert counts.max() - counts.min() <= 1


def _new_domain(loop_model, tmp_path):
    """(root, training annotations, reviewed ids, new-domain test set): the loop model's data with
    48 reviewed images drawn with half of val.csv's layouts and 16 test images with the other half's."""
    data, model_path = loop_model
    root = tmp_path / "data"
    shutil.copytree(data, root)
    lines = VAL_CSV.read_text(encoding="utf-8").splitlines(keepends=True)
    for k in range(2):
        (tmp_path / f"layouts{k}.csv").write_text(lines[0] + "".join(lines[1 + k::2]), encoding="utf-8")
    reviewed = load_annotations(generate_dataset(root, 48, seed=300 + TEST_SEED, split="new_a", size=96,
                                                 categories="blouse,dress", layouts=tmp_path / "layouts0.csv",
                                                 workers=1))
    test = load_annotations(generate_dataset(root, 16, seed=400 + TEST_SEED, split="new_b", size=96,
                                             categories="blouse,dress", layouts=tmp_path / "layouts1.csv", workers=1))
    training = concat_annotations(load_annotations(root / "Annotations" / "train.csv"), reviewed)
    return root, training, [str(i) for i in reviewed.image_ids], test, load_model(model_path)


def _ne(net, preset, root, truth) -> float:
    return float(evaluate(truth, predict_annotated_boxes(net, preset, root, truth, torch.device("cpu"), 16),
                          intersect=True).ne)


def test_the_adapt_recipe_learns_a_small_new_domain(loop_model, tmp_path, figure):
    """The adapt recipe (`RetrainConfig.adapt()`: its replayed share, distillation, frozen BatchNorm,
    schedule and steps; no detector steps) on 48 reviewed images of a new domain (real FashionAI
    layouts) beside the tiny model's 48 training images replayed, tested on 16 images drawn with
    other layouts (keypoint network at the annotated boxes). New-domain NE after /
    before, measured over FKP_TEST_SEED 0-4 (one thread): 0.75-0.87 under ONEDNN_MAX_CPU_ISA=SSE41
    ATEN_CPU_CAPABILITY=default (0.746, 0.759, 0.805, 0.752, 0.872), 0.60-0.80 under
    ONEDNN_MAX_CPU_ISA=AVX2 (0.702, 0.804, 0.788, 0.600, 0.739); the assertion: below 0.95 (the
    error shrinks by at least 5 %; a retrain that learns nothing, as the earlier adapt settings on
    the benchmark, gives about 1)."""
    root, training, reviewed, test, model = _new_domain(loop_model, tmp_path)
    preset = model.preset
    # The recipe's learning rate is a tenth of the `lite` preset's training rate (3e-4 of 3e-3); the
    # tiny model trained at 1e-2 gets a tenth of its own.
    config = RetrainConfig.adapt(detector_steps=0, boxes="annotated", seed=TEST_SEED, lr=preset.lr / 10)
    before = _ne(model.keypoint_net.eval(), preset, root, test)
    result = retrain(model, root, training, reviewed, config, unreviewed=test)
    after = _ne(result.model.keypoint_net.eval(), preset, root, test)
    figure("new_domain_ratio", after / before)
    assert after < 0.95 * before, (before, after)


def test_self_training_labels_only_sure_points_and_trains_on_them(loop_model, tmp_path):
    root, training, reviewed, test, model = _new_domain(loop_model, tmp_path)
    config = RetrainConfig.adapt(steps=3, steps_per_image=0, detector_steps=0, boxes="annotated", seed=TEST_SEED,
                                 self_training=True,
                                 pseudo_min_confidence=0.0, pseudo_max_flip=1.0, pseudo_max_stacks=1.0)
    model.keypoint_net.eval()
    everything = pseudo_labels(model, root, test, config, torch.device("cpu"), None)
    strict = pseudo_labels(model, root, test,
                           RetrainConfig.adapt(pseudo_min_confidence=0.99, pseudo_max_flip=1e-4), torch.device("cpu"),
                           None)
    assert len(everything) == len(strict) == len(test)
    # The crops are the same (every predicted point boxes them); the strict labels keep fewer points.
    assert np.array_equal(everything.boxes, strict.boxes)
    assert (strict.visibility >= 0).sum() < (everything.visibility >= 0).sum()
    item = everything[0]
    assert item["valid"].any() and item["image"].shape[-1] == model.preset.input_size
    result = retrain(model, root, training, reviewed, config, unreviewed=test)
    assert len(result.losses) == 3 and all(np.isfinite(result.losses))
    assert "self_training" not in ADAPT_SETTINGS or isinstance(ADAPT_SETTINGS["self_training"], bool)
