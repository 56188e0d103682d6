"""Keypoint colours: each keypoint its own colour, left/right twins in paired hues.

Twins share a hue; the left one is lighter, the right one deeper, so a left/right swap is
visible at a glance. Keypoints without a twin (center_front, crotch) are near-white.
"""

from __future__ import annotations

from PySide6.QtGui import QColor

from engine.schema import FLIP_PAIRS, NUM_KEYPOINTS


def _keypoint_colours() -> tuple[QColor, ...]:
    colours: list[QColor | None] = [None] * NUM_KEYPOINTS
    # Spread the pairs around the hue circle; step by a co-prime stride so neighbouring
    # pairs in CSV order (neckline, shoulder, armpit, ...) get well-separated hues.
    n = len(FLIP_PAIRS)
    for i, (left, right) in enumerate(FLIP_PAIRS):
        hue = ((i * 5) % n) / n
        colours[left] = QColor.fromHsvF(hue, 0.55, 1.0)
        colours[right] = QColor.fromHsvF(hue, 1.0, 0.80)
    for k in range(NUM_KEYPOINTS):
        if colours[k] is None:
            colours[k] = QColor(245, 245, 245)
    return tuple(colours)  # type: ignore[arg-type]


KEYPOINT_COLOURS: tuple[QColor, ...] = _keypoint_colours()
ANNOTATION_OUTLINE = QColor(20, 20, 20)
PREDICTION_OUTLINE = QColor(255, 255, 255)
ERROR_LINE = QColor(255, 60, 60, 200)
SKELETON = QColor(255, 255, 255, 150)
SELECTION = QColor(255, 230, 0)
REFINED_TRAIL = QColor(120, 220, 255, 220)  # where a refinement after a correction moved a predicted point from
# A predicted point the model is unsure of (confidence below this) is ringed on the canvas and its
# confidence shown in amber in the keypoint table: the reviewer looks there first.
LOW_CONFIDENCE = 0.5
LOW_CONFIDENCE_RING = QColor(255, 170, 0)


# Error types (engine.analysis.error_types.ERROR_TYPES) in charts and the keypoint table.
TYPE_COLOURS: dict[str, QColor] = {
    "good": QColor(90, 180, 90), "jitter": QColor(230, 190, 60),
    "inversion": QColor(200, 90, 220), "miss": QColor(225, 70, 60),
}
