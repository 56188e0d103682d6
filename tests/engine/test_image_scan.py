"""Images without an annotation file: the scan, and `fkp predict --images`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.cli import main
from engine.io.annotations import load_annotations
from engine.io.image_scan import scan_images
from engine.io.images import write_jpeg

DEMO_MODEL = Path(__file__).resolve().parents[2] / "resources" / "models" / "demo"


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
