"""`append_annotations` and `fkp merge`: new rows after the existing bytes, duplicates refused."""

from __future__ import annotations

import numpy as np
import pytest

from engine.cli import main
from engine.io.annotations import Annotations, append_annotations, load_annotations, save_annotations


def _ann(ids, seed=0) -> Annotations:
    rng = np.random.default_rng(seed)
    vis = np.full((len(ids), 24), -1, np.int8)
    vis[:, :3] = 1
    coords = np.where(vis[..., None] >= 0, rng.integers(0, 99, (len(ids), 24, 2)), -1).astype(np.float32)
    return Annotations.from_arrays(ids, [0] * len(ids), coords, vis)


def test_appending_keeps_the_existing_bytes_and_its_line_ending(tmp_path):
    path = tmp_path / "train.csv"
    base = _ann(["Images/blouse/a.jpg", "Images/blouse/b.jpg"])
    base.newline, base.final_newline = "\r\n", False
    save_annotations(base, path)
    before = path.read_bytes()
    assert append_annotations(path, _ann(["Images/blouse/c.jpg"], 1)) == 1
    after = path.read_bytes()
    assert after.startswith(before) and after[len(before):].startswith(b"\r\nImages/blouse/c.jpg,blouse,")
    assert load_annotations(path).image_ids.tolist() == ["Images/blouse/a.jpg", "Images/blouse/b.jpg",
                                                         "Images/blouse/c.jpg"]
    with pytest.raises(ValueError, match="1 image ids are in the file already or given twice.*b.jpg"):
        append_annotations(path, _ann(["Images/blouse/d.jpg", "Images/blouse/b.jpg"]))
    with pytest.raises(ValueError, match="given twice.*e.jpg"):
        append_annotations(path, _ann(["Images/blouse/e.jpg", "Images/blouse/e.jpg"]))
    assert path.read_bytes() == after


def test_fkp_merge_writes_a_new_file_or_appends_in_place(tmp_path, capsys):
    a, b, out = tmp_path / "a.csv", tmp_path / "b.csv", tmp_path / "c.csv"
    save_annotations(_ann(["Images/blouse/a.jpg"]), a)
    save_annotations(_ann(["Images/blouse/b.jpg"], 2), b)
    assert main(["merge", str(a), str(b), "--out", str(out)]) == 0
    assert out.read_bytes().startswith(a.read_bytes()) and len(load_annotations(out)) == 2
    assert main(["merge", str(out), str(b), "--out", str(tmp_path / "d.csv")]) == 2
    assert "in the file already" in capsys.readouterr().err and not (tmp_path / "d.csv").exists()
    assert main(["merge", str(a), str(b), "--out", str(a)]) == 0
    assert a.read_bytes() == out.read_bytes()
