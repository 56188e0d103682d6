from pathlib import Path

import numpy as np

from engine import schema


def test_category_keypoint_counts_match_reference_table():
    counts = dict(zip(schema.CATEGORIES, schema.CATEGORY_MASK.sum(axis=1)))
    assert counts == {"blouse": 13, "outwear": 14, "trousers": 7, "skirt": 4, "dress": 15}


def test_flip_permutation_is_an_involution_swapping_named_twins():
    perm = schema.FLIP_PERMUTATION
    assert np.array_equal(perm[perm], np.arange(schema.NUM_KEYPOINTS))
    name = lambda k: schema.KEYPOINTS[perm[schema.KEYPOINT_INDEX[k]]]
    assert name("cuff_left_in") == "cuff_right_in"
    assert name("bottom_left_out") == "bottom_right_out"
    assert name("neckline_right") == "neckline_left"
    assert name("center_front") == "center_front"
    assert name("crotch") == "crotch"
    assert len(schema.FLIP_PAIRS) == 11


def test_flip_keeps_each_category_keypoint_set():
    flipped = schema.CATEGORY_MASK[:, schema.FLIP_PERMUTATION]
    assert np.array_equal(flipped, schema.CATEGORY_MASK)


def test_normalizer_pairs_and_skeleton_use_category_keypoints():
    for c, name in enumerate(schema.CATEGORIES):
        a, b = schema.NORMALIZER_PAIRS[c]
        assert schema.CATEGORY_MASK[c, a] and schema.CATEGORY_MASK[c, b]
        for k1, k2 in schema.SKELETONS[c]:
            assert schema.CATEGORY_MASK[c, k1] and schema.CATEGORY_MASK[c, k2], (name, k1, k2)
    assert schema.KEYPOINTS[schema.NORMALIZER_PAIRS[schema.CATEGORY_INDEX["skirt"]][0]] == "waistband_left"


def test_header_matches_real_file():
    path = Path(__file__).parents[1] / "data" / "fashionai" / "val.csv"
    with open(path, encoding="utf-8") as f:
        assert tuple(f.readline().rstrip("\r\n").split(",")) == schema.CSV_HEADER
