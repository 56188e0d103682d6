"""The two-stage model as ONNX files, for running it outside Python and PyTorch (`fkp export-onnx`).

A folder of three files:

    detector.onnx    torchvision's Faster R-CNN, one image per call: input `image` (3, H, W)
                     RGB float32 in [0, 1] with dynamic H and W; outputs `boxes` (n, 4) x1 y1
                     x2 y2 in that image's pixels, `labels` (n,) int64 (label l is category code
                     l - 1; 0 is background), `scores` (n,), best first, n <= 10. The transform's
                     resize and normalization are inside. Per image because torchvision's
                     detector takes a list of images, which the TorchScript exporter fixes to
                     the length it traced; dynamic batch applies to the keypoint net.
    keypoints.onnx   the keypoint net, input `crops` (B, 3, S, S) ImageNet-normalized RGB with
                     dynamic B; outputs `stage1` .. `stageN` (B, 72, S/4, S/4), each as
                     `KeypointNet.forward` returns them (the pipeline decodes the last).
    fkp_onnx.json    what the pipeline around the networks needs: the preset
                     (`Preset.to_dict()`), the detector config, crop sizes, category and
                     keypoint order, the decoding radius and stride, both files' SHA-256, a
                     format tag and version, the package's metadata.

Weights stored as float16 are widened to float32 by `load_model` before export. The legacy
TorchScript-based exporter (`dynamo=False`) is used: the dynamo exporter needs `onnxscript`, and
torchvision's detection models export with the traced one (opset >= 11). Every file passes
`onnx.checker.check_model`, and, when ONNX Runtime is installed, the export is checked against
PyTorch on a synthetic garment before anything is written.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch

from engine.io.files import fsync_dir
from engine.io.model_files import PACKAGE_FILE_NAME
from engine.model.package import ModelPackageError, TwoStageModel
from engine.schema import CATEGORIES, KEYPOINTS

FORMAT = "fkp-onnx"
FORMAT_VERSION = 1
MANIFEST_NAME = "fkp_onnx.json"
DETECTOR_FILE = "detector.onnx"
KEYPOINTS_FILE = "keypoints.onnx"
VISIBILITY_FILE = "visibility.onnx"
OPSET = 17
INSTALL_HINT = "pip install 'fkp-studio[onnx]'"

# Export check: largest differences allowed between PyTorch and ONNX Runtime on the same input
# (float32 both sides; measured differences are ~1e-5 on logits and ~1e-4 px on boxes).
_KEYPOINT_TOLERANCE = 1e-2
_BOX_TOLERANCE_PX = 0.5


class OnnxUnavailableError(ImportError, ValueError):
    """An optional ONNX package is not installed: a setup problem the user fixes with one
    command, so `fkp` reports it in one line like a bad argument (hence ValueError)."""


class OnnxModelError(ModelPackageError):
    """An exported ONNX model folder is missing a file, damaged, foreign or does not fit its JSON."""


def require(module: str, purpose: str) -> ModuleType:
    """Import an optional ONNX package; raises `OnnxUnavailableError` saying what to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise OnnxUnavailableError(f"{purpose} needs the {module!r} package, which is not installed: {INSTALL_HINT}") from None


