"""COCO keypoints interop: lossless round trips, visibility mapping, sizes, results, bad files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from engine.io.annotations import Annotations, format_annotations, load_annotations, parse_annotations
from engine.cli import main
from engine.io.images import write_jpeg
from engine.io.coco import CocoError, from_coco, load_coco, to_coco, to_coco_results
from engine.schema import CATEGORIES, KEYPOINT_INDEX, KEYPOINTS, SKELETONS

DATA = Path(__file__).resolve().parents[2] / "data" / "fashionai"
K = KEYPOINT_INDEX


def test_val_csv_round_trip_is_byte_identical(tmp_path, capsys) -> None:
    src = DATA / "val.csv"
    assert main(["export-coco", str(src), str(tmp_path / "val.json")]) == 0
    assert main(["import-coco", str(tmp_path / "val.json"), str(tmp_path / "back.csv")]) == 0
    assert (tmp_path / "back.csv").read_bytes() == src.read_bytes()
    coco = json.loads((tmp_path / "val.json").read_text())
    ann = load_annotations(src)
    assert len(coco["images"]) == len(coco["annotations"]) == len(ann) == 6412
    assert len(coco["fashionai_csv"]["verbatim"]) == 3  # the duplicate rows travel beside COCO
    assert "3 kept verbatim" in capsys.readouterr().out


def test_test_split_round_trip(tmp_path) -> None:
    src = DATA / "test_b.csv"
    ann, _ = from_coco(json.loads(json.dumps(to_coco(load_annotations(src)))))
    assert not ann.has_keypoints
    assert format_annotations(ann) == src.read_bytes()


def synthetic() -> bytes:
    """CRLF, a BOM, no final newline, occluded (v=0) points, a bad row kept verbatim."""
    header = "image_id,image_category," + ",".join(KEYPOINTS)
    skirt = ["-1_-1_-1"] * 24
    skirt[K["waistband_left"]] = "10_20_1"
    skirt[K["waistband_right"]] = "90_21_0"
    skirt[K["hemline_left"]] = "0_150_0"
    skirt[K["hemline_right"]] = "100_152_1"
    trousers = ["-1_-1_-1"] * 24
    trousers[K["waistband_left"]] = "0_0_0"  # a point at the origin, occluded
    trousers[K["waistband_right"]] = "50_3_1"
    rows = [header, "Images/skirt/a.jpg,skirt," + ",".join(skirt),
            "Images/trousers/b.jpg,trousers," + ",".join(trousers),
            "Images/skirt/bad.jpg,skirt,oops",
            "Images/skirt/c.jpg,skirt," + ",".join(["-1_-1_-1"] * 24)]
    return b"\xef\xbb\xbf" + "\r\n".join(rows).encode()


def test_synthetic_round_trip_with_occluded_points_and_layout() -> None:
    data = synthetic()
    ann = parse_annotations(data)
    coco = json.loads(json.dumps(to_coco(ann)))
    kp = {im["file_name"]: a["keypoints"] for im, a in zip(coco["images"], coco["annotations"])}
    a = kp["Images/skirt/a.jpg"]
    assert a[3 * K["waistband_left"]: 3 * K["waistband_left"] + 3] == [10, 20, 2]   # v=1 -> 2
    assert a[3 * K["waistband_right"]: 3 * K["waistband_right"] + 3] == [90, 21, 1]  # v=0 -> 1
    assert a[3 * K["neckline_left"]: 3 * K["neckline_left"] + 3] == [0, 0, 0]        # absent -> 0,0,0
    b = kp["Images/trousers/b.jpg"]
    assert b[3 * K["waistband_left"]: 3 * K["waistband_left"] + 3] == [0, 0, 1]
    first = coco["annotations"][0]
    assert first["num_keypoints"] == 4 and first["bbox"] == [0, 20, 100, 132] and first["area"] == 13200
    assert coco["annotations"][2]["bbox"] == [0, 0, 0, 0] and coco["annotations"][2]["num_keypoints"] == 0
    back, warnings = from_coco(coco)
    assert warnings == []
    assert format_annotations(back) == data
    np.testing.assert_array_equal(back.visibility, ann.visibility)


def test_categories_list_all_24_keypoints_and_1_based_skeletons() -> None:
    cats = to_coco(parse_annotations(synthetic()))["categories"]
    assert [c["name"] for c in cats] == list(CATEGORIES) and [c["id"] for c in cats] == [1, 2, 3, 4, 5]
    for c, cat in enumerate(cats):
        assert cat["keypoints"] == list(KEYPOINTS)
        assert cat["skeleton"] == [[a + 1, b + 1] for a, b in SKELETONS[c]]
        assert min(min(e) for e in cat["skeleton"]) >= 1 and max(max(e) for e in cat["skeleton"]) <= 24


def test_image_sizes_come_from_the_images(tmp_path, capsys) -> None:
    root = tmp_path / "ds"
    (root / "Annotations").mkdir(parents=True)
    (root / "Images" / "skirt").mkdir(parents=True)
    write_jpeg(root / "Images" / "skirt" / "a.jpg", np.zeros((48, 64, 3), np.uint8))
    (root / "Annotations" / "train.csv").write_bytes(synthetic())
    assert main(["export-coco", str(root / "Annotations" / "train.csv"), str(tmp_path / "out.json")]) == 0
    images = json.loads((tmp_path / "out.json").read_text())["images"]
    assert images[0] == {"id": 1, "file_name": "Images/skirt/a.jpg", "width": 64, "height": 48}
    assert "width" not in images[1]  # no such image file: size left out
    assert "1 with sizes" in capsys.readouterr().out


def foreign() -> dict:
    """A COCO file as another tool might write it: only the garment's points, in its own order."""
    return {
        "images": [{"id": 7, "file_name": "x.jpg", "width": 10, "height": 10},
                   {"id": 9, "file_name": "unlabelled.jpg"}],
        "categories": [{"id": 3, "name": "skirt",
                        "keypoints": ["hemline_right", "hemline_left", "waistband_right", "waistband_left"]}],
        "annotations": [{"id": 1, "image_id": 7, "category_id": 3,
                         "keypoints": [9, 8, 2, 1, 8, 1, 9, 1, 2, 0, 0, 0]}],
    }


