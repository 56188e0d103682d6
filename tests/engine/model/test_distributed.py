"""Several processes under `torchrun` (gloo on the CPU), the rule of what scales with the world
size, and the keypoint loader's workers across epochs.

The torchrun test is one launch of two ranks that runs `fkp train` (keypoint net with a loader
worker across an epoch boundary, then the detector, both DDP), `fkp predict` (sharded) and
`fkp train-detector`, and compares the sharded CSV with the one a single process writes.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from trained_fixtures import LOOP_PRESET
from engine.cli import main
from engine.io.annotations import load_annotations
from engine.model.checkpoints import KEYPOINT_FORMAT, load_checkpoint
from engine.model.detector import load_detector
from engine.model.distributed import (Ranks, all_sum, any_rank, check_sync_bn, gather_to_main, join_process_group,
                                      scaled_lr, scaled_steps, shard_bounds)
from engine.model.package import load_model
from engine.model.presets import get_preset
from engine.synth import generate_dataset
from engine.training.dataset import Augmentation, KeypointCropDataset
from engine.training.loader import WORKER_START, EpochItems, EpochSampler, RandomOrder, epoch_loader

pytestmark = pytest.mark.float_paths  # its figures depend on the CPU's kernels: make test-kernels

REPO = Path(__file__).resolve().parents[3]
HERE = Path(__file__).resolve().parent


# --- the rule and the single-process helpers -----------------------------------------------


def test_learning_rate_grows_with_the_square_root_of_the_world_and_steps_shrink_with_it():
    assert scaled_lr(1e-3, 1) == 1e-3
    assert math.isclose(scaled_lr(1e-3, 4), 2e-3) and math.isclose(scaled_lr(2e-3, 8), 2e-3 * math.sqrt(8))
    # As many images as one process: ceil(steps / world), never 0 for a positive count.
    assert [scaled_steps(3000, w) for w in (1, 2, 3, 8)] == [3000, 1500, 1000, 375]
    assert scaled_steps(5, 2) == 3 and scaled_steps(1, 8) == 1 and scaled_steps(0, 4) == 0


@pytest.mark.parametrize("n,world,block", [(7, 2, 2), (16, 3, 1), (100, 8, 8), (3, 4, 2), (0, 2, 4), (9, 1, 4)])
def test_shards_cover_the_items_once_in_order_in_whole_blocks(n, world, block):
    bounds = shard_bounds(n, world, block)
    assert len(bounds) == world + 1 and bounds[0] == 0 and bounds[-1] == n
    sizes = np.diff(bounds)
    assert (sizes >= 0).all()
    # Every share but the one holding the last item starts and ends on a block boundary.
    assert all(b % block == 0 for b in bounds[:-1]) or n == 0
    full = -(-np.minimum(sizes, n) // block)
    assert full.max() - full.min() <= 1   # balanced to within one block


def test_alone_the_collectives_are_the_identity():
    ranks = join_process_group("cpu")
    assert ranks == Ranks(0, 1, 0, torch.device("cpu")) and ranks.main and not ranks.distributed
    assert any_rank(True) and not any_rank(False)
    assert all_sum([1.5, 2]).tolist() == [1.5, 2.0]
    assert gather_to_main({"a": 1}) == [{"a": 1}]


def test_sync_bn_is_refused_on_the_cpu_with_several_ranks_and_moot_alone():
    with pytest.raises(ValueError, match="CUDA"):
        check_sync_bn(True, 2, torch.device("cpu"))
    assert not check_sync_bn(True, 1, torch.device("cpu"))
    assert not check_sync_bn(False, 2, torch.device("cpu"))


# --- the loader ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ddp") / "data"
    generate_dataset(root, 16, seed=1, split="train", size=96, categories="blouse,dress", hard_fraction=0.0, workers=1)
    generate_dataset(root, 4, seed=2, split="val", size=96, categories="blouse,dress", hard_fraction=0.0, workers=1)
    generate_dataset(root, 7, seed=3, split="test", size=96, categories="blouse,dress", hard_fraction=0.0, workers=1)
    return root


def test_loader_workers_live_across_epochs_and_see_each_epoch(data):
    preset = get_preset("lite").with_(input_size=64)
    ds = KeypointCropDataset(data, data / "Annotations" / "train.csv", preset, augment=Augmentation(), seed=5)
    items = EpochItems(ds, np.arange(4))
    sampler = EpochSampler(RandomOrder(len(items), seed=5))
    loader = epoch_loader(items, sampler, batch_size=4, workers=1)
    assert loader.persistent_workers and loader.multiprocessing_context.get_start_method() == WORKER_START
    seen = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        ds[0]  # OpenCV runs in the parent between epochs, as validation does
        (batch,) = list(loader)
        seen.append(batch)
    for epoch, batch in enumerate(seen):
        order = batch["index"].numpy()
        assert sorted(order.tolist()) == [0, 1, 2, 3]
        # The worker made each item with the epoch the sampler tagged, as the parent would.
        made = [items[(epoch, int(np.flatnonzero(items.indices == i)[0]))] for i in order]
        for key, value in batch.items():
            assert torch.equal(value, torch.stack([m[key] for m in made])), key
    # Another epoch, other augmentations (and another order from the same seed's next permutation).
    first = dict(zip(seen[0]["index"].tolist(), seen[0]["image"]))
    second = dict(zip(seen[1]["index"].tolist(), seen[1]["image"]))
    assert all(not torch.equal(first[i], second[i]) for i in first)


# --- torchrun, two ranks ----------------------------------------------------------------------


def test_train_and_predict_under_torchrun_write_once_and_match_one_process(data, tmp_path):
    # An unreadable image: its error travels from whichever rank predicts it to rank 0's files.
    test = load_annotations(data / "Annotations" / "test.csv")
    (data / test.image_ids[5]).write_bytes(b"not a jpeg")
    preset_json = tmp_path / "tiny.json"
    preset_json.write_text(json.dumps({**LOOP_PRESET, "epochs": 2}))
    model, sharded, single = tmp_path / "m.fkpmodel", tmp_path / "sharded.csv", tmp_path / "single.csv"
    detector = tmp_path / "det.pt"
    predict = ["predict", "--model", str(model), "--data", str(data), "--split", "test", "--threads", "1",
               "--batch-size", "2", "--device", "cpu"]
    commands = [
        ["train", "--data", str(data), "--preset", "lite", "--preset-json", str(preset_json), "--out", str(model),
         "--batch-size", "4", "--workers", "1", "--detector-steps", "6", "--detector-batch", "2", "--eval-every", "3",
         "--threads", "1", "--device", "cpu"],
        [*predict, "--out", str(sharded)],
        ["train-detector", "--data", str(data), "--preset", "lite", "--detector-size", "96", "--out",
         str(detector), "--detector-steps", "4", "--detector-batch", "2", "--eval-every", "4", "--threads", "1",
         "--device", "cpu"],
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                        str(HERE / "fkp_commands.py"), json.dumps(commands)],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]

    # One writer: rank 0 reports each file once; the work folder holds the stage checkpoints only.
    assert r.stdout.count(f"wrote {model}") == 1 and r.stdout.count(f"wrote {sharded}") == 1, r.stdout
    work = tmp_path / "m.work"
    assert sorted(p.name for p in work.iterdir()) == ["detector.pt", "keypoints.best.pt", "keypoints.pt"]
    # Keypoints: 16 images = 2 ranks x 2 steps x 4 per epoch; every rank validated its share of 4.
    history = load_checkpoint(work / "keypoints.pt", KEYPOINT_FORMAT)["history"]
    assert [h["epoch"] for h in history] == [1, 2] and [h["images_seen"] for h in history] == [16, 32]
    assert all(h["val_images"] == 4 and np.isfinite(h["val_ne"]) for h in history)
    assert f"peak lr {scaled_lr(LOOP_PRESET['lr'], 2):.3g}" in r.stderr
    # Detector: 6 single-process steps are 3 on two ranks; its record counts both ranks' images.
    _, _, meta = load_detector(work / "detector.pt")
    assert meta["step"] == 3 and meta["images"] == 16 and set(meta["val"]) >= {"mean_iou", "recall50"}
    assert load_model(model).metadata["val_images"] == 4
    # fkp train-detector alone, in the same process group: 4 steps are 2 on two ranks, one file.
    assert r.stdout.count(f"wrote {detector}") == 1
    assert load_detector(detector)[2]["step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("det")) == ["det.pt"]

    assert main([*predict, "--out", str(single)]) == 0
    # Byte for byte, on any CPU: both runs take this machine's kernels (the environment is passed on),
    # one thread, and the same batches of 2 (shards are whole batches); only the process differs.
    assert single.read_bytes() == sharded.read_bytes()
    assert single.with_suffix(".scores.csv").read_bytes() == sharded.with_suffix(".scores.csv").read_bytes()
    assert len(load_annotations(sharded)) == 7 and f"error: image {test.image_ids[5]}" in r.stderr
