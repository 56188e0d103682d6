"""The two-stage model package: the unit the studio versions and the CLI passes around.

One file (`*.fkpmodel`, or a directory holding `model.fkpmodel`) with both stages' weights,
their configurations, the preset and the training metadata (data set, date, validation NE).
It is a plain dict of tensors, numbers and strings, written atomically and read back with
`torch.load(..., weights_only=True)`; anything else is refused with a message naming the file.

Layout :

    {"format": "fkp-model/1" (or "fkp-model/2": the keypoint net takes hints, see below),
     "preset": Preset.to_dict(),
     "detector": {"config": DetectorConfig.to_dict(), "state_dict": {...}},
     "keypoints": {"config": NetConfig.to_dict(), "state_dict": {...}},
     "visibility": {"config": VisibilityConfig.to_dict(), "state_dict": {...}},   (optional)
     "metadata": {"data": ..., "date": ..., "val_ne": ..., ...}}

Without a visibility stage every predicted point is visible (v = 1).

Format 2 (issue 32 (b)) is format 1 whose keypoint net takes hints: its config has
`hint_channels` (24) and its weights the hint convolutions (`engine.model.hourglass`). A package
whose net takes no hints is still written as format 1, byte for byte as before, so an earlier
version of this program reads it; both formats load here (a format-1 net takes no hints).
"""

from __future__ import annotations

import datetime as dt
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from engine.io.messages import shorten
from engine.io.model_files import PACKAGE_FILE_NAME, package_file
from engine.model.checkpoints import CheckpointError, load_checkpoint, save_checkpoint

FORMAT = "fkp-model/1"
HINT_FORMAT = "fkp-model/2"     # the keypoint net takes hints (NetConfig.hint_channels)
FORMATS = (FORMAT, HINT_FORMAT)


class ModelPackageError(CheckpointError):
    """A model package is missing, corrupt, truncated, foreign, or does not fit its config."""


@dataclass
class TwoStageModel:
    """A loaded model package: the preset, both networks (in eval mode) and the metadata."""

    preset: Any                          # engine.model.presets.Preset
    detector: nn.Module
    detector_config: Any                 # engine.model.detector.DetectorConfig
    keypoint_net: nn.Module
    metadata: dict[str, Any] = field(default_factory=dict)
    visibility: nn.Module | None = None  # engine.model.visibility.VisibilityNet: occluded or not


def save_model(
    path: str | os.PathLike,
    preset: Any,
    detector: nn.Module,
    detector_config: Any,
    keypoint_net: nn.Module,
    metadata: dict[str, Any] | None = None,
    half: bool = False,
    visibility: nn.Module | None = None,
) -> Path:
    """Write a model package atomically; `half` stores floating weights as float16 (half the size).

    `path` ending in `.fkpmodel` is the file itself; any other path is a directory that will
    hold `model.fkpmodel`. Returns the file written.
    """
    path = Path(path)
    if path.suffix != ".fkpmodel":
        path.mkdir(parents=True, exist_ok=True)
        path = path / PACKAGE_FILE_NAME
    meta = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), **(metadata or {})}
    net_config = getattr(keypoint_net, "config", None)
    hinted = bool(getattr(net_config, "hint_channels", 0))
    package = {
        "format": HINT_FORMAT if hinted else FORMAT,
        "preset": preset.to_dict(),
        "detector": {"config": detector_config.to_dict(), "state_dict": _weights(detector, half)},
        "keypoints": {"config": (net_config if hinted else preset.net).to_dict(),
                      "state_dict": _weights(keypoint_net, half)},
        "metadata": _plain_metadata(meta),
    }
    if visibility is not None:
        package["visibility"] = {"config": visibility.config.to_dict(), "state_dict": _weights(visibility, half)}
    save_checkpoint(path, package)
    return path


def save_package(path: str | os.PathLike, model: TwoStageModel, metadata: dict[str, Any] | None = None,
                 half: bool = False) -> Path:
    """`save_model` of a loaded (or retrained) `TwoStageModel`, all its stages."""
    return save_model(path, model.preset, model.detector, model.detector_config, model.keypoint_net,
                      model.metadata if metadata is None else metadata, half, model.visibility)


def load_model(path: str | os.PathLike, device: torch.device | str = "cpu") -> TwoStageModel:
    """Load a package written by `save_model`; raises `ModelPackageError` with a clear message."""
    from engine.model.detector import detector_from_state
    from engine.model.hourglass import KeypointNet

    file = package_file(path)
    pkg = _read(file)
    preset, net_config = _checked_configs(pkg, file)
    try:
        detector, det_config = detector_from_state(pkg["detector"]["config"], pkg["detector"]["state_dict"], str(file))
    except CheckpointError as e:
        raise ModelPackageError(str(e)) from None
    try:
        net = KeypointNet(net_config)
        net.load_state_dict(_float32(pkg["keypoints"]["state_dict"]))
    except (RuntimeError, TypeError, ValueError, KeyError) as e:
        raise ModelPackageError(f"{file}: keypoint-network weights do not match their config ({e})") from None
    visibility = _visibility_stage(pkg.get("visibility"), file)
    return TwoStageModel(
        preset=preset,
        detector=detector.to(device).eval(),
        detector_config=det_config,
        keypoint_net=net.to(device).eval(),
        metadata=dict(pkg["metadata"]),
        visibility=None if visibility is None else visibility.to(device).eval(),
    )