def test_import_of_a_foreign_file_maps_names_and_skips_unlabelled_images() -> None:
    ann, warnings = from_coco(foreign(), "f.json")
    assert ann.image_ids.tolist() == ["x.jpg"] and ann.categories.tolist() == [CATEGORIES.index("skirt")]
    assert ann.coords[0, K["hemline_right"]].tolist() == [9, 8] and ann.visibility[0, K["hemline_right"]] == 1
    assert ann.coords[0, K["hemline_left"]].tolist() == [1, 8] and ann.visibility[0, K["hemline_left"]] == 0
    assert ann.visibility[0, K["waistband_left"]] == -1
    assert warnings == ["f.json: image unlabelled.jpg has no annotation (skipped)"]


@pytest.mark.parametrize("break_it, message", [
    (lambda c: c["annotations"][0].update(keypoints=[1, 2, 2]), r"annotations\[0\] \(id 1, image x.jpg\).*3 numbers, expected 12"),
    (lambda c: c["annotations"][0]["keypoints"].__setitem__(2, 5), "hemline_right has visibility 5"),
    (lambda c: c["annotations"][0]["keypoints"].__setitem__(4, "8"), "holds something that is not a number"),
    (lambda c: c["annotations"][0]["keypoints"].__setitem__(10, -1) or c["annotations"][0]["keypoints"].__setitem__(9, -1)
     or c["annotations"][0]["keypoints"].__setitem__(11, 2), r"waistband_left is labelled at \(-1, -1\)"),
    (lambda c: c["annotations"][0].update(image_id=99), "image_id 99 is not in the image list"),
    (lambda c: c["annotations"][0].update(category_id=1), "category_id 1"),
    (lambda c: c["categories"][0].update(name="hat"), "'hat' is not a FashionAI category"),
    (lambda c: c["categories"][0]["keypoints"].__setitem__(0, "nose"), "unknown keypoint name 'nose'"),
    (lambda c: c["categories"][0]["keypoints"].__setitem__(0, "crotch"), "skirt has no crotch"),
    (lambda c: c["annotations"].append(dict(c["annotations"][0], id=2)), "already has annotations"),
    (lambda c: c.pop("annotations"), 'no "annotations" list'),
])
def test_malformed_coco_names_file_and_annotation(tmp_path, break_it, message) -> None:
    coco = foreign()
    break_it(coco)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(coco))
    with pytest.raises(CocoError, match=message) as info:
        load_coco(path)
    assert str(path) in str(info.value)


