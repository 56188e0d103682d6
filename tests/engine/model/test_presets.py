import json

import pytest
import torch

from engine.model.device import autocast_for, memory_format_for, pick_device
from engine.model.presets import PRESETS, Preset, get_preset


def test_presets_round_trip_through_json_and_safe_torch_load(tmp_path):
    for preset in PRESETS.values():
        assert Preset.from_dict(json.loads(json.dumps(preset.to_dict()))) == preset
        torch.save({"preset": preset.to_dict()}, tmp_path / "p.pt")
        assert Preset.from_dict(torch.load(tmp_path / "p.pt", weights_only=True)["preset"]) == preset


def test_presets_hold_what_both_stages_need():
    fast, acc, lite = get_preset("fast"), get_preset("accurate"), get_preset("lite")
    assert acc.detector_backbone == "resnet101" and fast.detector_backbone != "resnet101"
    assert acc.flip_tta and not fast.flip_tta and acc.num_crops > 1 and fast.num_crops == 1
    assert (fast.input_size, acc.input_size) == (256, 352)
    for p in (fast, acc, lite):
        assert p.input_size % p.stride == 0 and p.radius >= p.stride
        assert p.detector_min_size <= p.detector_max_size and 0 < p.crop_margin < 0.5
    changed = lite.with_(input_size=64, net={"num_stages": 1})
    assert changed.net.num_stages == 1 and changed.input_size == 64 and lite.net.num_stages == 2
    with pytest.raises(ValueError, match="fast, accurate, lite"):
        get_preset("huge")


def test_cpu_device_runs_without_autocast_or_channels_last():
    dev = pick_device("cpu")
    assert dev.type == "cpu" and memory_format_for(dev) == torch.contiguous_format
    with autocast_for(dev):
        y = torch.ones(2, 2) @ torch.ones(2, 2)
    assert y.dtype == torch.float32
    if not torch.cuda.is_available():
        assert pick_device("cuda").type == "cpu" and pick_device().type == "cpu"
