"""`append_annotations` and `fkp merge`: new rows after the existing bytes, duplicates refused,
everything checked before the one write, a change made meanwhile never lost."""

from __future__ import annotations

import os

import numpy as np
import pytest

from engine.cli import main
from engine.io.annotations import (Annotations, append_annotations, format_annotations, load_annotations,
                                  save_annotations)
from engine.io.files import FileChangedError


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
    # b.jpg is there with the same values (issue 29): skipped, d.jpg added after the bytes.
    assert append_annotations(path, _ann(["Images/blouse/d.jpg", "Images/blouse/b.jpg"])) == 1
    after = path.read_bytes()
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


def _test_split(ids) -> Annotations:
    return Annotations.from_arrays(ids, [0] * len(ids))


def test_a_refused_merge_onto_a_more_file_leaves_it_as_it_was(tmp_path, capsys):
    base, more = tmp_path / "base.csv", tmp_path / "more.csv"
    save_annotations(_ann(["Images/blouse/a.jpg"]), base)
    save_annotations(_ann(["Images/blouse/a.jpg", "Images/blouse/b.jpg"], 1), more)
    before = more.read_bytes()
    assert main(["merge", str(base), str(more), "--out", str(more)]) == 2
    assert "in the file already" in capsys.readouterr().err
    assert more.read_bytes() == before  # neither replaced by BASE nor deleted


def test_several_more_files_are_checked_together_before_the_one_write(tmp_path, capsys):
    base, m1, m2 = tmp_path / "base.csv", tmp_path / "m1.csv", tmp_path / "m2.csv"
    save_annotations(_ann(["Images/blouse/a.jpg"]), base)
    save_annotations(_ann(["Images/blouse/b.jpg"], 1), m1)
    save_annotations(_ann(["Images/blouse/b.jpg", "Images/blouse/c.jpg"], 2), m2)
    before = base.read_bytes()
    assert main(["merge", str(base), str(m1), str(m2), "--out", str(base)]) == 2
    assert "nothing appended" in capsys.readouterr().err and base.read_bytes() == before
    save_annotations(_ann(["Images/blouse/c.jpg"], 2), m2)
    assert main(["merge", str(base), str(m1), str(m2), "--out", str(base)]) == 0
    assert "2 rows appended to the 1 of" in capsys.readouterr().out
    assert len(load_annotations(base)) == 3 and not load_annotations(base).problems


def test_test_split_rows_are_refused_by_a_keypoint_file_and_join_a_test_split(tmp_path, capsys):
    train, test, more = tmp_path / "train.csv", tmp_path / "test.csv", tmp_path / "more.csv"
    save_annotations(_ann(["Images/blouse/a.jpg"]), train)
    save_annotations(_test_split(["Images/blouse/t.jpg"]), test)
    save_annotations(_test_split(["Images/blouse/u.jpg", "Images/blouse/v.jpg"]), more)
    before = train.read_bytes()
    assert main(["merge", str(train), str(more), "--out", str(train)]) == 2
    assert "rows of a test split" in capsys.readouterr().err and train.read_bytes() == before
    with pytest.raises(ValueError, match="nothing appended"):
        append_annotations(train, _test_split(["Images/blouse/w.jpg"]))
    assert main(["merge", str(test), str(more), "--out", str(test)]) == 0
    assert "2 rows appended to the 1 of" in capsys.readouterr().out
    merged = load_annotations(test)
    assert len(merged) == 3 and not merged.problems and not merged.has_keypoints
    (tmp_path / "empty.csv").write_bytes(b"")
    assert main(["merge", str(tmp_path / "empty.csv"), str(train), str(test), "--out", str(tmp_path / "x.csv")]) == 2
    assert "mix test splits" in capsys.readouterr().err and not (tmp_path / "x.csv").exists()


def test_an_empty_base_gives_a_file_with_its_header(tmp_path):
    base, more, out = tmp_path / "base.csv", tmp_path / "more.csv", tmp_path / "out.csv"
    base.write_bytes(b"")
    save_annotations(_ann(["Images/blouse/a.jpg", "Images/blouse/b.jpg"]), more)
    assert main(["merge", str(base), str(more), "--out", str(out)]) == 0
    assert out.read_bytes() == more.read_bytes()
    assert append_annotations(base, _ann(["Images/blouse/c.jpg"])) == 1
    assert load_annotations(base).header is not None and len(load_annotations(base)) == 1


@pytest.fixture
def another_writer(monkeypatch):
    """Another program that appends a row to a file while we write ours: at our first fsync,
    after the file was read and before it is replaced."""
    def plant(path, row: bytes):
        real_fsync = os.fsync

        def fsync_after_their_write(fd):
            monkeypatch.setattr(os, "fsync", real_fsync)
            with open(path, "ab") as f:
                f.write(row)
            real_fsync(fd)

        monkeypatch.setattr(os, "fsync", fsync_after_their_write)
    return plant


def test_fkp_merge_in_place_never_loses_a_change_made_meanwhile(tmp_path, capsys, another_writer):
    base, more = tmp_path / "train.csv", tmp_path / "more.csv"
    save_annotations(_ann(["Images/blouse/a.jpg"]), base)
    save_annotations(_ann(["Images/blouse/b.jpg"], 1), more)
    theirs = load_annotations(base)
    theirs.image_ids[0] = "Images/blouse/z.jpg"
    their_row = format_annotations(theirs).split(b"\n", 1)[1]
    another_writer(base, their_row)
    assert main(["merge", str(base), str(more), "--out", str(base)]) == 2
    err = capsys.readouterr().err
    assert f"{base}: changed on disk after it was read" in err and ".tmp" not in err
    assert load_annotations(base).image_ids.tolist() == ["Images/blouse/a.jpg", "Images/blouse/z.jpg"]
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_appending_never_loses_a_change_made_meanwhile(tmp_path, another_writer):
    path = tmp_path / "train.csv"
    save_annotations(_ann(["Images/blouse/a.jpg"]), path)
    another_writer(path, b"")  # rewritten with the same bytes: no change, the append goes on
    assert append_annotations(path, _ann(["Images/blouse/b.jpg"], 1)) == 1
    theirs = load_annotations(path)
    theirs.image_ids[:] = ["Images/blouse/y.jpg", "Images/blouse/z.jpg"]
    changed = format_annotations(theirs)
    another_writer(path, changed[changed.index(b"\n") + 1:])
    with pytest.raises(FileChangedError):
        append_annotations(path, _ann(["Images/blouse/c.jpg"], 2))
    assert len(load_annotations(path)) == 4 and "Images/blouse/c.jpg" not in load_annotations(path).image_ids