def export_onnx(model: TwoStageModel, out_dir: str | os.PathLike, source: str | None = None,
                opset: int = OPSET, verify: bool = True) -> Path:
    """Write `model` as `detector.onnx`, `keypoints.onnx` and `fkp_onnx.json` into the folder
    `out_dir`: a new or empty one, or an earlier export, which is replaced whole.

    The folder is built beside `out_dir` and renamed into place, so a failed or interrupted
    export leaves an earlier one as it was. Returns the JSON's path. Raises
    `OnnxUnavailableError` without the `onnx` package, and `OnnxModelError` when the exported
    files fail the checker or disagree with PyTorch.
    """
    onnx = require("onnx", "ONNX export")
    out = Path(out_dir)
    _check_target(out)
    preset, config = model.preset, model.detector_config
    detector = model.detector.float().eval()
    net = model.keypoint_net.float().eval()
    num_stages = preset.net.num_stages
    stage_names = [f"stage{i + 1}" for i in range(num_stages)]

    kp_bytes = _export(net, (torch.zeros(2, 3, preset.input_size, preset.input_size),), opset, ["crops"], stage_names,
                       {"crops": {0: "batch"}, **{s: {0: "batch"} for s in stage_names}})
    example = _example_image(config.min_size, config.max_size)
    det_bytes = _export(detector, ([example],), opset, ["image"], ["boxes", "labels", "scores"],
                        {"image": {1: "height", 2: "width"}, "boxes": {0: "detections"}, "labels": {0: "detections"},
                         "scores": {0: "detections"}})
    networks = [(DETECTOR_FILE, det_bytes), (KEYPOINTS_FILE, kp_bytes)]
    vis_bytes = _export_visibility(model.visibility, opset) if model.visibility is not None else None
    if vis_bytes is not None:
        networks.append((VISIBILITY_FILE, vis_bytes))
    for name, data in networks:
        try:
            onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
        except Exception as e:  # noqa: BLE001 - the checker raises several types; all mean "invalid"
            raise OnnxModelError(f"{out / name}: the exported model fails onnx.checker ({e})") from None
    checks = _verify(detector, net, det_bytes, kp_bytes, example, preset.input_size, out) if verify else {}
    if verify and vis_bytes is not None:
        checks.update(_verify_visibility(model.visibility, vis_bytes, out))

    manifest = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "producer": {"exporter": "torch.onnx (TorchScript-based, dynamo=False)", "opset": opset,
                     "torch": torch.__version__, "onnx": onnx.__version__, **_torchvision_version()},
        "source": source,
        "preset": preset.to_dict(),
        "detector_config": config.to_dict(),
        "categories": list(CATEGORIES),
        "keypoints": list(KEYPOINTS),
        "files": {
            "detector": {
                "name": DETECTOR_FILE, "sha256": _sha256(det_bytes), "bytes": len(det_bytes), "batch": "per-image",
                "inputs": {"image": [3, "height", "width"]},
                "outputs": {"boxes": ["detections", 4], "labels": ["detections"], "scores": ["detections"]},
            },
            "keypoint_net": {
                "name": KEYPOINTS_FILE, "sha256": _sha256(kp_bytes), "bytes": len(kp_bytes), "batch": "dynamic",
                "inputs": {"crops": ["batch", 3, preset.input_size, preset.input_size]},
                "outputs": {s: ["batch", 3 * preset.net.num_keypoints, preset.output_size, preset.output_size]
                            for s in stage_names},
            },
        },
        "detector_input": {
            "layout": "(3, H, W) RGB float32 in [0, 1], one image per call",
            "min_size": config.min_size, "max_size": config.max_size,
            "resize": "the pipeline first scales the image (INTER_AREA) so its shorter side is min_size and its "
                      "longer side at most max_size, as in training; the network resizes and normalizes inside",
            "label_offset": 1,
        },
        "keypoint_input": {
            "size": preset.input_size, "crop_margin": preset.crop_margin,
            "layout": "(B, 3, S, S) RGB float32, (x - mean) / std with x the pixel values 0-255",
            "mean": _imagenet("MEAN"), "std": _imagenet("STD"),
        },
        "decoding": {
            "radius": preset.radius, "stride": preset.stride, "output_size": preset.output_size,
            "stage": stage_names[-1],
            "channels": "K heatmap logits, then (dx, dy) per keypoint in units of radius (Hough voting)",
        },
        "metadata": model.metadata,
        "verification": checks,
    }
    if vis_bytes is not None:
        vis_config = model.visibility.config
        manifest["files"]["visibility"] = {
            "name": VISIBILITY_FILE, "sha256": _sha256(vis_bytes), "bytes": len(vis_bytes), "batch": "dynamic",
            "inputs": {"patches": ["points", 3, vis_config.patch_size, vis_config.patch_size], "keypoints": ["points"]},
            "outputs": {"logits": ["points"]},
        }
        manifest["visibility"] = {
            **vis_config.to_dict(),
            "patches": "(N, 3, P, P) RGB float32 in [0, 1], centred on each predicted point, a side of scale x the "
                       "larger side of the garment's predicted keypoint box; keypoints: (N,) int64 indices",
            "decision": "occluded (v = 0) where sigmoid(logit) >= threshold",
        }
    files = [*networks, (MANIFEST_NAME, (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))]
    _write_folder(out, files)
    return out / MANIFEST_NAME


