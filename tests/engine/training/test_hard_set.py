"""The hard set as an engine model: members and reasons, worst by NE, corrected, removed, its NE, saved."""

from __future__ import annotations

import numpy as np
import pytest

from engine.io.workspace import Workspace
from engine.training.hard_set import HardSet

IDS = [f"Images/blouse/{i}.jpg" for i in range(6)]


def test_worst_first_joins_members_are_never_picked_twice_and_per_category(tmp_path):
    ws = Workspace(tmp_path / "root", state_dir=tmp_path / "state")
    hard = HardSet(workspace=ws)
    ne = np.array([0.1, 0.5, np.nan, 0.3, 0.9, 0.2])
    assert hard.worst(IDS, ne, 2) == [IDS[4], IDS[1]]
    assert hard.add(hard.worst(IDS, ne, 2), "worst-ne") == 2
    assert hard.worst(IDS, ne, 2) == [IDS[3], IDS[5]], "members are not picked again"
    assert hard.worst(IDS, ne, 10)[-1] == IDS[0] and IDS[2] not in hard.worst(IDS, ne, 10), "no NE: never picked"
    cats = np.array([0, 0, 0, 1, 1, 1])
    assert hard.worst(IDS, ne, 1, cats) == [IDS[0], IDS[3]]
    assert HardSet.load(ws).entries == {IDS[4]: "worst-ne", IDS[1]: "worst-ne"}, "saved at once"


def test_removed_images_stay_out_when_edited_and_come_back_when_added(tmp_path):
    hard = HardSet(workspace=Workspace(tmp_path, state_dir=tmp_path / "state"))
    hard.add([IDS[0], IDS[1]])
    hard.remove([IDS[1]])
    assert hard.members() == [IDS[0]]
    assert hard.corrected([IDS[1], IDS[2], IDS[0]]) == 1, "only the image the set did not know joins"
    assert hard.entries == {IDS[0]: "manual", IDS[1]: "removed", IDS[2]: "corrected"}
    assert hard.add([IDS[1]], "manual") == 1 and IDS[1] in hard.members()
    with pytest.raises(ValueError, match="reason"):
        hard.add([IDS[3]], "because")


def test_its_ne_pools_the_members_points():
    hard = HardSet({IDS[0]: "manual", IDS[2]: "worst-ne", "Images/elsewhere.jpg": "manual", IDS[3]: "removed"})
    errors = np.full((6, 24), np.nan)
    errors[0, :2] = [0.1, 0.3]
    errors[2, :1] = [0.5]
    errors[3, :1] = [9.0]  # removed: not counted
    row_of = {i: r for r, i in enumerate(IDS)}
    assert hard.member_rows(row_of).tolist() == [0, 2]
    assert hard.ne(row_of, errors) == pytest.approx(0.3)
    assert np.isnan(HardSet().ne(row_of, errors))


def test_a_bad_row_is_named_and_skipped_and_the_file_is_kept_before_the_next_save(tmp_path):
    ws = Workspace(tmp_path, state_dir=tmp_path / "state")
    ws.save_hard_set({IDS[0]: "manual", IDS[2]: "worst-ne"})
    original = ws.hard_set_path.read_text() + f"{IDS[3]},because\n"
    ws.hard_set_path.write_text(original)
    with pytest.raises(ValueError, match=r"hard_set\.csv, row 4"):
        HardSet.load(ws)  # strict without a problems list
    problems: list[str] = []
    hard = HardSet.load(ws, problems)
    assert hard.entries == {IDS[0]: "manual", IDS[2]: "worst-ne"}
    assert "row 4" in problems[0] and "because" in problems[0]
    kept = list(ws.state_dir.glob("hard_set.damaged-*.csv"))
    assert len(kept) == 1 and kept[0].read_text() == original and kept[0].name in problems[-1]
    hard.add([IDS[1]])  # the next save rewrites the file: the bad row is still in the copy
    assert ws.load_hard_set() == {IDS[0]: "manual", IDS[1]: "manual", IDS[2]: "worst-ne"}
    assert kept[0].read_text() == original
