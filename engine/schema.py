"""The FashionAI keypoint schema: categories, keypoints, flip pairs, normalizers, skeletons.

This module is the single source of these facts; everything else imports them from here.
"Left" and "right" are image sides: `neckline_left` has the smaller x on an upright garment.
"""

from __future__ import annotations

import numpy as np

CATEGORIES: tuple[str, ...] = ("blouse", "outwear", "trousers", "skirt", "dress")
CATEGORY_INDEX: dict[str, int] = {name: i for i, name in enumerate(CATEGORIES)}

# The 24 keypoints in CSV column order (after image_id, image_category).
KEYPOINTS: tuple[str, ...] = (
    "neckline_left", "neckline_right", "center_front",
    "shoulder_left", "shoulder_right",
    "armpit_left", "armpit_right",
    "waistline_left", "waistline_right",
    "cuff_left_in", "cuff_left_out", "cuff_right_in", "cuff_right_out",
    "top_hem_left", "top_hem_right",
    "waistband_left", "waistband_right",
    "hemline_left", "hemline_right",
    "crotch",
    "bottom_left_in", "bottom_left_out", "bottom_right_in", "bottom_right_out",
)
NUM_KEYPOINTS = len(KEYPOINTS)
KEYPOINT_INDEX: dict[str, int] = {name: i for i, name in enumerate(KEYPOINTS)}
CSV_HEADER: tuple[str, ...] = ("image_id", "image_category", *KEYPOINTS)

_CATEGORY_KEYPOINTS: dict[str, tuple[str, ...]] = {
    "blouse": (
        "neckline_left", "neckline_right", "center_front", "shoulder_left", "shoulder_right",
        "armpit_left", "armpit_right", "cuff_left_in", "cuff_left_out", "cuff_right_in",
        "cuff_right_out", "top_hem_left", "top_hem_right",
    ),
    "outwear": (
        "neckline_left", "neckline_right", "shoulder_left", "shoulder_right", "armpit_left",
        "armpit_right", "waistline_left", "waistline_right", "cuff_left_in", "cuff_left_out",
        "cuff_right_in", "cuff_right_out", "top_hem_left", "top_hem_right",
    ),
    "trousers": (
        "waistband_left", "waistband_right", "crotch", "bottom_left_in", "bottom_left_out",
        "bottom_right_in", "bottom_right_out",
    ),
    "skirt": ("waistband_left", "waistband_right", "hemline_left", "hemline_right"),
    "dress": (
        "neckline_left", "neckline_right", "center_front", "shoulder_left", "shoulder_right",
        "armpit_left", "armpit_right", "waistline_left", "waistline_right", "cuff_left_in",
        "cuff_left_out", "cuff_right_in", "cuff_right_out", "hemline_left", "hemline_right",
    ),
}


def _group_mask(names_of: dict[str, tuple[str, ...]]) -> np.ndarray:
    """(categories, 24) read-only mask: True where the keypoint is among the category's names."""
    mask = np.zeros((len(CATEGORIES), NUM_KEYPOINTS), dtype=bool)
    for c, name in enumerate(CATEGORIES):
        mask[c, [KEYPOINT_INDEX[k] for k in names_of[name]]] = True
    mask.setflags(write=False)
    return mask


# CATEGORY_MASK[c, k] is True when category c has keypoint k.
CATEGORY_MASK: np.ndarray = _group_mask(_CATEGORY_KEYPOINTS)


def _twin(name: str) -> str:
    if "_left" in name:
        return name.replace("_left", "_right")
    if "_right" in name:
        return name.replace("_right", "_left")
    return name


# FLIP_PERMUTATION[k] is the keypoint that k becomes after a horizontal flip:
# new_coords = old_coords[:, FLIP_PERMUTATION] (with x mirrored).
FLIP_PERMUTATION: np.ndarray = np.array([KEYPOINT_INDEX[_twin(k)] for k in KEYPOINTS], dtype=np.int64)
FLIP_PERMUTATION.setflags(write=False)

# Left/right twin pairs (left index, right index), each pair once.
FLIP_PAIRS: tuple[tuple[int, int], ...] = tuple(
    (k, int(FLIP_PERMUTATION[k])) for k in range(NUM_KEYPOINTS)
    if FLIP_PERMUTATION[k] != k and "_left" in KEYPOINTS[k]
)

_NORMALIZERS: dict[str, tuple[str, str]] = {
    "blouse": ("armpit_left", "armpit_right"),
    "outwear": ("armpit_left", "armpit_right"),
    "dress": ("armpit_left", "armpit_right"),
    "trousers": ("waistband_left", "waistband_right"),
    "skirt": ("waistband_left", "waistband_right"),
}
# NORMALIZER_PAIRS[c] = (k1, k2): the ground-truth distance between them normalizes errors.
NORMALIZER_PAIRS: np.ndarray = np.array(
    [[KEYPOINT_INDEX[a], KEYPOINT_INDEX[b]] for a, b in (_NORMALIZERS[c] for c in CATEGORIES)],
    dtype=np.int64,
)
NORMALIZER_PAIRS.setflags(write=False)

