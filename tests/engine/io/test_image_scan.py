"""Images without an annotation file: the scan, and `fkp predict --images`; what the scan
leaves out (names no row can hold, unreadable folders) is named."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from engine.cli import main
from engine.io.annotations import Annotations, load_annotations, save_annotations
from engine.io.image_scan import scan_images
from engine.io.images import write_jpeg

DEMO_MODEL = Path(__file__).resolve().parents[3] / "resources" / "models" / "demo"


def _photos(root: Path, synth_root: Path) -> None:
    """Two synthetic garments under Images/skirt/ and Images/photos/, plus a non-image file."""
    images = sorted((synth_root / "Images").rglob("*.jpg"))
    for i, target in enumerate(("Images/photos/one.jpg", "Images/photos/sub/two.JPG")):
        (root / target).parent.mkdir(parents=True, exist_ok=True)
        (root / target).write_bytes(images[i].read_bytes())
    (root / "Images" / "skirt").mkdir()
    write_jpeg(root / "Images" / "skirt" / "s.jpg", np.full((64, 64, 3), 200, np.uint8))
    (root / "Images" / "photos" / "notes.txt").write_text("not an image")


def test_scan_lists_image_files_with_fashionai_ids_and_folder_categories(tmp_path):
    _photos(tmp_path / "R", _synth(tmp_path))
    scanned = scan_images(tmp_path / "R" / "Images")
    assert scanned.root == (tmp_path / "R").resolve()
    assert scanned.image_ids == ["Images/photos/one.jpg", "Images/photos/sub/two.JPG", "Images/skirt/s.jpg"]
    assert scanned.categories == [None, None, 3]


def test_predict_a_folder_of_images_takes_the_detectors_category_where_the_folder_names_none(tmp_path, capsys):
    root = tmp_path / "R"
    _photos(root, _synth(tmp_path))
    out = tmp_path / "pred.csv"
    assert main(["predict", "--model", str(DEMO_MODEL), "--images", str(root / "Images"), "--out", str(out)]) == 0
    pred = load_annotations(out)
    assert pred.image_ids.tolist() == ["Images/photos/one.jpg", "Images/photos/sub/two.JPG", "Images/skirt/s.jpg"]
    assert pred.categories[2] == 3 and (pred.categories >= 0).all()
    assert out.with_name("pred.scores.csv").is_file()


def _synth(tmp_path: Path) -> Path:
    assert main(["synth", str(tmp_path / "S"), "--n", "2", "--size", "128", "--workers", "1"]) == 0
    return tmp_path / "S"


# File names no FashionAI row can hold: a comma, a line break, a quote first, bytes that are not UTF-8.
_UNWRITABLE = {"a,b.jpg": "holds a comma", "line\nbreak.jpg": "holds a line break",
               '"quoted.jpg': "starts with a quote", os.fsdecode(b"latin\xe9.jpg"): "is not valid UTF-8"}


def _folder_with_unwritable_names(photos: Path) -> None:
    """skirt/ok.jpg, and the same image under every name of `_UNWRITABLE` at the top (a folder
    not named Images is its own root: the names are the ids, a quote first included)."""
    (photos / "skirt").mkdir(parents=True)
    write_jpeg(photos / "skirt" / "ok.jpg", np.full((64, 64, 3), 200, np.uint8))
    for name in _UNWRITABLE:
        os.link(photos / "skirt" / "ok.jpg", os.path.join(photos, name))


def test_a_file_name_no_row_can_hold_is_named_and_left_out(tmp_path):
    _folder_with_unwritable_names(tmp_path / "photos")
    scanned = scan_images(tmp_path / "photos")
    assert scanned.image_ids == ["skirt/ok.jpg"]
    assert len(scanned.skipped) == len(_UNWRITABLE)
    for line in scanned.skipped:
        assert "\n" not in line and line.encode("utf-8") and "left out (rename the file)" in line
    assert any(line.startswith("b'latin\\xe9.jpg': the file name is not valid UTF-8")
               for line in scanned.skipped)
    assert {reason for reason in _UNWRITABLE.values() if any(reason in line for line in scanned.skipped)} \
        == set(_UNWRITABLE.values())


def test_what_a_scan_lists_saves_and_reopens_as_the_same_rows(tmp_path):
    images = tmp_path / "photos"
    _folder_with_unwritable_names(images)
    scanned = scan_images(images)
    csv = tmp_path / "photos" / "Annotations" / "photos.csv"
    csv.parent.mkdir()
    n = len(scanned)
    save_annotations(Annotations.from_arrays(scanned.image_ids, [3] * n, np.full((n, 24, 2), -1, np.float32),
                                             np.full((n, 24), -1, np.int8)), csv)
    loaded = load_annotations(csv)
    assert not loaded.problems and loaded.image_ids.tolist() == scan_images(images).image_ids


def test_predict_a_folder_with_unwritable_names_writes_the_other_images(tmp_path, capsys):
    _folder_with_unwritable_names(tmp_path / "photos")
    out = tmp_path / "pred.csv"
    assert main(["predict", "--model", str(DEMO_MODEL), "--images", str(tmp_path / "photos"),
                 "--out", str(out), "--device", "cpu"]) == 0
    assert load_annotations(out).image_ids.tolist() == ["skirt/ok.jpg"]
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == len(_UNWRITABLE)


def test_a_subfolder_the_scan_cannot_read_is_named(tmp_path):
    images = tmp_path / "R" / "Images"
    (images / "skirt").mkdir(parents=True)
    write_jpeg(images / "skirt" / "s.jpg", np.full((32, 32, 3), 9, np.uint8))
    # A folder deeper than PATH_MAX: even root cannot open it by its path.
    fd = os.open(images, os.O_RDONLY)
    depth = 0
    while len(str(images)) + depth * 201 < 4200:
        os.mkdir("d" * 200, dir_fd=fd)
        deeper = os.open("d" * 200, os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd, depth = deeper, depth + 1
    os.close(fd)
    scanned = scan_images(images)
    assert scanned.image_ids == ["Images/skirt/s.jpg"]
    assert len(scanned.skipped) == 1 and "cannot be read (File name too long)" in scanned.skipped[0]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads a folder whatever its permission bits")
def test_an_unreadable_subfolder_is_named_and_an_unreadable_images_folder_is_an_error(tmp_path, capsys):
    images = tmp_path / "R" / "Images"
    (images / "skirt").mkdir(parents=True)
    (images / "locked").mkdir()
    write_jpeg(images / "skirt" / "s.jpg", np.full((32, 32, 3), 9, np.uint8))
    (images / "locked").chmod(0)
    try:
        scanned = scan_images(images)
        assert scanned.image_ids == ["Images/skirt/s.jpg"]
        assert scanned.skipped == [f"{str(images / 'locked')!r}: cannot be read (Permission denied); "
                                   f"its images are left out"]
        images.chmod(0)
        assert main(["predict", "--model", str(DEMO_MODEL), "--images", str(images),
                     "--out", str(tmp_path / "pred.csv")]) == 2
        assert capsys.readouterr().err.strip() == f"fkp predict: {images}: Permission denied"
    finally:
        images.chmod(0o755)
        (images / "locked").chmod(0o755)
    assert not (tmp_path / "pred.csv").exists()


def test_predict_a_folder_without_images_is_an_error(tmp_path, capsys):
    (tmp_path / "Images").mkdir()
    assert main(["predict", "--model", str(DEMO_MODEL), "--images", str(tmp_path / "Images"),
                 "--out", str(tmp_path / "pred.csv")]) == 2
    assert "Images: no image files to predict" in capsys.readouterr().err
    assert not (tmp_path / "pred.csv").exists()
