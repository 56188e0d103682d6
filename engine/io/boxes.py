"""The garment box of an image's keypoints: what the detector is trained to find and what a
YOLO-pose label's box is (`engine.model.detector`, `engine.io.yolo`)."""

from __future__ import annotations

import numpy as np

# The box of the annotated points grown by this share of its size per side
# (`engine.model.detector.DetectorConfig.box_margin` defaults to it).
KEYPOINT_BOX_MARGIN = 0.05


def boxes_from_keypoints(
    coords: np.ndarray, visibility: np.ndarray, margin: float, image_sizes: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (N, 4) x1 y1 x2 y2 around each row's annotated points (v >= 0), grown by `margin`
    of the box size per side and clipped to the image ((N, 2) width, height) when given.

    Returns (boxes, valid); a row with fewer than two annotated points is not valid.
    """
    coords = np.asarray(coords, dtype=np.float32)
    present = np.asarray(visibility) >= 0
    big = np.float32(1e9)
    lo = np.where(present[..., None], coords, big).min(axis=1)
    hi = np.where(present[..., None], coords, -big).max(axis=1)
    valid = present.sum(axis=1) >= 2
    size = np.maximum(hi - lo, 1.0)
    # The margin also keeps degenerate (flat) keypoint boxes from collapsing to zero height.
    pad = np.maximum(size * margin, 0.02 * size.max(axis=1, keepdims=True))
    boxes = np.concatenate([lo - pad, hi + pad], axis=1)
    if image_sizes is not None:
        wh = np.asarray(image_sizes, dtype=np.float32)
        boxes = np.clip(boxes, 0, np.concatenate([wh, wh], axis=1))
    boxes[~valid] = 0
    return boxes.astype(np.float32), valid
