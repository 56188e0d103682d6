"""The files of an ONNX export: a re-export replaces a folder whole or leaves it as it was, and
a folder's sizes (the networks' bytes, the preset's crop) are checked before anything is read
or allocated. A tiny model (a few seconds to export) stands in for the demo model."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from engine.cli import main  # noqa: E402
from engine.model.detector import DetectorConfig, build_detector  # noqa: E402
from engine.model.hourglass import KeypointNet  # noqa: E402
from engine.io.messages import describe_error  # noqa: E402
from engine.model.onnx_export import OnnxModelError, export_onnx  # noqa: E402
from engine.model.onnx_runtime import load_onnx_model  # noqa: E402
from engine.model.package import TwoStageModel, save_model  # noqa: E402
from engine.model.presets import get_preset  # noqa: E402

pytestmark = pytest.mark.float_paths  # its figures depend on the CPU's kernels: make test-kernels

PRESET = get_preset("lite").with_(
    input_size=32,
    net={"blocks": (1, 1, 1, 1), "widths": ((8, 4), (8, 4), (8, 4), (8, 4)), "stem_channels": 8,
         "decoder_channels": 8, "num_stages": 1},
)
DETECTOR = DetectorConfig(backbone="mobilenet_v3_large", min_size=64, max_size=64, fpn_channels=16, box_head_dim=16)


def _model(seed: int, metadata: dict | None = None) -> TwoStageModel:
    """The tiny model: the same untrained detector, a keypoint net drawn from `seed`."""
    torch.manual_seed(0)
    detector = build_detector(DETECTOR).eval()
    torch.manual_seed(seed)
    return TwoStageModel(PRESET, detector, DETECTOR, KeypointNet(PRESET.net).eval(), metadata or {})


def _export(model: TwoStageModel, out: Path) -> Path:
    # Unchecked against PyTorch: an untrained detector's best box may tie with another one.
    return export_onnx(model, out, verify=False)


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    """A tiny model's export (copied by the tests that change it)."""
    out = tmp_path_factory.mktemp("onnx_files") / "onnx"
    _export(_model(0), out)
    return out


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def _edit_manifest(folder: Path, edit) -> None:
    manifest = folder / "fkp_onnx.json"
    obj = json.loads(manifest.read_text())
    edit(obj)
    manifest.write_text(json.dumps(obj))


def test_a_failed_re_export_leaves_the_earlier_export_whole(exported, tmp_path, capsys):
    """The probe: networks written, then the description failed: predict refused the folder."""
    import resource
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("SIGXFSZ can only be ignored from the main thread")
    folder = tmp_path / "model"
    shutil.copytree(exported, folder)
    before = _files(folder)
    # Another model whose description is larger than any of its networks: with a file-size limit
    # between the two, the description is the write that fails (as on a disk that fills up at
    # the end), after the networks were written.
    limit = max(len(before["detector.onnx"]), len(before["keypoints.onnx"])) + (1 << 16)
    other = _model(1, {"notes": "n" * (limit + (1 << 16))})
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        with pytest.raises(OSError) as e:
            _export(other, folder)
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
    assert _files(folder) == before, "the earlier export is untouched"
    assert describe_error(e.value) == f"{folder / 'fkp_onnx.json'}: File too large; {folder} is as it was"
    load_onnx_model(folder, threads=1)  # and still loads: every hash matches
    assert [p.name for p in tmp_path.iterdir()] == ["model"], "nothing left beside it"

    # Without the limit the re-export replaces the folder whole.
    _export(_model(1, {"notes": "second"}), folder)
    assert load_onnx_model(folder, threads=1).metadata["notes"] == "second"
    assert _files(folder)["keypoints.onnx"] != before["keypoints.onnx"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    # A folder holding anything else is not an earlier export: refused before the work.
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "notes.txt").write_text("mine")
    package = save_model(tmp_path / "c.fkpmodel", PRESET, other.detector, DETECTOR, other.keypoint_net)
    assert main(["export-onnx", "--model", str(package), "--out", str(tmp_path / "mixed")]) == 2
    assert "holds other files than an earlier ONNX export" in capsys.readouterr().err
    assert [p.name for p in (tmp_path / "mixed").iterdir()] == ["notes.txt"]


def test_a_manifest_claiming_a_huge_crop_is_refused_before_loading(exported, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(exported, folder)
    _edit_manifest(folder, lambda m: m["preset"].update(input_size=10 ** 7))  # 300 TB of crops
    with pytest.raises(OnnxModelError) as e:
        load_onnx_model(folder, threads=1)
    assert str(e.value).startswith(f"{folder / 'fkp_onnx.json'}: input_size 10000000 is outside")


def test_network_sizes_are_recorded_and_checked_before_reading(exported, tmp_path):
    manifest = json.loads((exported / "fkp_onnx.json").read_text())
    assert manifest["files"]["detector"]["bytes"] == (exported / "detector.onnx").stat().st_size
    folder = tmp_path / "model"
    shutil.copytree(exported, folder)
    with open(folder / "detector.onnx", "ab") as f:
        f.write(b"\0" * 100)
    with pytest.raises(OnnxModelError) as e:
        load_onnx_model(folder, threads=1)
    size = manifest["files"]["detector"]["bytes"]
    assert f"detector.onnx: damaged or replaced ({size + 100:,} bytes; fkp_onnx.json says {size:,})" in str(e.value)

    # An older description without sizes still loads ...
    shutil.copyfile(exported / "detector.onnx", folder / "detector.onnx")
    _edit_manifest(folder, lambda m: [entry.pop("bytes") for entry in m["files"].values()])
    load_onnx_model(folder, threads=1)
    # ... and a network file larger than ONNX allows (2 GiB) is refused from its size, unread.
    with open(folder / "detector.onnx", "r+b") as f:
        f.truncate((2 << 30) + 1)  # sparse: no disk or memory is used
    if os.stat(folder / "detector.onnx").st_blocks * 512 > (1 << 30):
        pytest.skip("this file system has no sparse files")
    with pytest.raises(OnnxModelError, match="is larger than an ONNX file can be"):
        load_onnx_model(folder, threads=1)
