"""The keypoint net's input made on the device equals the per-sample CPU path it replaced.

The reference functions below are the previous per-sample implementations (colour jitter and
normalization in numpy, `encode_targets` per image), kept here as the specification.
"""

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from engine.io.annotations import Annotations
from engine.io.images import write_jpeg
from engine.model.crops import MEAN, STD, crop_affine, warp_crop
from engine.model.device_crops import network_input, normalize_batch
from engine.model.pipeline import DeviceImages
from engine.model.presets import get_preset
from engine.model.targets import encode_targets, encode_targets_batch
from engine.synth import render_sample
from engine.training.dataset import Augmentation, KeypointCropDataset, device_batch, random_crop_affine
from engine.training.ohem import grouped_ohem_loss, ohem_loss

pytestmark = pytest.mark.float_paths  # its figures depend on the CPU's kernels: make test-kernels

CPU = torch.device("cpu")


# --- the previous per-sample CPU path (reference) -------------------------------------------


def reference_colour_jitter(crop: np.ndarray, b: float, c: float, s: float) -> np.ndarray:
    x = crop.astype(np.float32)
    grey = x @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    x = grey[..., None] + s * (x - grey[..., None])
    x = grey.mean() + c * (x - grey.mean())
    return np.clip(x * b, 0, 255).astype(np.uint8)


def reference_normalize(crop: np.ndarray) -> np.ndarray:
    return ((crop.astype(np.float32) - MEAN) / STD).transpose(2, 0, 1)


def _dataset(tmp_path, n=6, size=64, augment=Augmentation()):
    rng = np.random.default_rng(1)
    ids, cats, coords, vis = [], [], [], []
    for i in range(n):
        sample = render_sample(rng, i % 5, 160)
        (tmp_path / "Images").mkdir(exist_ok=True)
        write_jpeg(tmp_path / "Images" / f"{i}.jpg", sample.image)
        ids.append(f"Images/{i}.jpg")
        cats.append(sample.category)
        coords.append(sample.coords)
        vis.append(sample.visibility)
    ann = Annotations.from_arrays(ids, np.asarray(cats), np.asarray(coords, np.float32), np.asarray(vis, np.int8))
    preset = get_preset("lite").with_(input_size=size, radius=6.0)
    return KeypointCropDataset(tmp_path, ann, preset, augment=augment, seed=3), preset


def test_device_batch_equals_the_per_sample_cpu_path_for_the_same_parameters(tmp_path):
    ds, preset = _dataset(tmp_path)
    ds.set_epoch(2)
    batch = next(iter(DataLoader(ds, batch_size=len(ds))))
    out = device_batch(batch, preset, CPU)
    assert out["image"].dtype == torch.float32 and out["image"].shape == (len(ds), 3, 64, 64)
    for i in range(len(ds)):
        # The same random stream as before: the crop's transform, then the three colour factors.
        rng = np.random.default_rng((3, 2, i))
        random_crop_affine(rng, ds.boxes[i], preset.crop_margin, 64, ds.augment)
        factors = 1.0 + rng.uniform(-ds.augment.colour, ds.augment.colour, size=3)
        np.testing.assert_allclose(batch["colour"][i].numpy(), factors, rtol=1e-6)
        crop = batch["image"][i].permute(1, 2, 0).numpy()
        want = reference_normalize(reference_colour_jitter(crop, *factors))
        got = out["image"][i].numpy()
        # float rounding may move a value across a whole grey level (the jitter cuts to integers)
        diff = np.abs(got - want)
        assert diff.max() <= 1.01 / (0.224 * 255) and (diff < 1e-4).mean() > 0.99
        heat, offsets = encode_targets(batch["coords"][i].numpy(), batch["valid"][i].numpy(), 64, preset.stride,
                                       preset.radius)
        np.testing.assert_array_equal(out["heat"][i].numpy(), heat)
        np.testing.assert_allclose(out["offsets"][i].numpy(), offsets, atol=1e-6)
    assert out["heat"].sum() > 0 and not torch.equal(out["image"], normalize_batch(batch["image"]))


