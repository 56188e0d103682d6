"""Checkpoints: written atomically, loaded with `weights_only=True`, with clear errors.

A checkpoint is a dict of plain values and tensors with a "format" tag naming what it holds,
so a file of another kind (or from another program) is rejected with a message, not a crash.
"""

from __future__ import annotations

import io
import os
import pickle
import zipfile
from pathlib import Path
from typing import Any

import torch

from engine.io.files import atomic_write

KEYPOINT_FORMAT = "fkp-keypoint-net/1"


class CheckpointError(Exception):
    """A checkpoint file is missing, corrupt, truncated, unsafe or of another kind."""


def save_checkpoint(path: str | os.PathLike, obj: dict[str, Any]) -> None:
    """Serialize `obj` (a dict with a "format" key) and write it atomically to `path`."""
    if not isinstance(obj, dict) or "format" not in obj:
        raise ValueError("a checkpoint is a dict with a 'format' key")
    buf = io.BytesIO()
    torch.save(obj, buf)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda f: f.write(buf.getbuffer()))


def load_checkpoint(path: str | os.PathLike, expected_format: str | None = None) -> dict[str, Any]:
    """Load a checkpoint safely (weights_only=True) onto the CPU; raises CheckpointError."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: checkpoint file is empty")
    if not zipfile.is_zipfile(path):
        # torch.save always writes a zip archive: anything else is damaged or another kind of file.
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint, or a foreign file (not a PyTorch archive)")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        # Deliberately not echoing PyTorch's hint to retry with weights_only=False: that would run the file's code.
        raise CheckpointError(f"{path}: refused to load: it holds objects other than tensors and plain "
                              f"values (possibly code); only plain checkpoints are loaded") from None
    except Exception as e:  # the unpickler fails in many ways on damaged bytes (EOF, index, zip, ...)
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({type(e).__name__}: {_first_line(e)})") from None
    if not isinstance(obj, dict) or "format" not in obj:
        raise CheckpointError(f"{path}: not an FKP checkpoint (no 'format' tag)")
    if expected_format is not None and obj["format"] != expected_format:
        raise CheckpointError(f"{path}: holds {obj['format']!r}, expected {expected_format!r}")
    return obj


def _first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def keypoint_checkpoint(model: torch.nn.Module, preset: Any, **extra: Any) -> dict[str, Any]:
    """The checkpoint dict of a keypoint net: weights (on the CPU), its preset, and `extra`."""
    net = model.module if hasattr(model, "module") else model
    state = {k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()}
    return {"format": KEYPOINT_FORMAT, "preset": preset.to_dict(), "state_dict": state, **extra}


def load_keypoint_net(source: str | os.PathLike | dict[str, Any], device: torch.device | str = "cpu"):
    """Build the keypoint net of a checkpoint (path or loaded dict) -> (KeypointNet in eval mode, Preset, dict)."""
    from engine.model.hourglass import KeypointNet
    from engine.model.presets import Preset

    ckpt = source if isinstance(source, dict) else load_checkpoint(source, KEYPOINT_FORMAT)
    where = "checkpoint" if isinstance(source, dict) else str(source)
    try:
        preset = Preset.from_dict(ckpt["preset"])
        model = KeypointNet(preset.net)
        model.load_state_dict(ckpt["state_dict"])
    except (KeyError, TypeError, RuntimeError) as e:
        raise CheckpointError(f"{where}: keypoint checkpoint does not match the network ({_first_line(e)})") from None
    model.to(device).eval()
    return model, preset, ckpt