def _check_target(out: Path) -> None:
    """Refuse, before the work, a target that is not a new or empty folder or an earlier export."""
    # `fkp predict --model DIR` takes a folder holding the JSON for ONNX: beside a package it
    # would silently shadow it.
    if (out / PACKAGE_FILE_NAME).exists():
        raise ValueError(f"{out}: holds a model package ({PACKAGE_FILE_NAME}); write the ONNX files to a folder of their own")
    if not out.exists():
        return
    if not out.is_dir():
        raise ValueError(f"{out}: exists and is not a folder")
    entries = list(out.iterdir())
    if not entries:
        return
    ours = {DETECTOR_FILE, KEYPOINTS_FILE, VISIBILITY_FILE, MANIFEST_NAME}
    if not (out / MANIFEST_NAME).is_file() or any(e.name not in ours for e in entries):
        raise ValueError(f"{out}: holds other files than an earlier ONNX export; export into a new folder")
    for e in entries:
        if e.is_symlink() or not e.is_file():
            raise ValueError(f"{e}: not a plain file of an ONNX export; export into a new folder")
        # The promise `atomic_write` keeps: a write-protected file is not replaced, even by root.
        if not e.stat().st_mode & 0o222:
            raise PermissionError(13, "write-protected; not replaced", str(e))


def _write_folder(out: Path, files: list[tuple[str, bytes]]) -> None:
    """Write `files` as the folder `out`, whole or not at all: built in a hidden folder beside
    it, synced, then renamed into place. An earlier export there is moved aside first and
    deleted after (it comes back if the rename fails); a write error names the file in `out`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    name = "."
    try:
        for name, data in files:
            with open(stage / name, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        name = "."
        os.chmod(stage, 0o755)  # mkdtemp's folder is private
        fsync_dir(stage)
        _rename_into_place(stage, out)
    except OSError as e:
        shutil.rmtree(stage, ignore_errors=True)
        # Name the file as it would be in OUT, never the hidden folder's.
        raise OSError(e.errno, f"{e.strerror or e}; {out} is as it was", str(out / name)) from None
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def _rename_into_place(stage: Path, out: Path) -> None:
    """Rename the complete folder `stage` to `out`, which is missing, empty or an earlier export."""
    if not out.exists() or not any(out.iterdir()):
        os.replace(stage, out)  # onto a missing or empty folder
        fsync_dir(out.parent)
        return
    # A folder cannot be renamed onto a full one: the earlier export steps aside (whole, under a
    # hidden name beside it), the new one takes its name, then the earlier one is deleted.
    aside = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.replace(out, aside)
    try:
        os.replace(stage, out)
    except BaseException:
        os.replace(aside, out)
        raise
    fsync_dir(out.parent)
    shutil.rmtree(aside, ignore_errors=True)


def _export(module: torch.nn.Module, args: tuple, opset: int, inputs: list[str], outputs: list[str],
            dynamic: dict[str, dict[int, str]]) -> bytes:
    import warnings

    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        # The tracer warns about every Python number torchvision computes from a shape; the
        # checks after export are what tells whether the graph is right.
        warnings.simplefilter("ignore")
        torch.onnx.export(module, args, buffer, opset_version=opset, dynamo=False, input_names=inputs,
                          output_names=outputs, dynamic_axes=dynamic, do_constant_folding=True)
    return buffer.getvalue()


def _visibility_example(config) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return (torch.rand(5, 3, config.patch_size, config.patch_size, generator=generator),
            torch.arange(5, dtype=torch.int64))


def _export_visibility(net: torch.nn.Module, opset: int) -> bytes:
    net = net.float().eval()
    return _export(net, _visibility_example(net.config), opset, ["patches", "keypoints"], ["logits"],
                   {"patches": {0: "points"}, "keypoints": {0: "points"}, "logits": {0: "points"}})


def _verify_visibility(net: torch.nn.Module, data: bytes, out: Path) -> dict[str, Any]:
    try:
        import onnxruntime as ort
    except ImportError:
        return {}
    patches, keypoints = _visibility_example(net.config)
    with torch.no_grad():
        expected = net(patches, keypoints).numpy()
    got = ort.InferenceSession(data, providers=["CPUExecutionProvider"]).run(
        None, {"patches": patches.numpy(), "keypoints": keypoints.numpy()})[0]
    diff = float(np.abs(expected - got).max())
    if diff > _KEYPOINT_TOLERANCE:
        raise OnnxModelError(f"{out / VISIBILITY_FILE}: ONNX Runtime's outputs differ from PyTorch's by {diff:.3g}")
    return {"visibility_max_abs_diff": diff}


def _example_image(min_size: int, max_size: int) -> torch.Tensor:
    """A synthetic garment at the detector's scale: the trace and the check see a real detection."""
    from engine.synth import render_sample

    sample = render_sample(np.random.default_rng(0), 0, min_size)
    return torch.from_numpy(sample.image).permute(2, 0, 1).float().div(255).contiguous()


