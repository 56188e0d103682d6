"""`fkp export-onnx` and `fkp predict --model DIR`: the shipped demo model as ONNX files, run by
ONNX Runtime inside the usual pipeline, predicts as the PyTorch package does."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from trained_fixtures import TEST_SEED, TEST_THREADS

pytestmark = pytest.mark.float_paths  # its figures depend on the CPU's kernels: make test-kernels

DEMO = Path(__file__).resolve().parents[3] / "resources" / "models" / "demo"


def _fkp(*args) -> int:
    from engine.cli import main

    return main([str(a) for a in args])


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """The demo model exported by `fkp export-onnx` (shared by this module's tests; copied to modify)."""
    out = tmp_path_factory.mktemp("onnx") / "demo_onnx"
    assert _fkp("export-onnx", "--model", DEMO, "--out", out, "--threads", TEST_THREADS) == 0
    return out


@pytest.fixture(scope="module")
def unseen(tmp_path_factory) -> Path:
    """A synthetic test split from a seed the demo model never saw (it trained on seeds 1 and 2)."""
    from engine.synth import generate_dataset

    root = tmp_path_factory.mktemp("unseen")
    generate_dataset(root, 6, seed=90_000 + TEST_SEED, split="test", size=256, workers=1)
    return root


def test_export_writes_checked_networks_and_what_the_pipeline_needs(exported):
    import onnx
    import onnxruntime as ort

    from engine.model.package import load_model
    from engine.schema import CATEGORIES

    manifest = json.loads((exported / "fkp_onnx.json").read_text())
    package = load_model(DEMO)
    assert (manifest["format"], manifest["version"]) == ("fkp-onnx", 1)
    assert manifest["preset"] == package.preset.to_dict()
    assert manifest["detector_config"] == package.detector_config.to_dict()
    assert manifest["categories"] == list(CATEGORIES)
    assert manifest["decoding"]["radius"] == package.preset.radius
    assert manifest["decoding"]["stride"] == package.preset.stride
    assert manifest["keypoint_input"]["size"] == package.preset.input_size
    assert manifest["files"]["detector"]["batch"] == "per-image"
    assert manifest["files"]["keypoint_net"]["batch"] == "dynamic"
    for name in ("detector.onnx", "keypoints.onnx"):
        onnx.checker.check_model(onnx.load(exported / name), full_check=True)
    # Symbolic dimensions: any batch of crops, any image size for the detector.
    kp = ort.InferenceSession(str(exported / "keypoints.onnx"), providers=["CPUExecutionProvider"])
    det = ort.InferenceSession(str(exported / "detector.onnx"), providers=["CPUExecutionProvider"])
    assert isinstance(kp.get_inputs()[0].shape[0], str)
    assert [isinstance(d, str) for d in det.get_inputs()[0].shape] == [False, True, True]
    assert len(kp.get_outputs()) == package.preset.net.num_stages


def test_the_onnx_stand_ins_answer_as_the_torch_networks(exported):
    from engine.model.onnx_runtime import load_onnx_model
    from engine.model.package import load_model
    from engine.synth import render_sample

    package = load_model(DEMO)
    model = load_onnx_model(exported, threads=TEST_THREADS)
    # Device and dtype calls the pipeline makes are harmless on the stand-ins.
    model.keypoint_net.to("cpu").eval().half()
    size = package.preset.input_size
    for batch in (1, 5):
        x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            expected = package.keypoint_net(x)
        got = model.keypoint_net(x)
        assert len(got) == len(expected)
        assert all(g.shape == e.shape and float((g - e).abs().max()) < 1e-3 for g, e in zip(got, expected))
    rng = np.random.default_rng(TEST_SEED)
    images = [torch.from_numpy(render_sample(rng, c, shape).image).permute(2, 0, 1).float().div(255)
              for c, shape in ((0, (256, 320)), (3, (320, 256)))]
    # Torch pads a list of unequal images to one size (which moves MobileNet's detections); the
    # pipeline calls the detector per image size, and the stand-in runs each image on its own.
    with torch.no_grad():
        expected = [package.detector([image])[0] for image in images]
    got = model.detector(images)
    for g, e in zip(got, expected):
        assert g["labels"].dtype == torch.int64 and g["labels"][:1].tolist() == e["labels"][:1].tolist()
        assert float((g["boxes"][:1] - e["boxes"][:1]).abs().max()) < 0.5
        assert float((g["scores"][:1] - e["scores"][:1]).abs().max()) < 1e-3


def test_predict_with_the_onnx_folder_matches_the_package(exported, unseen, tmp_path):
    """ONNX Runtime and PyTorch add the same products in another order (and each CPU picks its own
    kernels), so their outputs differ by rounding (~1e-6). The decode turns rounding into whole steps
    only at its edges, and the bounds below are those steps, not a gap seen on one machine:

    - a vote peak that two cells share within rounding sends a point to the other cell: allowed for
      at most 1 point in 10 (seeds 0-9 x default, SSE41 and AVX2 kernels: 0-2 of 38-67 points);
    - every other point is at the same position up to whole-pixel rounding on disk (1 px), has the
      same visibility (a flip needs the stage's probability within rounding of 0.5), and a confidence
      that differs by the votes landing on the edge of the mean-shift window: one vote is worth at
      most 1 / disk_cells (0.035 for `lite`; an AVX-512/AMX machine saw 0.024), plus 0.001 of rounding
      to 3 decimals; on average far less (measured: at most 0.009, mean at most 0.0003).
    """
    from engine.io.annotations import load_annotations
    from engine.io.scores import load_scores, scores_path
    from engine.model.package import load_model
    from engine.model.targets import disk_cells

    outputs = {}
    for name, model in (("torch", DEMO), ("onnx", exported)):
        out = tmp_path / f"{name}.csv"
        assert _fkp("predict", "--model", model, "--data", unseen, "--out", out, "--threads", TEST_THREADS) == 0
        outputs[name] = out
    gt = load_annotations(unseen / "Annotations" / "test.csv")
    torch_pred, onnx_pred = (load_annotations(outputs[k]) for k in ("torch", "onnx"))
    assert list(onnx_pred.image_ids) == list(torch_pred.image_ids) == list(gt.image_ids)
    shown = torch_pred.visibility >= 0
    assert (shown == (onnx_pred.visibility >= 0)).all(), "the same points are predicted"
    moved = shown & (np.abs(onnx_pred.coords - torch_pred.coords).max(axis=2) > 1)
    assert moved.sum() <= 0.1 * shown.sum(), f"{moved.sum()} of {shown.sum()} points moved to another peak"
    same = shown & ~moved
    assert (onnx_pred.visibility == torch_pred.visibility)[same].all()
    _, onnx_scores = load_scores(scores_path(outputs["onnx"]))
    _, torch_scores = load_scores(scores_path(outputs["torch"]))
    preset = load_model(DEMO).preset
    one_vote = 1 / disk_cells(preset.radius, preset.stride)
    differ = np.abs(onnx_scores - torch_scores)[same]
    assert differ.max() <= one_vote + 0.001, differ.max()
    assert differ.mean() <= 0.1 * one_vote, differ.mean()


@pytest.mark.parametrize("missing, command", [("onnxruntime", "predict"), ("onnx", "export-onnx")])
def test_without_the_onnx_packages_the_command_says_what_to_install(exported, unseen, tmp_path, capsys,
                                                                      monkeypatch, missing, command):
    monkeypatch.setitem(sys.modules, missing, None)       # `import missing` now raises ImportError
    args = (("predict", "--model", exported, "--data", unseen, "--out", tmp_path / "p.csv") if command == "predict"
            else ("export-onnx", "--model", DEMO, "--out", tmp_path / "x"))
    assert _fkp(*args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert f"fkp {command}:" in err and repr(missing) in err and "pip install 'fkp-studio[onnx]'" in err
    assert not (tmp_path / "p.csv").exists() and not (tmp_path / "x").exists()


def _damage(folder: Path, how: str) -> str:
    """Break a copy of an exported folder one way; returns the file the error must name."""
    manifest = folder / "fkp_onnx.json"
    obj = json.loads(manifest.read_text())
    if how == "missing file":
        (folder / "keypoints.onnx").unlink()
        return "keypoints.onnx"
    if how == "bad json":
        manifest.write_text(manifest.read_text()[:200])
        return "fkp_onnx.json"
    if how == "wrong format":
        obj["format"] = "fkp-model/1"
    elif how == "newer version":
        obj["version"] = 99
    elif how == "path outside":
        obj["files"]["detector"]["name"] = "../../detector.onnx"
    elif how == "truncated onnx":
        data = (folder / "detector.onnx").read_bytes()
        (folder / "detector.onnx").write_bytes(data[: len(data) // 2])
        return "detector.onnx"
    manifest.write_text(json.dumps(obj))
    return "fkp_onnx.json"


@pytest.mark.parametrize("how", ["missing file", "bad json", "wrong format", "newer version", "path outside",
                                 "truncated onnx"])
def test_a_broken_onnx_folder_gets_one_line_naming_the_file(exported, unseen, tmp_path, capsys, how):
    folder = tmp_path / "model"
    shutil.copytree(exported, folder)
    named = _damage(folder, how)
    assert _fkp("predict", "--model", folder, "--data", unseen, "--out", tmp_path / "p.csv") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("fkp predict: ")
    assert str(folder / named) in err, err
    assert not (tmp_path / "p.csv").exists()
