import numpy as np

from engine.io.annotations import Annotations
from engine.model.crops import (
    apply_affine, crop_affine, crop_from_box, crop_keypoints, flip_keypoints, invert_affine, keypoint_box, warp_crop,
)
import torch

from engine.training.dataset import Augmentation, KeypointCropDataset, colour_jitter_batch, device_batch, random_crop_affine
from engine.io.images import write_jpeg
from engine.model.presets import get_preset
from engine.schema import CATEGORY_INDEX, CATEGORY_MASK, KEYPOINT_INDEX

NL, NR = KEYPOINT_INDEX["neckline_left"], KEYPOINT_INDEX["neckline_right"]


def _blouse():
    """Upright blouse keypoints (left = smaller x), category code, visibility."""
    c = CATEGORY_INDEX["blouse"]
    rng = np.random.default_rng(0)
    coords = np.full((24, 2), -1.0, np.float32)
    vis = np.where(CATEGORY_MASK[c], 1, -1).astype(np.int8)
    coords[CATEGORY_MASK[c]] = rng.uniform(60, 140, (int(CATEGORY_MASK[c].sum()), 2))
    coords[NL], coords[NR] = (80, 50), (120, 50)
    return coords, vis, c


def test_flip_twice_is_identity_and_left_keeps_the_smaller_x():
    coords, vis, _ = _blouse()
    once, v1 = flip_keypoints(coords, vis, 200)
    assert once[NL, 0] < once[NR, 0]  # after the mirror, the swapped point is again the left one
    twice, v2 = flip_keypoints(once, v1, 200)
    np.testing.assert_allclose(twice, coords, atol=1e-4)
    np.testing.assert_array_equal(v2, vis)
    # Through a flipped crop affine (the training path), too.
    m = crop_affine(100, 100, 160, 64, angle_deg=0.0, flip=True)
    c1, v1 = crop_keypoints(coords, vis, m, flipped=True)
    assert c1[NL, 0] < c1[NR, 0]
    back = apply_affine(c1, invert_affine(m))
    c2, v2 = crop_keypoints(back, v1, np.array([[1, 0, 0], [0, 1, 0]], np.float32), flipped=True)
    np.testing.assert_allclose(c2[vis >= 0], coords[vis >= 0], atol=1e-3)
    np.testing.assert_array_equal(v2, vis)


def test_a_rotated_keypoint_lands_on_the_same_garment_pixel():
    # A grey image with one bright 3x3 mark per keypoint, each a different colour.
    rng = np.random.default_rng(3)
    img = np.full((240, 240, 3), 90, np.uint8)
    pts = rng.integers(60, 180, (6, 2))
    colours = rng.integers(150, 255, (6, 3)).astype(np.uint8)
    for (x, y), col in zip(pts, colours):
        img[y - 2:y + 3, x - 2:x + 3] = col
    for angle in (-30.0, 17.0, 90.0):
        for flip in (False, True):
            m = crop_affine(120, 120, 200, 128, angle_deg=angle, flip=flip)
            crop = warp_crop(img, m, 128)
            moved = np.rint(apply_affine(pts.astype(np.float32), m)).astype(int)
            got = crop[moved[:, 1], moved[:, 0]].astype(int)
            assert np.abs(got - colours.astype(int)).max() <= 12, (angle, flip)


def test_random_crops_keep_the_garment_and_jitter_like_a_detector():
    coords, vis, _ = _blouse()
    box = keypoint_box(coords, vis)
    rng = np.random.default_rng(0)
    centres, inside = [], []
    for _ in range(200):
        m, flipped = random_crop_affine(rng, box, 0.15, 64, Augmentation())
        c, v = crop_keypoints(coords, vis, m, flipped)
        inside.append(((c[v >= 0] >= 0) & (c[v >= 0] <= 63)).all(axis=1).mean())
        centres.append(apply_affine(np.array([[100.0, 95.0]], np.float32), m)[0])
    assert np.mean(inside) > 0.95
    assert np.std(np.array(centres), axis=0).min() > 1.0  # position actually varies
    no_jitter = apply_affine(coords[vis >= 0], crop_from_box(box, 0.15, 64))
    assert no_jitter.min() > 0 and no_jitter.max() < 63


def test_colour_jitter_changes_colours_but_not_geometry():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)
    factors = torch.tensor([[1.2, 0.8, 1.1]])
    out = colour_jitter_batch(torch.from_numpy(img).permute(2, 0, 1)[None], factors)[0].permute(1, 2, 0).numpy()
    assert out.shape == img.shape and (out == np.round(out)).all() and out.min() >= 0 and out.max() <= 255
    assert not np.array_equal(out, img)
    assert np.corrcoef(out.reshape(-1).astype(float), img.reshape(-1).astype(float))[0, 1] > 0.7


def test_dataset_items_match_targets_and_mask_missing_points(tmp_path):
    coords, vis, c = _blouse()
    vis[KEYPOINT_INDEX["center_front"]] = -1  # not annotated in this image
    coords[KEYPOINT_INDEX["center_front"]] = -1
    (tmp_path / "Images" / "blouse").mkdir(parents=True)
    img = np.full((200, 200, 3), 120, np.uint8)
    write_jpeg(tmp_path / "Images" / "blouse" / "a.jpg", img)
    ann = Annotations.from_arrays(["Images/blouse/a.jpg"], [c], coords[None], vis[None])
    preset = get_preset("lite").with_(input_size=64, radius=6.0)
    for augment in (None, Augmentation()):
        ds = KeypointCropDataset(tmp_path, ann, preset, augment=augment)
        item = ds[0]
        assert item["image"].shape == (3, 64, 64) and item["image"].dtype == torch.uint8
        batch = device_batch({k: v[None] for k, v in item.items()}, preset, torch.device("cpu"))
        assert batch["image"].dtype == torch.float32 and batch["heat"].shape == (1, 24, 16, 16)
        assert batch["offsets"].shape == (1, 24, 2, 16, 16)
        valid = item["valid"].numpy()
        assert not valid[KEYPOINT_INDEX["center_front"]] and not valid[KEYPOINT_INDEX["waistband_left"]]
        assert valid.sum() >= 10
        assert (batch["heat"][0].sum(dim=(1, 2)) > 0).numpy().tolist() == valid.tolist()
        back = apply_affine(item["coords"].numpy(), invert_affine(item["affine"].numpy()))
        if augment is None:
            np.testing.assert_allclose(back[valid], coords[valid], atol=1e-3)