_SKELETONS: dict[str, tuple[tuple[str, str], ...]] = {
    "blouse": (
        ("neckline_left", "center_front"), ("center_front", "neckline_right"),
        ("neckline_left", "shoulder_left"), ("shoulder_left", "cuff_left_out"),
        ("cuff_left_out", "cuff_left_in"), ("cuff_left_in", "armpit_left"),
        ("armpit_left", "top_hem_left"), ("top_hem_left", "top_hem_right"),
        ("top_hem_right", "armpit_right"), ("armpit_right", "cuff_right_in"),
        ("cuff_right_in", "cuff_right_out"), ("cuff_right_out", "shoulder_right"),
        ("shoulder_right", "neckline_right"),
    ),
    "outwear": (
        ("neckline_left", "neckline_right"),
        ("neckline_left", "shoulder_left"), ("shoulder_left", "cuff_left_out"),
        ("cuff_left_out", "cuff_left_in"), ("cuff_left_in", "armpit_left"),
        ("armpit_left", "waistline_left"), ("waistline_left", "top_hem_left"),
        ("top_hem_left", "top_hem_right"), ("top_hem_right", "waistline_right"),
        ("waistline_right", "armpit_right"), ("armpit_right", "cuff_right_in"),
        ("cuff_right_in", "cuff_right_out"), ("cuff_right_out", "shoulder_right"),
        ("shoulder_right", "neckline_right"),
    ),
    "trousers": (
        ("waistband_left", "waistband_right"), ("waistband_left", "bottom_left_out"),
        ("bottom_left_out", "bottom_left_in"), ("bottom_left_in", "crotch"),
        ("crotch", "bottom_right_in"), ("bottom_right_in", "bottom_right_out"),
        ("bottom_right_out", "waistband_right"),
    ),
    "skirt": (
        ("waistband_left", "waistband_right"), ("waistband_left", "hemline_left"),
        ("hemline_left", "hemline_right"), ("hemline_right", "waistband_right"),
    ),
    "dress": (
        ("neckline_left", "center_front"), ("center_front", "neckline_right"),
        ("neckline_left", "shoulder_left"), ("shoulder_left", "cuff_left_out"),
        ("cuff_left_out", "cuff_left_in"), ("cuff_left_in", "armpit_left"),
        ("armpit_left", "waistline_left"), ("waistline_left", "hemline_left"),
        ("hemline_left", "hemline_right"), ("hemline_right", "waistline_right"),
        ("waistline_right", "armpit_right"), ("armpit_right", "cuff_right_in"),
        ("cuff_right_in", "cuff_right_out"), ("cuff_right_out", "shoulder_right"),
        ("shoulder_right", "neckline_right"),
    ),
}

# Which keypoints are the top and the bottom of an upright garment of each category: the
# vector from the bottom group's centre to the top group's centre points up (towards -y).
_UPRIGHT_AXES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "blouse": (("neckline_left", "neckline_right", "shoulder_left", "shoulder_right"), ("top_hem_left", "top_hem_right")),
    "outwear": (("neckline_left", "neckline_right", "shoulder_left", "shoulder_right"), ("top_hem_left", "top_hem_right")),
    "trousers": (("waistband_left", "waistband_right"),
                 ("bottom_left_in", "bottom_left_out", "bottom_right_in", "bottom_right_out")),
    "skirt": (("waistband_left", "waistband_right"), ("hemline_left", "hemline_right")),
    "dress": (("neckline_left", "neckline_right", "shoulder_left", "shoulder_right"), ("hemline_left", "hemline_right")),
}
# UPRIGHT_TOP[c, k] / UPRIGHT_BOTTOM[c, k]: keypoint k is at the top / bottom of category c.
UPRIGHT_TOP: np.ndarray = _group_mask({c: top for c, (top, _) in _UPRIGHT_AXES.items()})
UPRIGHT_BOTTOM: np.ndarray = _group_mask({c: bottom for c, (_, bottom) in _UPRIGHT_AXES.items()})

# SKELETONS[c] is a list of (k1, k2) keypoint-index edges to draw for category c.
SKELETONS: tuple[tuple[tuple[int, int], ...], ...] = tuple(
    tuple((KEYPOINT_INDEX[a], KEYPOINT_INDEX[b]) for a, b in _SKELETONS[c]) for c in CATEGORIES
)


def category_keypoints(category: str | int) -> tuple[int, ...]:
    """Indices (CSV order) of the keypoints the category has."""
    c = category if isinstance(category, int) else CATEGORY_INDEX[category]
    return tuple(int(k) for k in np.flatnonzero(CATEGORY_MASK[c]))


def category_code(name: str) -> int:
    """The category's integer code; raises ValueError naming the valid ones."""
    try:
        return CATEGORY_INDEX[name]
    except KeyError:
        raise ValueError(f"unknown category {name!r}; expected one of {', '.join(CATEGORIES)}") from None