def test_invalid_json_is_a_clear_cli_error(tmp_path, capsys) -> None:
    path = tmp_path / "broken.json"
    path.write_text('{"images": [')
    assert main(["import-coco", str(path), str(tmp_path / "out.csv")]) == 2
    err = capsys.readouterr().err
    assert "broken.json: not valid JSON (line 1" in err
    assert not (tmp_path / "out.csv").exists()


def test_results_export_with_scores_and_ids_from_the_ground_truth(tmp_path, capsys) -> None:
    from engine.io.scores import save_scores

    gt = parse_annotations(synthetic())
    gt_json = tmp_path / "gt.json"
    assert main(["export-coco", "-", str(gt_json)]) == 2  # a missing CSV is an error, nothing written
    capsys.readouterr()
    (tmp_path / "gt.csv").write_bytes(synthetic())
    assert main(["export-coco", str(tmp_path / "gt.csv"), str(gt_json)]) == 0
    pred = gt.subset([2, 0])  # another order than the ground truth
    pred.visibility[pred.visibility == 0] = 1
    from engine.io.annotations import save_annotations

    save_annotations(pred, tmp_path / "pred.csv")
    scores = np.full((2, 24), -1.0)
    scores[1, [K["waistband_left"], K["waistband_right"]]] = (0.5, 1.0)
    save_scores(tmp_path / "pred.scores.csv", list(pred.image_ids), scores)
    out = tmp_path / "res.json"
    assert main(["export-coco", str(tmp_path / "pred.csv"), str(out), "--results", "--ids-from", str(gt_json)]) == 0
    results = json.loads(out.read_text())
    assert [r["image_id"] for r in results] == [3, 1]  # ids of those file names in gt.json
    assert [r["category_id"] for r in results] == [CATEGORIES.index("skirt") + 1] * 2
    assert results[1]["score"] == pytest.approx(0.75) and results[0]["score"] == 0.0
    assert set(results[0]) == {"image_id", "category_id", "keypoints", "score"}
    assert results == to_coco_results(pred, np.where(scores < 0, np.nan, scores), {"Images/skirt/c.jpg": 3, "Images/skirt/a.jpg": 1})


def test_results_without_scores_score_one() -> None:
    pred = load_annotations(DATA / "pred_blouse_test_b.csv")
    results = to_coco_results(pred.subset([0, 1]))
    assert [r["score"] for r in results] == [1.0, 1.0]
    assert len(results[0]["keypoints"]) == 72


def test_the_export_is_written_atomically(tmp_path, monkeypatch) -> None:
    import engine.io.coco as coco

    out = tmp_path / "out.json"
    out.write_text("old")

    def explode(*_a, **_k):
        raise OSError("disk full")

    monkeypatch.setattr(coco.json, "dumps", explode)
    assert main(["export-coco", str(DATA / "val.csv"), str(out)]) == 2
    assert out.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_a_coco_import_of_our_own_json_keeps_an_edit(tmp_path) -> None:
    # Other tools may edit the COCO file: keypoints change, layout and verbatim rows stay.
    coco = to_coco(parse_annotations(synthetic()))
    coco["annotations"][0]["keypoints"][3 * K["waistband_left"]] = 12
    back, _ = from_coco(json.loads(json.dumps(coco)))
    text = format_annotations(back)
    assert b"12_20_1" in text and b"Images/skirt/bad.jpg,skirt,oops\r\n" in text and text.startswith(b"\xef\xbb\xbf")


def test_annotations_from_arrays_export(tmp_path) -> None:
    coords = np.full((1, 24, 2), -1, np.float32)
    vis = np.full((1, 24), -1, np.int8)
    coords[0, K["waistband_left"]] = (1.5, 2.25)  # in-memory float coordinates are kept (3 decimals)
    vis[0, K["waistband_left"]] = 1
    coco = to_coco(Annotations.from_arrays(["z.jpg"], [CATEGORIES.index("skirt")], coords, vis))
    assert coco["annotations"][0]["keypoints"][3 * K["waistband_left"]: 3 * K["waistband_left"] + 3] == [1.5, 2.25, 2]
