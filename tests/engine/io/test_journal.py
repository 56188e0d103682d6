"""The edit journal: durable per edit, replayable, robust to a torn last line and damaged lines."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from engine.io.annotations import Annotations
from engine.io.journal import Edit, Journal, JournalError, make_base, read_journal
from engine.io.merge import merge_changes
from engine.io.workspace import Workspace, dataset_root_of, find_annotation_files


def _edit(image_id, ks, xy, v):
    return Edit(image_id, np.array(ks), np.array(xy, dtype=np.float32), np.array(v, dtype=np.int8))


def test_no_file_until_first_edit_then_base_and_edits_round_trip(tmp_path, csv):
    journal_path = Workspace(tmp_path).journal_path(csv)
    journal = Journal(journal_path, make_base(csv))
    assert not journal_path.exists()
    journal.append(_edit("Images/a.jpg", [0, 1], [[1.5, 2], [3, 4]], [1, 0]))
    journal.append(_edit("Images/b.jpg", [5], [[-1, -1]], [-1]))
    contents = read_journal(journal_path)
    assert contents.base["annotations"] == str(csv.resolve())
    assert contents.base["size"] == csv.stat().st_size
    assert not contents.torn_tail
    assert [e.image_id for e in contents.edits] == ["Images/a.jpg", "Images/b.jpg"]
    np.testing.assert_array_equal(contents.edits[0].coords, [[1.5, 2], [3, 4]])
    np.testing.assert_array_equal(contents.edits[1].visibility, [-1])


def test_replay_applies_in_order_and_reports_unknown_images(tmp_path, csv):
    path = tmp_path / "j.jsonl"
    journal = Journal(path, make_base(csv))
    for edit in (_edit("b", [3], [[10, 10]], [1]), _edit("b", [3], [[12, 11]], [0]),  # later edit wins
                 _edit("zzz", [0], [[1, 1]], [1])):
        journal.append(edit)
    ann = Annotations.from_arrays(["a", "b"], [0, 0], np.zeros((2, 24, 2), np.float32), np.ones((2, 24), np.int8))
    result = merge_changes(read_journal(path).net_changes(), ann)
    assert result.rows.tolist() == [1] and result.missing == ["zzz"]
    assert result.annotations.coords[1, 3].tolist() == [12, 11] and result.annotations.visibility[1, 3] == 0
    assert (result.annotations.coords[0] == 0).all()


def test_torn_last_line_is_ignored_and_cut_before_next_append(tmp_path, csv):
    path = tmp_path / "j.jsonl"
    journal = Journal(path, make_base(csv))
    journal.append(_edit("a", [0], [[1, 1]], [1]))
    journal.close()
    with open(path, "ab") as f:
        f.write(b'{"t":"set","id":"a","k":[0],"xy":[[9')  # a crash mid-write
    contents = read_journal(path)
    assert contents.torn_tail and len(contents.edits) == 1
    journal = Journal(path, contents.base)
    journal.append(_edit("a", [0], [[2, 2]], [1]))
    contents = read_journal(path)
    assert not contents.torn_tail
    assert [e.coords.tolist() for e in contents.edits] == [[[1, 1]], [[2, 2]]]


def test_a_corrupt_middle_line_is_named_and_the_edits_around_it_kept(tmp_path, csv):
    path = tmp_path / "j.jsonl"
    edit = json.dumps(_edit("a", [0], [[1, 1]], [1]).to_json())
    path.write_text(json.dumps(make_base(csv)) + f"\n{edit}\nnot json\n[1, 2]\n{edit}\n")
    contents = read_journal(path)
    assert len(contents.edits) == 2
    assert [line.split(":")[0] for line in contents.bad_lines] == ["line 3", "line 4"]
    path.write_text("not json\n" + edit + "\n")
    with pytest.raises(JournalError, match=r"j\.jsonl: the first record is not a journal base record"):
        read_journal(path)


def test_edits_survive_kill_9(tmp_path, csv):
    """A process killed without any clean-up still leaves every acknowledged edit on disk."""
    path = tmp_path / "j.jsonl"
    script = textwrap.dedent(f"""
        import os, signal, numpy as np
        from engine.io.journal import Edit, Journal, make_base
        j = Journal({str(path)!r}, make_base({str(csv)!r}))
        for i in range(5):
            j.append(Edit("a", np.array([i]), np.array([[i, i]], np.float32), np.array([1], np.int8)))
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=os.getcwd())
    assert proc.returncode == -9
    assert [int(e.keypoints[0]) for e in read_journal(path).edits] == [0, 1, 2, 3, 4]


