"""The model package: round trip, half precision, and clear refusal of bad files."""

from __future__ import annotations

import pickle

import pytest
import torch

from engine.model.detector import DetectorConfig, build_detector
from engine.model.hourglass import KeypointNet
from engine.io.model_files import package_file
from engine.model.package import ModelPackageError, load_model, read_metadata, save_model
from engine.model.presets import get_preset

PRESET = get_preset("lite").with_(
    input_size=32,
    net={"blocks": (1, 1, 1, 1), "widths": ((8, 4), (8, 4), (8, 4), (8, 4)), "stem_channels": 8,
         "decoder_channels": 8, "num_stages": 1},
)
DETECTOR = DetectorConfig(backbone="resnet18", min_size=64, max_size=64, fpn_channels=16, box_head_dim=16)


@pytest.fixture()
def package(tmp_path):
    torch.manual_seed(0)
    det, net = build_detector(DETECTOR).eval(), KeypointNet(PRESET.net).eval()
    path = save_model(tmp_path / "model", PRESET, det, DETECTOR, net, {"data": tmp_path / "set", "val_ne": 0.0512})
    return path, det, net


def test_round_trip_keeps_weights_configs_and_metadata(package, tmp_path):
    path, det, net = package
    assert path == tmp_path / "model" / "model.fkpmodel" and package_file(tmp_path / "model") == path
    model = load_model(tmp_path / "model")
    assert model.preset == PRESET and model.detector_config == DETECTOR
    assert model.metadata["val_ne"] == 0.0512 and model.metadata["data"] == str(tmp_path / "set")
    assert model.metadata["date"].startswith("20")
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(model.keypoint_net(x)[-1], net(x)[-1])
    for k, v in det.state_dict().items():
        torch.testing.assert_close(model.detector.state_dict()[k], v)
    assert read_metadata(path) == {"preset": "lite", **model.metadata}


def test_half_precision_halves_the_file_and_still_predicts(tmp_path, package):
    full, _, net = package
    det = build_detector(DETECTOR)
    half = save_model(tmp_path / "half.fkpmodel", PRESET, det, DETECTOR, net, half=True)
    assert half.name == "half.fkpmodel"
    assert half.stat().st_size < 0.6 * full.stat().st_size
    model = load_model(half)
    assert all(v.dtype == torch.float32 for v in model.keypoint_net.state_dict().values() if v.is_floating_point())
    x = torch.rand(1, 3, 32, 32)
    torch.testing.assert_close(model.keypoint_net(x)[-1], net(x)[-1], atol=0.05, rtol=0.05)


def test_missing_package_is_reported(tmp_path):
    with pytest.raises(ModelPackageError, match="not found"):
        load_model(tmp_path / "nothing.fkpmodel")


def test_corrupt_package_is_refused(tmp_path):
    bad = tmp_path / "bad.fkpmodel"
    bad.write_bytes(bytes(range(256)) * 20)
    with pytest.raises(ModelPackageError, match=r"bad\.fkpmodel: corrupt or truncated"):
        load_model(bad)


def test_truncated_package_is_refused(package, tmp_path):
    path, _, _ = package
    cut = tmp_path / "cut.fkpmodel"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ModelPackageError, match=r"cut\.fkpmodel: corrupt or truncated"):
        load_model(cut)


def test_foreign_checkpoint_is_refused_naming_what_it_holds(tmp_path):
    keypoints_only = tmp_path / "kp.pt"
    torch.save({"format": "fkp-keypoint-net/1", "state_dict": {}}, keypoints_only)
    with pytest.raises(ModelPackageError, match="not an FKP model package.*fkp-keypoint-net/1"):
        load_model(keypoints_only)
    plain = tmp_path / "resnet.pth"
    torch.save({"conv1.weight": torch.zeros(1)}, plain)
    with pytest.raises(ModelPackageError, match="resnet.pth"):
        load_model(plain)


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_code_is_refused_not_executed(tmp_path, capsys):
    evil = tmp_path / "evil.fkpmodel"
    torch.save({"format": "fkp-model/1", "x": _Payload()}, evil, pickle_module=pickle)
    with pytest.raises(ModelPackageError, match="refused"):
        load_model(evil)
    assert "must never run" not in capsys.readouterr().out


def test_weights_that_do_not_fit_their_config_are_refused(package, tmp_path):
    path, _, _ = package
    pkg = torch.load(path, weights_only=True)
    pkg["keypoints"]["config"]["stem_channels"] = 12
    torch.save(pkg, tmp_path / "a.fkpmodel")
    with pytest.raises(ModelPackageError, match="keypoint-network weights do not match"):
        load_model(tmp_path / "a.fkpmodel")
    pkg = torch.load(path, weights_only=True)
    del pkg["detector"]["state_dict"]
    torch.save(pkg, tmp_path / "b.fkpmodel")
    with pytest.raises(ModelPackageError, match="detector section lacks"):
        load_model(tmp_path / "b.fkpmodel")
