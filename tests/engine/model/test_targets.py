import numpy as np
import pytest
import torch

from engine.model.targets import cell_centres, decode, encode_targets, instance_losses, targets_as_output


@pytest.mark.parametrize("size,stride,radius", [(64, 4, 6.0), (160, 4, 12.0), (256, 4, 24.0), (352, 4, 32.0)])
def test_encode_then_decode_returns_every_keypoint_within_half_a_pixel(size, stride, radius):
    rng = np.random.default_rng(size)
    for _ in range(40):
        coords = rng.uniform(0, size - 1, (24, 2)).astype(np.float32)
        # The borders and corners of the crop, where most of the disk falls outside the map.
        coords[:8] = [[0, 0], [size - 1, size - 1], [0, size - 1], [size - 1, 0],
                      [0, rng.uniform(0, size - 1)], [size - 1, rng.uniform(0, size - 1)],
                      [rng.uniform(0, size - 1), 0], [0.3, size - 1.2]]
        heat, offsets = encode_targets(coords, np.ones(24, bool), size, stride, radius)
        xy, conf = decode(targets_as_output(heat, offsets), radius, stride)
        err = np.linalg.norm(xy[0].numpy() - coords, axis=1)
        assert err.max() < 0.5, (coords[err.argmax()], err.max())
        assert (conf[0].numpy() > 0.1).all()


def test_targets_are_disks_with_offsets_pointing_at_the_keypoint():
    coords = np.array([[30.0, 20.0]] * 24, np.float32)
    valid = np.zeros(24, bool)
    valid[3] = True
    heat, offsets = encode_targets(coords, valid, 64, 4, 8.0)
    assert heat.shape == (24, 16, 16) and offsets.shape == (24, 2, 16, 16)
    assert heat[np.arange(24) != 3].sum() == 0  # invalid keypoints get no target
    c = cell_centres(64, 4)
    iy, ix = np.nonzero(heat[3])
    assert np.all((c[ix] - 30) ** 2 + (c[iy] - 20) ** 2 <= 64)
    np.testing.assert_allclose(c[ix] + 8.0 * offsets[3, 0, iy, ix], 30.0, atol=1e-4)
    np.testing.assert_allclose(c[iy] + 8.0 * offsets[3, 1, iy, ix], 20.0, atol=1e-4)
    assert np.all(offsets[3][:, heat[3] == 0] == 0)


def test_decode_is_robust_to_noisy_offsets():
    rng = np.random.default_rng(1)
    coords = rng.uniform(10, 150, (24, 2)).astype(np.float32)
    heat, offsets = encode_targets(coords, np.ones(24, bool), 160, 4, 12.0)
    noisy = offsets + rng.normal(0, 0.1, offsets.shape).astype(np.float32) * heat[:, None]  # 1.2 px noise
    xy, _ = decode(targets_as_output(heat, noisy), 12.0, 4)
    assert np.linalg.norm(xy[0].numpy() - coords, axis=1).mean() < 0.8


def test_loss_is_low_for_perfect_output_and_offsets_only_count_inside_the_disk():
    rng = np.random.default_rng(2)
    coords = rng.uniform(5, 60, (24, 2)).astype(np.float32)
    heat, offsets = encode_targets(coords, np.ones(24, bool), 64, 4, 6.0)
    perfect = targets_as_output(heat, offsets)
    ht, ot = torch.from_numpy(heat)[None], torch.from_numpy(offsets)[None]
    good = instance_losses(perfect, ht, ot, 6.0, 4, 1.0)
    assert good.shape == (1, 24) and float(good.max()) < 1e-3
    # Garbage offsets outside the disks change nothing; inside they raise the loss.
    outside = perfect.clone()
    mask_out = torch.from_numpy(np.repeat(heat == 0, 2, axis=0))[None]
    outside[:, 24:][mask_out] = 5.0
    assert torch.allclose(instance_losses(outside, ht, ot, 6.0, 4, 1.0), good)
    inside = perfect.clone()
    inside[:, 24:][~mask_out] += 0.5
    assert float(instance_losses(inside, ht, ot, 6.0, 4, 1.0).min()) > 0.1
