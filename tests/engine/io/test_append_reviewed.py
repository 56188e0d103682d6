"""Issue 29, item 6: adding reviewed images to a training file adds the ones not there yet (an id
there with the same values is skipped, one with other values is a conflict left as it is), says
so before writing, refuses a file in another data root that lacks the images; `fkp validate
--images ROOT` names the rows whose image file is missing."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from engine.cli import main
from engine.io.annotations import Annotations, append_annotations, load_annotations, plan_append, save_annotations


def _ann(ids: list[str], seed: int = 0) -> Annotations:
    """Rows with three points each, values drawn from `seed` per row position."""
    rng = np.random.default_rng(seed)
    vis = np.full((len(ids), 24), -1, np.int8)
    vis[:, :3] = 1
    coords = np.where(vis[..., None] >= 0, rng.integers(0, 99, (len(ids), 24, 2)), -1).astype(np.float32)
    return Annotations.from_arrays(ids, [0] * len(ids), coords, vis)


def test_adding_more_adds_the_new_skips_the_same_and_leaves_a_conflict(tmp_path):
    path = tmp_path / "train.csv"
    reviewed = _ann(["Images/blouse/a.jpg", "Images/blouse/b.jpg", "Images/blouse/c.jpg", "Images/blouse/d.jpg"])
    save_annotations(reviewed.subset([0, 1]), path)  # a and b were added before
    before = path.read_bytes()
    reviewed.coords[0, 0] += 5  # a corrected since: the file's version is not overwritten
    with pytest.raises(ValueError, match=rf"^{path}: 1 image ids are in the file already with other points "
                                         r"\(left as they are\): Images/blouse/a\.jpg: nothing appended$"):
        append_annotations(path, reviewed)  # a caller that saw no plan is told, and nothing is written
    assert path.read_bytes() == before
    plan = plan_append(path, reviewed)
    assert plan.added.image_ids.tolist() == ["Images/blouse/c.jpg", "Images/blouse/d.jpg"]
    assert plan.skipped == ["Images/blouse/b.jpg"] and plan.conflicts == ["Images/blouse/a.jpg"]
    assert plan.summary() == ("train.csv: adds 2 images, skips 1 already there with the same points; 1 there "
                              "with other points left as they are (conflicts: Images/blouse/a.jpg)")
    assert path.read_bytes() == before  # planning writes nothing
    assert plan.write() == 2
    after = load_annotations(path)
    assert path.read_bytes().startswith(before) and len(after) == 4
    assert after.coords[after.index_of("Images/blouse/a.jpg"), 0].tolist() == (reviewed.coords[0, 0] - 5).tolist()
    assert append_annotations(path, reviewed.subset([1, 2, 3])) == 0  # all there: nothing written, no error
    assert len(load_annotations(path)) == 4


def test_a_training_file_in_another_root_must_hold_the_images(tmp_path):
    here, there = tmp_path / "photos", tmp_path / "training"
    (here / "Images" / "blouse").mkdir(parents=True)
    (here / "Images" / "blouse" / "a.jpg").write_bytes(b"jpeg")
    target = there / "Annotations" / "train.csv"
    target.parent.mkdir(parents=True)
    save_annotations(_ann(["Images/blouse/z.jpg"], 3), target)
    before = target.read_bytes()
    rows = _ann(["Images/blouse/a.jpg"])
    with pytest.raises(ValueError, match=rf"^{target}: its data root {there} does not hold 1 of the 1 images to "
                                         rf"add \(e\.g\. Images/blouse/a\.jpg\).*nothing appended$"):
        append_annotations(target, rows, images_root=here)
    assert target.read_bytes() == before
    (there / "Images" / "blouse").mkdir(parents=True)
    shutil.copy(here / "Images" / "blouse" / "a.jpg", there / "Images" / "blouse" / "a.jpg")
    assert append_annotations(target, rows, images_root=here) == 1
    same_root = here / "Annotations" / "train.csv"  # in the images' own root: nothing to check
    same_root.parent.mkdir()
    assert append_annotations(same_root, rows, images_root=here) == 1


def test_fkp_validate_images_names_the_rows_without_their_image(tmp_path, capsys):
    root = tmp_path / "data"
    (root / "Images" / "blouse").mkdir(parents=True)
    (root / "Images" / "blouse" / "a.jpg").write_bytes(b"jpeg")
    csv = root / "Annotations" / "train.csv"
    csv.parent.mkdir()
    save_annotations(_ann(["Images/blouse/a.jpg", "Images/blouse/b.jpg"]), csv)
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join([lines[0], lines[1], "not,a,row", lines[2]]) + "\n")  # b.jpg on line 4
    assert main(["validate", str(csv), "--images", str(root)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert f"{csv}:4, image Images/blouse/b.jpg: no image file {root / 'Images/blouse/b.jpg'}" in out
    assert not any("a.jpg: no image file" in line for line in out)
    assert out[-1].startswith(f"{csv}: 2 rows loaded, 1 rows not parsed") and "1 rows without their image" in out[-1]
    assert main(["validate", str(csv), "--images", str(root), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert [(p["line"], p["image_id"]) for p in report["missing_images"]] == [(4, "Images/blouse/b.jpg")]
