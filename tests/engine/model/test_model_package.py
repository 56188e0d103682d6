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


@pytest.mark.parametrize("section, key, claim, named", [
    ("keypoints", "num_stages", 10 ** 6, "keypoint net num_stages 1000000 is outside 1..8"),
    ("keypoints", "num_stages", 1e6, "keypoint net num_stages 1000000.0 is not a whole number"),
    ("preset", "input_size", 10 ** 7, "input_size 10000000 is outside"),
    ("detector", "min_size", 10 ** 6, "detector min_size 1000000 is outside"),
])
def test_sizes_a_package_claims_are_checked_before_anything_is_built(package, tmp_path, capsys, section, key,
                                                                     claim, named):
    """A tiny file claiming a million stages (which ran 100 s to 8.9 GB) or a 10**7-pixel crop
    (300 TB at the first prediction) is refused at once, naming the file and the size."""
    import time

    from engine.cli import main

    path, _, _ = package
    pkg = torch.load(path, weights_only=True)
    config = pkg[section]["config"] if section != "preset" else pkg["preset"]
    config[key] = claim
    torch.save(pkg, tmp_path / "claims.fkpmodel")
    start = time.perf_counter()
    with pytest.raises(ModelPackageError) as e:
        load_model(tmp_path / "claims.fkpmodel")
    assert time.perf_counter() - start < 5
    assert str(e.value).startswith(f"{tmp_path / 'claims.fkpmodel'}: ") and named in str(e.value)
    assert main(["predict", "--model", str(tmp_path / "claims.fkpmodel"), "--data", str(tmp_path),
                 "--out", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and named in err


def test_a_refused_package_never_becomes_a_model_version(package, tmp_path):
    """`fkp`'s and the studio's way to a model version: a package `load_model` refuses is named
    and leaves the workspace's versions and its active one as they were."""
    from engine.io.workspace import Workspace
    from engine.jobs.model_jobs import ensure_active_model, use_model_package

    path, _, _ = package
    pkg = torch.load(path, weights_only=True)
    pkg["keypoints"]["config"]["num_stages"] = 10 ** 6
    torch.save(pkg, tmp_path / "claims.fkpmodel")
    ws = Workspace(tmp_path / "root", state_dir=tmp_path / "state")
    with pytest.raises(ModelPackageError, match=f"^{tmp_path / 'claims.fkpmodel'}: keypoint net num_stages"):
        ensure_active_model(ws, tmp_path / "claims.fkpmodel")
    assert ws.model_versions() == [] and ws.active_model_version() is None
    assert ensure_active_model(ws, path) == "v001" and ws.active_model_version() == "v001"
    (tmp_path / "broken.fkpmodel").write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ModelPackageError, match=f"^{tmp_path / 'broken.fkpmodel'}: corrupt or truncated"):
        use_model_package(ws, tmp_path / "broken.fkpmodel")
    assert ws.model_versions() == ["v001"] and ws.active_model_version() == "v001"
    assert not [p.name for p in ws.models_dir.iterdir() if p.name.startswith(".")]
    # A refused package imported before packages were checked is not made active either.
    ws.import_model(tmp_path / "broken.fkpmodel")
    with pytest.raises(ModelPackageError, match="corrupt or truncated"):
        use_model_package(ws, tmp_path / "broken.fkpmodel")
    assert ws.active_model_version() == "v001"
