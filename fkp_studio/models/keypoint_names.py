"""Keypoint names as the user reads them (undo steps, the canvas, the keypoint table)."""

from __future__ import annotations

from engine.schema import KEYPOINTS


def keypoint_label(k: int) -> str:
    """Human-readable keypoint name: `cuff_left_in` -> `cuff left in`."""
    return KEYPOINTS[k].replace("_", " ")