def test_without_augmentation_the_crop_is_only_normalized(tmp_path):
    ds, preset = _dataset(tmp_path, n=3, augment=None)
    batch = next(iter(DataLoader(ds, batch_size=3)))
    assert (batch["colour"] == 1).all()
    out = device_batch(batch, preset, CPU)
    for i in range(3):
        np.testing.assert_allclose(out["image"][i].numpy(), reference_normalize(batch["image"][i].permute(1, 2, 0).numpy()),
                                   atol=1e-6)
    np.testing.assert_allclose(network_input(batch["image"], CPU).numpy(), out["image"].numpy(), atol=1e-6)
    again = device_batch(out, preset, CPU)  # a prepared batch is only moved
    assert torch.equal(again["image"], out["image"]) and torch.equal(again["heat"], out["heat"])


@pytest.mark.parametrize("size,stride,radius", [(64, 4, 6.0), (96, 4, 10.0)])
def test_batched_targets_equal_the_per_image_encoder(size, stride, radius):
    rng = np.random.default_rng(0)
    coords = rng.uniform(-5, size + 5, (3, 24, 2)).astype(np.float32)
    valid = rng.random((3, 24)) > 0.3
    heat, offsets = encode_targets_batch(torch.from_numpy(coords), torch.from_numpy(valid), size, stride, radius)
    for i in range(3):
        h, o = encode_targets(coords[i], valid[i], size, stride, radius)
        np.testing.assert_array_equal(heat[i].numpy(), h)
        np.testing.assert_allclose(offsets[i].numpy(), o, atol=1e-6)


def test_prediction_crops_cut_on_the_device_match_opencvs_warp():
    rng = np.random.default_rng(0)
    images = [render_sample(np.random.default_rng(i), i % 5, 240).image for i in range(3)]
    images.append(render_sample(np.random.default_rng(7), 1, 180).image)  # another size: its own group
    mats = np.stack([[crop_affine(*rng.uniform(40, 180, 2), rng.uniform(60, 260), 64, rng.uniform(-40, 40), flip=f)
                      for f in (False, True)] for _ in images]).astype(np.float32)
    uploaded = DeviceImages(images, CPU, grid=True)     # the accelerator's path, on the CPU
    got = uploaded.crops(mats, 64).numpy().reshape(4, 2, 3, 64, 64)
    want = np.stack([[reference_normalize(warp_crop(img, mats[i, v], 64)) for v in range(2)]
                     for i, img in enumerate(images)])
    diff = np.abs(got - want)
    # OpenCV interpolates in fixed point and rounds to uint8: within one grey level.
    assert diff.max() <= 1.01 / (0.224 * 255) and diff.mean() < 0.01
    sub = uploaded.subset([3, 0])
    assert sub.hw(0) == (180, 180)
    np.testing.assert_allclose(sub.crops(mats[[3, 0]], 64).numpy().reshape(2, 2, 3, 64, 64), got[[3, 0]], atol=1e-6)


def test_ohem_and_the_loss_need_nothing_from_the_host():
    # Meta tensors have no values: .item(), int(), boolean indexing or nonzero would raise here,
    # as they would make a CUDA host wait for the GPU before backward.
    from engine.training.keypoints import batch_loss

    preset = get_preset("lite").with_(input_size=64)
    per = torch.empty(4, 24, device="meta", requires_grad=True)
    valid = torch.empty(4, 24, dtype=torch.bool, device="meta")
    ohem_loss(per * 2, valid, 0.5).backward()
    grouped_ohem_loss(per * 2, valid, 0.5, torch.empty(4, dtype=torch.long, device="meta")).backward()
    outputs = [torch.empty(4, 72, 16, 16, device="meta", requires_grad=True) for _ in range(2)]
    batch = {"heat": torch.empty(4, 24, 16, 16, device="meta"), "offsets": torch.empty(4, 24, 2, 16, 16, device="meta"),
             "valid": valid, "group": torch.empty(4, dtype=torch.long, device="meta")}
    loss, plain = batch_loss(outputs, batch, preset)
    loss.backward()
    assert isinstance(plain, torch.Tensor) and plain.shape == ()