def _checked_configs(pkg: dict[str, Any], file: Path) -> tuple[Any, Any]:
    """(preset, keypoint net config) of a package, every size of all three stages checked
    against the presets' limits before anything is built (a file claiming a million stages
    would build for minutes into a MemoryError)."""
    from engine.model.detector import DetectorConfig
    from engine.model.presets import NetConfig, Preset, check_net_sizes, check_sizes
    from engine.model.visibility import VisibilityConfig

    try:
        preset = Preset.from_dict(pkg["preset"])
        net_config = NetConfig.from_dict(pkg["keypoints"]["config"])
    except (TypeError, KeyError, ValueError, AttributeError) as e:
        raise ModelPackageError(f"{file}: the stored preset is not valid ({_short(e)})") from None
    try:
        detector = DetectorConfig.from_dict(pkg["detector"]["config"])
        section = pkg.get("visibility")
        visibility = VisibilityConfig.from_dict(section["config"]) if section is not None else None
    except (TypeError, KeyError, ValueError, AttributeError) as e:
        raise ModelPackageError(f"{file}: a stored stage config is not valid ({_short(e)})") from None
    try:
        check_sizes(preset, detector, visibility)
        check_net_sizes(net_config)
    except ValueError as e:
        raise ModelPackageError(f"{file}: {e}; not built") from None
    return preset, net_config


def _short(error: BaseException) -> str:
    """An exception's message cut short: it may quote a value of any size from the file."""
    return shorten(" ".join(str(error).split()[:60]), 200)


def _visibility_stage(section: Any, file: Path) -> nn.Module | None:
    """The package's visibility stage, None when it has none."""
    from engine.model.visibility import VisibilityConfig, VisibilityNet

    if section is None:
        return None
    try:
        net = VisibilityNet(VisibilityConfig.from_dict(section["config"]))
        net.load_state_dict(_float32(section["state_dict"]))
    except (RuntimeError, TypeError, ValueError, KeyError, AttributeError) as e:
        raise ModelPackageError(f"{file}: the visibility stage does not match its config ({e})") from None
    return net


def read_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The package's metadata and preset name without building the networks."""
    file = package_file(path)
    pkg = _read(file)
    return {"preset": pkg["preset"].get("name"), **pkg["metadata"]}


def _read(file: Path) -> dict[str, Any]:
    """The package dict, safely loaded and checked; raises `ModelPackageError`."""
    if not file.is_file():
        raise ModelPackageError(f"{file}: model package not found")
    # torch.save writes a zip archive whose directory sits at the end: a damaged or cut file
    # fails this check, and saying so is clearer than the unpickler's complaint.
    if not zipfile.is_zipfile(file):
        raise ModelPackageError(f"{file}: corrupt or truncated model package (not a complete PyTorch archive)")
    try:
        pkg = load_checkpoint(file)
    except CheckpointError as e:
        raise ModelPackageError(str(e)) from None
    _check_layout(pkg, file)
    return pkg


def _check_layout(pkg: Any, file: Path) -> None:
    if pkg.get("format") not in FORMATS:
        raise ModelPackageError(f"{file}: not an FKP model package (it holds {pkg.get('format')!r}, "
                                f"expected {' or '.join(map(repr, FORMATS))})")
    for key in ("preset", "detector", "keypoints", "metadata"):
        if not isinstance(pkg.get(key), dict):
            raise ModelPackageError(f"{file}: model package has no {key!r} section")
    for stage in ("detector", "keypoints"):
        if not isinstance(pkg[stage].get("state_dict"), dict) or not isinstance(pkg[stage].get("config"), dict):
            raise ModelPackageError(f"{file}: the {stage} section lacks its weights or config")


def _weights(model: nn.Module, half: bool) -> dict[str, torch.Tensor]:
    return {
        k: (v.detach().cpu().half() if half and v.is_floating_point() else v.detach().cpu().clone())
        for k, v in model.state_dict().items()
    }


def _float32(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.float() if v.is_floating_point() else v for k, v in state.items()}


def _plain_metadata(meta: dict[str, Any]) -> dict[str, Any]:
    """Metadata restricted to what `weights_only` loading accepts: str, numbers, bools, None, lists, dicts."""
    def plain(v: Any) -> Any:
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if isinstance(v, (str, int, float, bool)) or v is None:
            return v
        if isinstance(v, os.PathLike):
            return os.fspath(v)
        return float(v) if hasattr(v, "__float__") else str(v)
    return plain(meta)
