"""An exported ONNX model folder (`engine.model.onnx_export`) run by ONNX Runtime inside the
usual `Pipeline` (`fkp predict --model DIR`).

`load_onnx_model(dir)` returns a `TwoStageModel` whose two networks are stand-ins: torch
modules without parameters whose `forward` hands numpy arrays to an ONNX Runtime session and
returns torch tensors, with the call conventions of the modules they replace (the torchvision
detector in eval mode, `KeypointNet`). Everything around the networks (crops, test-time
options, decoding) is the pipeline's own code, so an ONNX model predicts exactly as its
package does, up to float rounding. `.to()`, `.eval()`, `.half()` are harmless no-ops.

Sessions use `CUDAExecutionProvider` when ONNX Runtime offers it, else the CPU.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from engine.model.onnx_export import (
    DETECTOR_FILE, FORMAT, FORMAT_VERSION, KEYPOINTS_FILE, MANIFEST_NAME, VISIBILITY_FILE, OnnxModelError, require,
)
from engine.io.messages import shorten
from engine.model.package import TwoStageModel
from engine.model.presets import check_visibility_sizes
from engine.model.visibility import VisibilityConfig
from engine.schema import CATEGORIES, KEYPOINTS

# A manifest is a few kilobytes; anything far larger is not one (and is not read into memory).
_MAX_MANIFEST_BYTES = 1 << 20
# Protocol Buffers cap one serialized ONNX model at 2 GiB: a larger file is not one, and is
# refused from its size before a byte of it is read (a 40 GB file was read whole to hash it).
_MAX_ONNX_BYTES = 2 << 30
_HASH_CHUNK = 1 << 20


def is_onnx_model(path: str | os.PathLike) -> bool:
    """Whether `path` is an exported ONNX model: a folder holding `fkp_onnx.json`, or that file."""
    path = Path(path)
    return (path / MANIFEST_NAME).is_file() if path.is_dir() else path.name == MANIFEST_NAME


def read_manifest(path: str | os.PathLike) -> tuple[Path, dict[str, Any]]:
    """(the model folder, its checked `fkp_onnx.json`); raises `OnnxModelError` naming the file."""
    path = Path(path)
    file = path / MANIFEST_NAME if path.is_dir() or path.name != MANIFEST_NAME else path
    if not file.is_file():
        raise OnnxModelError(f"{file}: ONNX model description not found (fkp export-onnx writes it)")
    if file.stat().st_size > _MAX_MANIFEST_BYTES:
        raise OnnxModelError(f"{file}: too large for an ONNX model description ({file.stat().st_size} bytes)")
    try:
        manifest = json.loads(file.read_bytes().decode("utf-8"))
    except UnicodeDecodeError:
        raise OnnxModelError(f"{file}: not a UTF-8 text file") from None
    except json.JSONDecodeError as e:
        raise OnnxModelError(f"{file}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except RecursionError:  # `[[[[...` thousands deep
        raise OnnxModelError(f"{file}: not an FKP ONNX model description (nested too deeply)") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        found = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise OnnxModelError(f"{file}: not an FKP ONNX model description (format {found!r}, expected {FORMAT!r})")
    version = manifest.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        raise OnnxModelError(f"{file}: unsupported version {version!r} of {FORMAT!r} (this fkp reads 1 to {FORMAT_VERSION})")
    if list(manifest.get("categories", [])) != list(CATEGORIES) or list(manifest.get("keypoints", [])) != list(KEYPOINTS):
        raise OnnxModelError(f"{file}: its category or keypoint order is not this fkp's")
    for key in ("preset", "detector_config", "files"):
        if not isinstance(manifest.get(key), dict):
            raise OnnxModelError(f"{file}: has no {key!r} section")
    return file.parent, manifest


def ort_providers() -> list[str]:
    """CUDA first when this ONNX Runtime offers it, then the CPU."""
    ort = require("onnxruntime", "running an ONNX model")
    available = ort.get_available_providers()
    return [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available] or ["CPUExecutionProvider"]


def load_onnx_model(path: str | os.PathLike, threads: int | None = None,
                    providers: list[str] | None = None) -> TwoStageModel:
    """The exported model at `path` (folder or its JSON) as a `TwoStageModel` for `Pipeline`.

    `threads`: ONNX Runtime's intra-op threads (default: torch's thread count). Raises
    `OnnxUnavailableError` without onnxruntime, `OnnxModelError` naming the bad file.
    """
    from engine.model.detector import DetectorConfig
    from engine.model.presets import Preset, check_sizes

    ort = require("onnxruntime", "running an ONNX model")
    folder, manifest = read_manifest(path)
    file = folder / MANIFEST_NAME
    try:
        preset = Preset.from_dict(manifest["preset"])
        config = DetectorConfig.from_dict(manifest["detector_config"])
    except (TypeError, KeyError, ValueError, AttributeError) as e:
        raise OnnxModelError(f"{file}: the stored preset or detector config is not valid ({_short(e)})") from None
    try:
        # Before any session: the pipeline allocates crops of input_size squared (10**7: 300 TB).
        check_sizes(preset, config)
    except ValueError as e:
        raise OnnxModelError(f"{file}: {e}; not loaded") from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    providers = providers or ort_providers()
    detector = OnnxDetector(_session(ort, folder, manifest, "detector", DETECTOR_FILE, options, providers))
    net = OnnxKeypointNet(_session(ort, folder, manifest, "keypoint_net", KEYPOINTS_FILE, options, providers))
    if len(net.session.get_outputs()) != preset.net.num_stages:
        raise OnnxModelError(f"{folder / KEYPOINTS_FILE}: has {len(net.session.get_outputs())} outputs, "
                             f"{file.name} says {preset.net.num_stages} stages")
    visibility = None
    if "visibility" in manifest["files"]:
        try:
            vis_config = VisibilityConfig.from_dict({f.name: manifest["visibility"][f.name]
                                                     for f in dataclasses.fields(VisibilityConfig)})
            check_visibility_sizes(vis_config)
        except (TypeError, KeyError, ValueError, AttributeError) as e:
            raise OnnxModelError(f"{file}: the stored visibility settings are not valid ({_short(e)})") from None
        visibility = OnnxVisibilityNet(_session(ort, folder, manifest, "visibility", VISIBILITY_FILE, options, providers),
                                       vis_config)
    metadata = dict(manifest.get("metadata") or {})
    metadata["onnx"] = {"folder": str(folder), "providers": detector.session.get_providers()}
    return TwoStageModel(preset=preset, detector=detector, detector_config=config, keypoint_net=net, metadata=metadata,
                         visibility=visibility)


def _session(ort: Any, folder: Path, manifest: dict[str, Any], role: str, default_name: str,
             options: Any, providers: list[str]) -> Any:
    """The ONNX Runtime session of one network, after checking its file against the JSON."""
    entry = manifest["files"].get(role)
    if not isinstance(entry, dict):
        raise OnnxModelError(f"{folder / MANIFEST_NAME}: names no {role!r} file")
    name = entry.get("name", default_name)
    # The JSON names a file in its own folder, never a path elsewhere.
    if not isinstance(name, str) or not name.endswith(".onnx") or Path(name).name != name:
        raise OnnxModelError(f"{folder / MANIFEST_NAME}: {role} file {name!r} is not a plain .onnx file name")
    file = folder / name
    if not file.is_file():
        raise OnnxModelError(f"{file}: ONNX file not found")
    data = _read_checked(file, entry)
    try:
        return ort.InferenceSession(data, options, providers=providers)
    except Exception as e:  # noqa: BLE001 - ONNX Runtime raises its own exception types for bad models
        raise OnnxModelError(f"{file}: ONNX Runtime cannot load it ({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None


def _read_checked(file: Path, entry: dict[str, Any]) -> bytes:
    """The bytes of one network file once its size (recorded since sizes were, else the
    format's 2 GiB) and SHA-256 match the JSON; read and hashed in chunks, so a file of the
    wrong size is refused before any of it is read."""
    size = entry.get("bytes")
    if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
        raise OnnxModelError(f"{file.parent / MANIFEST_NAME}: the size of {file.name} is not a byte count")
    try:
        with open(file, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise OnnxModelError(f"{file}: not a regular file; not read")
            if size is not None and st.st_size != size:
                raise OnnxModelError(f"{file}: damaged or replaced ({st.st_size:,} bytes; {MANIFEST_NAME} "
                                     f"says {size:,})")
            if st.st_size > _MAX_ONNX_BYTES:
                raise OnnxModelError(f"{file}: {st.st_size:,} bytes is larger than an ONNX file can be "
                                     f"({_MAX_ONNX_BYTES:,}); not read")
            digest = hashlib.sha256()
            chunks = []
            while chunk := f.read(_HASH_CHUNK):
                digest.update(chunk)
                chunks.append(chunk)
    except OSError as e:
        raise OnnxModelError(f"{file}: cannot read ({e.strerror or e})") from None
    expected = entry.get("sha256")
    if expected is not None and digest.hexdigest() != expected:
        raise OnnxModelError(f"{file}: damaged or replaced (its SHA-256 is not the one in {MANIFEST_NAME})")
    return b"".join(chunks)


def _short(error: BaseException) -> str:
    """An exception's message cut short: it may quote a value of any size from the file."""
    return shorten(" ".join(str(error).split()[:60]), 200)


def _numpy(x: torch.Tensor) -> np.ndarray:
    """A C-contiguous float32 array (the pipeline may hand channels-last or autocast tensors)."""
    return np.ascontiguousarray(x.detach().float().cpu().numpy())


class _OnnxModule(nn.Module):
    """A parameterless torch module around an ONNX Runtime session (device and dtype calls are no-ops)."""

    def __init__(self, session: Any):
        super().__init__()
        self.session = session
        self.input_names = [i.name for i in session.get_inputs()]
        self.eval()


class OnnxDetector(_OnnxModule):
    """Stands in for the torchvision detector in eval mode: images (3, H, W) -> [{boxes, labels, scores}]."""

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        results = []
        # One call per image: the exported graph takes a single image (see onnx_export).
        for image in images:
            boxes, labels, scores = self.session.run(None, {self.input_names[0]: _numpy(image)})
            results.append({
                "boxes": torch.from_numpy(boxes).to(image.device),
                "labels": torch.from_numpy(labels.astype(np.int64)).to(image.device),
                "scores": torch.from_numpy(scores).to(image.device),
            })
        return results


class OnnxVisibilityNet(_OnnxModule):
    """Stands in for `VisibilityNet`: patches (N, 3, P, P) and keypoints (N,) -> occlusion logits (N,)."""

    def __init__(self, session: Any, config: VisibilityConfig):
        super().__init__(session)
        self.config = config

    def forward(self, patches: torch.Tensor, keypoints: torch.Tensor) -> torch.Tensor:
        (logits,) = self.session.run(None, {self.input_names[0]: _numpy(patches),
                                            self.input_names[1]: keypoints.detach().cpu().numpy().astype(np.int64)})
        return torch.from_numpy(logits).to(patches.device)


class OnnxKeypointNet(_OnnxModule):
    """Stands in for `KeypointNet`: crops (B, 3, S, S) -> the list of stage outputs (B, 3K, S/4, S/4)."""

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = self.session.run(None, {self.input_names[0]: _numpy(x)})
        return [torch.from_numpy(o).to(x.device) for o in outputs]