def test_discard_can_keep_the_file(tmp_path, csv):
    path = tmp_path / "j.jsonl"
    journal = Journal(path, make_base(csv))
    journal.append(_edit("a", [0], [[1, 1]], [1]))
    journal.discard(keep_as=tmp_path / "kept.jsonl")
    assert not path.exists() and len(read_journal(tmp_path / "kept.jsonl").edits) == 1


def test_workspace_layout(tmp_path, csv):
    ws = Workspace(tmp_path)
    assert dataset_root_of(csv) == tmp_path.resolve()
    assert dataset_root_of(tmp_path / "val.csv") == tmp_path.resolve()
    assert find_annotation_files(tmp_path) == [csv]
    assert ws.journal_path(csv).parent == tmp_path.resolve() / ".fkp" / "journal"
    assert ws.journal_path(csv) != ws.journal_path(tmp_path / "other" / "train.csv")
    assert ws.image_path("Images/a.jpg") == tmp_path.resolve() / "Images" / "a.jpg"
    assert ws.is_writable()


def test_an_edit_checks_its_values_once_whatever_they_came_from(tmp_path, csv):
    e = Edit("a", [3], [[1, 2]], [0])
    assert (e.keypoints.dtype, e.coords.dtype, e.visibility.dtype) == (np.int64, np.float32, np.int8)
    assert e.coords.shape == (1, 2)
    for keypoints, xy, v, reason in (([24], [[1, 2]], [0], "out of range"), ([3], [[1, 2]], [2], "visibility"),
                                     ([3, 4], [[1, 2]], [0, 1], "differ in length")):
        with pytest.raises(ValueError, match=reason):
            Edit("a", keypoints, xy, v)
    # The same check guards what a journal file says.
    path = tmp_path / "j.jsonl"
    journal = Journal(path, make_base(csv))
    journal.append(e)
    journal.close()
    with open(path, "a") as f:
        f.write('{"t": "set", "id": "a", "k": [99], "xy": [[1, 2]], "v": [1]}\n')
        f.write('{"t": "set", "id": "a", "k": [5], "xy": [[1, 2]], "v": [1000]}\n')
        f.write('{"t": "set", "id": "a", "k": [6], "xy": [[3, 4]], "v": [1]}\n')
    contents = read_journal(path)
    assert [int(e.keypoints[0]) for e in contents.edits] == [3, 6]  # the good edits, before and after
    assert contents.bad_lines[0].startswith("line 3: malformed edit (keypoint index out of range")
    assert contents.bad_lines[1].startswith("line 4: malformed edit (visibility must be -1, 0 or 1")


def test_net_changes_leave_out_what_was_undone_and_keep_the_value_before(tmp_path, csv):
    path = tmp_path / "j.jsonl"
    journal = Journal(path, make_base(csv))
    journal.append(_edit("a", [0], [[5, 5]], [1]), before=_edit("a", [0], [[1, 1]], [1]))
    journal.append(_edit("a", [0], [[1, 1]], [1]), before=_edit("a", [0], [[5, 5]], [1]))  # its undo
    journal.append(_edit("b", [2], [[7, 8]], [0]), before=_edit("b", [2], [[-1, -1]], [-1]))
    journal.append(_edit("b", [2], [[9, 8]], [0]), before=_edit("b", [2], [[7, 8]], [0]))
    journal.append(_edit("c", [1], [[3, 3]], [1]))  # a journal line from before `was_*` was recorded
    changes = read_journal(path).net_changes()
    assert changes.image_ids.tolist() == ["b", "c"] and changes.keypoints.tolist() == [2, 1]
    assert changes.before_xy[0].tolist() == [-1, -1] and changes.before_v.tolist()[0] == -1
    assert changes.after_xy.tolist() == [[9, 8], [3, 3]] and changes.after_v.tolist() == [0, 1]
    assert np.isnan(changes.before_xy[1]).all()
