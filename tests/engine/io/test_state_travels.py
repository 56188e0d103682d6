"""Issue 29, item 1: the review marks and the edit journal of an annotation file travel with its
data set folder (moved, copied, renamed; through a crash), and an earlier version's state, keyed
by the absolute path, is adopted."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from engine.io.journal import Edit, Journal, make_base, read_journal
from engine.io.review import REVIEWED, SKIPPED, ReviewLog
from engine.io.workspace import Workspace, dataset_root_of


def _data_set(root: Path) -> Path:
    """A data set root with one annotation file; returns the file."""
    csv = root / "Annotations" / "photos.csv"
    csv.parent.mkdir(parents=True)
    csv.write_text("image_id,image_category\nImages/blouse/a.jpg,blouse\nImages/blouse/b.jpg,blouse\n")
    return csv


def _state(csv: Path) -> tuple[dict[str, str], list[str]]:
    """(review states, journaled image ids) as a session opening `csv` finds them."""
    ws = Workspace(dataset_root_of(csv))
    journal = ws.journal_path(csv)
    edits = [e.image_id for e in read_journal(journal).edits] if journal.exists() else []
    return ReviewLog(ws.review_path(csv)).load()[0], edits


def _mark_and_edit(csv: Path) -> None:
    ws = Workspace(dataset_root_of(csv))
    review = ReviewLog(ws.review_path(csv))
    review.append({"Images/blouse/a.jpg": REVIEWED, "Images/blouse/b.jpg": SKIPPED})
    review.close()
    journal = Journal(ws.journal_path(csv), make_base(csv))
    journal.append(Edit("Images/blouse/a.jpg", [0], [[5, 6]], [1]))
    journal.close()


@pytest.mark.parametrize("how", ["copy", "move", "rename"])
def test_review_marks_and_edits_travel_with_the_folder(tmp_path, how):
    csv = _data_set(tmp_path / "photos")
    _mark_and_edit(csv)
    if how == "copy":  # `cp -a photos photos_moved`
        shutil.copytree(tmp_path / "photos", tmp_path / "photos_moved", symlinks=True)
    elif how == "move":
        (tmp_path / "elsewhere").mkdir()
        shutil.move(tmp_path / "photos", tmp_path / "elsewhere" / "photos_moved")
    else:
        os.rename(tmp_path / "photos", tmp_path / "photos_moved")
    moved = next(tmp_path.rglob("photos_moved")) / "Annotations" / "photos.csv"
    assert _state(moved) == ({"Images/blouse/a.jpg": REVIEWED, "Images/blouse/b.jpg": SKIPPED},
                             ["Images/blouse/a.jpg"])


def test_a_review_mark_survives_kill_9_and_then_a_move(tmp_path):
    csv = _data_set(tmp_path / "photos")
    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from engine.io.review import ReviewLog
        from engine.io.workspace import Workspace
        csv = Path({str(csv)!r})
        log = ReviewLog(Workspace(csv.parent.parent).review_path(csv))
        log.append({{"Images/blouse/b.jpg": "reviewed"}})
        os.kill(os.getpid(), signal.SIGKILL)  # no close, no compaction, no clean-up
    """)
    proc = subprocess.run([sys.executable, "-c", script], cwd=os.getcwd())
    assert proc.returncode == -9
    shutil.move(tmp_path / "photos", tmp_path / "photos_moved")
    assert _state(tmp_path / "photos_moved" / "Annotations" / "photos.csv")[0] == {"Images/blouse/b.jpg": REVIEWED}


def _old_key(csv: Path) -> str:
    """The key an earlier version named the state with: the absolute path's hash."""
    path = csv.resolve()
    return f"{path.stem}-{hashlib.sha1(str(path).encode('utf-8')).hexdigest()[:10]}"


def _write_old_state(csv: Path) -> Path:
    """Review marks and a journal as an earlier version left them; returns the journal folder."""
    folder = dataset_root_of(csv) / ".fkp" / "journal"
    folder.mkdir(parents=True)
    (folder / f"{_old_key(csv)}.review.jsonl").write_text('{"id": "Images/blouse/a.jpg", "state": "reviewed"}\n')
    journal = Journal(folder / f"{_old_key(csv)}.jsonl", make_base(csv))
    journal.append(Edit("Images/blouse/b.jpg", [1], [[7, 8]], [0]))
    journal.close()
    return folder


def test_an_earlier_versions_state_is_adopted_in_place_and_after_a_move(tmp_path):
    csv = _data_set(tmp_path / "photos")
    folder = _write_old_state(csv)
    assert _state(csv) == ({"Images/blouse/a.jpg": REVIEWED}, ["Images/blouse/b.jpg"])
    assert not list(folder.glob(f"{_old_key(csv)}.*"))  # renamed, not copied: one history

    other = _data_set(tmp_path / "other")
    _write_old_state(other)
    shutil.move(tmp_path / "other", tmp_path / "other_moved")  # moved before this version opened it
    assert _state(tmp_path / "other_moved" / "Annotations" / "photos.csv") == (
        {"Images/blouse/a.jpg": REVIEWED}, ["Images/blouse/b.jpg"])


def test_an_old_key_never_replaces_the_state_nor_adopts_a_planted_link(tmp_path):
    csv = _data_set(tmp_path / "photos")
    folder = _write_old_state(csv)
    ws = Workspace(tmp_path / "photos")
    new_review = ws.review_path(csv)
    assert new_review.exists()  # adopted; a second old log appearing later is not taken over it
    (folder / f"{_old_key(csv)}.review.jsonl").write_text('{"id": "Images/blouse/b.jpg", "state": "skipped"}\n')
    assert Workspace(tmp_path / "photos").review_path(csv) == new_review
    assert ReviewLog(new_review).load()[0] == {"Images/blouse/a.jpg": REVIEWED}

    target = tmp_path / "secret.jsonl"
    target.write_text("not yours\n")
    linked = _data_set(tmp_path / "linked")
    link_folder = dataset_root_of(linked) / ".fkp" / "journal"
    link_folder.mkdir(parents=True)
    (link_folder / f"{_old_key(linked)}.review.jsonl").symlink_to(target)
    review = Workspace(tmp_path / "linked").review_path(linked)
    assert not os.path.lexists(review) and target.read_text() == "not yours\n"


def test_two_annotation_files_of_one_name_keep_their_own_state(tmp_path):
    csv = _data_set(tmp_path / "photos")
    ws = Workspace(tmp_path / "photos")
    assert ws.journal_path(csv) != ws.journal_path(tmp_path / "photos" / "photos.csv")
    assert ws.lock_path(csv) == ws.journal_path(csv).with_suffix(".lock")