def _verify(detector: torch.nn.Module, net: torch.nn.Module, det_bytes: bytes, kp_bytes: bytes,
            image: torch.Tensor, size: int, out: Path) -> dict[str, Any]:
    """Run both exported networks on ONNX Runtime beside PyTorch; raises `OnnxModelError` on a disagreement."""
    try:
        import onnxruntime as ort
    except ImportError:
        return {"skipped": "onnxruntime not installed"}
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    crops = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = [t.numpy() for t in net(crops)]
        det_expected = detector([image])[0]
    got = ort.InferenceSession(kp_bytes, options, providers=["CPUExecutionProvider"]).run(None, {"crops": crops.numpy()})
    kp_diff = max(float(np.abs(a - b).max()) for a, b in zip(expected, got))
    if kp_diff > _KEYPOINT_TOLERANCE:
        raise OnnxModelError(f"{out / KEYPOINTS_FILE}: ONNX Runtime's outputs differ from PyTorch's by {kp_diff:.3g}")
    boxes, labels, _ = ort.InferenceSession(det_bytes, options, providers=["CPUExecutionProvider"]).run(
        None, {"image": image.numpy()})
    ref = det_expected["boxes"].numpy()
    if len(ref) == 0:
        box_diff = 0.0 if len(boxes) == 0 else float("inf")
    else:
        box_diff = float(np.abs(boxes[:1] - ref[:1]).max()) if len(boxes) else float("inf")
    if box_diff > _BOX_TOLERANCE_PX or (len(ref) and labels[:1].tolist() != det_expected["labels"][:1].tolist()):
        raise OnnxModelError(f"{out / DETECTOR_FILE}: ONNX Runtime's best box differs from PyTorch's "
                             f"(by {box_diff:.3g} px, labels {labels[:1].tolist()} vs {det_expected['labels'][:1].tolist()})")
    return {"keypoint_max_abs_diff": kp_diff, "detector_top_box_max_diff_px": box_diff}


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _imagenet(name: str) -> list[float]:
    from engine.model import crops

    return [float(v) for v in np.asarray(getattr(crops, name)).reshape(-1)]


def _torchvision_version() -> dict[str, str]:
    import torchvision

    return {"torchvision": torchvision.__version__}
