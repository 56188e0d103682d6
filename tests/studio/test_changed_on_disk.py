"""A file another program changed while the studio had it open (a git pull, a script, a colleague)
is never overwritten silently: the save merges, saves a copy or is cancelled; a restore after a
crash merges onto the changed file and never re-applies an undone edit."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtWidgets import QMessageBox

from engine.io.annotations import load_annotations, save_annotations
from engine.schema import KEYPOINT_INDEX, category_code

K = KEYPOINT_INDEX


def _show(window, qtbot, data_row: int) -> None:
    window.list_panel.list_view.selectRow(window.list_model.view_row(data_row))
    qtbot.waitUntil(lambda: window.current_row == data_row, timeout=3000)


def _select(window, name: str) -> None:
    window.editing.select_keypoint(K[name])


def _outside_change(csv, row: int, keypoint: str, xy) -> None:
    """Another program rewrites the file with one point moved."""
    ann = load_annotations(csv)
    ann.coords[row, K[keypoint]] = xy
    save_annotations(ann, csv)


def _answer(window, monkeypatch, answer: str) -> list[str]:
    shown = []
    monkeypatch.setattr(window.questions, "changed_on_disk", lambda name: answer)
    monkeypatch.setattr(QMessageBox, "information", lambda parent, title, text, *a: shown.append(text))
    return shown


def test_save_merges_onto_the_changed_file_and_lists_conflicts(open_window, dataset, qtbot, monkeypatch):
    csv = dataset["csv"]
    window = open_window(csv)
    _show(window, qtbot, 0)
    _select(window, "neckline_left")
    window.editing.nudge(5, 0)
    ours = window.doc.ann.coords[0, K["neckline_left"]].tolist()
    _select(window, "shoulder_left")
    window.editing.nudge(0, 3)
    _outside_change(csv, 0, "shoulder_left", [1, 2])   # the same point: a conflict
    _outside_change(csv, 2, "waistband_left", [7, 8])  # another point: simply kept
    shown = _answer(window, monkeypatch, "merge")
    with qtbot.waitSignal(window.datasetOpened, timeout=10000):
        assert window.save()
    saved = load_annotations(csv)
    assert saved.coords[0, K["neckline_left"]].tolist() == ours
    assert saved.coords[2, K["waistband_left"]].tolist() == [7, 8]
    assert saved.coords[0, K["shoulder_left"]].tolist() != [1, 2]  # this session's value won ...
    assert "1 changed on both sides" in shown[0] and "shoulder_left: kept" in shown[0]
    (theirs,) = csv.parent.glob("train.theirs-*.csv")             # ... and the other is kept
    assert load_annotations(theirs).coords[0, K["shoulder_left"]].tolist() == [1, 2]
    # The window shows the merged file, saved and clean.
    assert window.doc.ann.coords[2, K["waistband_left"]].tolist() == [7, 8] and not window.isWindowModified()


def test_cancel_keeps_the_other_version_and_the_edits(open_window, dataset, qtbot, monkeypatch):
    csv = dataset["csv"]
    window = open_window(csv)
    _show(window, qtbot, 0)
    window.editing.next_keypoint()
    window.editing.nudge(5, 0)
    _outside_change(csv, 2, "waistband_left", [7, 8])
    outside = csv.read_bytes()
    _answer(window, monkeypatch, "cancel")
    assert not window.save()
    assert csv.read_bytes() == outside and window.isWindowModified() and window.doc.edited[0]


def test_save_as_writes_a_copy_and_leaves_the_changed_file(open_window, dataset, qtbot, monkeypatch, tmp_path):
    csv = dataset["csv"]
    window = open_window(csv)
    _show(window, qtbot, 0)
    window.editing.next_keypoint()
    window.editing.nudge(5, 0)
    ours = window.doc.ann.coords[0].copy()
    _outside_change(csv, 2, "waistband_left", [7, 8])
    outside = csv.read_bytes()
    _answer(window, monkeypatch, "save_as")
    copy = csv.parent / "mine.csv"
    monkeypatch.setattr(window.questions, "save_path", lambda start: str(copy))
    with qtbot.waitSignal(window.datasetOpened, timeout=10000):
        assert window.save()
    assert csv.read_bytes() == outside
    np.testing.assert_array_equal(load_annotations(copy).coords[0], ours)
    assert window.doc.csv_path == copy.resolve()


def test_restore_after_a_crash_merges_onto_the_changed_file_without_undone_edits(open_window, dataset, qtbot, crash):
    csv = dataset["csv"]
    window = open_window(csv)
    _show(window, qtbot, 0)
    _select(window, "neckline_left")
    window.editing.nudge(4, 0)
    kept = window.doc.ann.coords[0, K["neckline_left"]].tolist()
    _select(window, "shoulder_left")
    window.editing.nudge(9, 0)
    window.undo_stack.undo()  # undone before the crash: must not come back
    crash(window)
    _outside_change(csv, 0, "shoulder_left", [1, 2])
    again = open_window(csv, restore_policy="restore")
    a = again.doc.ann
    assert a.coords[0, K["neckline_left"]].tolist() == kept
    assert a.coords[0, K["shoulder_left"]].tolist() == [1, 2], "the undone edit was re-applied over the outside change"
    assert again.isWindowModified()


def test_a_merge_onto_a_file_rewritten_as_a_test_split_keeps_the_edit(open_window, dataset, qtbot, monkeypatch):
    """Issue 30 item 1: another program rewrote the file as `image_id,image_category`; the merge
    gives it the keypoint columns back (as a restore does) and the edit is in the saved file."""
    csv = dataset["csv"]
    window = open_window(csv)
    _show(window, qtbot, 0)
    _select(window, "neckline_left")
    window.editing.nudge(5, 0)
    ours = window.doc.ann.coords[0, K["neckline_left"]].tolist()
    test_split = "image_id,image_category\n" + "".join(
        f"{i},{c}\n" for i, c in zip(dataset["ids"], dataset["categories"]))
    csv.write_text(test_split)
    shown = _answer(window, monkeypatch, "merge")
    with qtbot.waitSignal(window.datasetOpened, timeout=10000):
        assert window.save()
    saved = load_annotations(csv)
    assert saved.has_keypoints and len(saved) == 6
    assert saved.coords[0, K["neckline_left"]].tolist() == ours and saved.visibility[0, K["neckline_left"]] == 1
    assert "this session's value kept" in shown[0]
    (theirs,) = csv.parent.glob("train.theirs-*.csv")
    assert theirs.read_text() == test_split


def _recategorized(csv, row: int, category: str) -> None:
    """Another program makes image `row` a `category` garment, with that category's points."""
    from tests.studio.conftest import garment
    ann = load_annotations(csv)
    ann.categories[row] = category_code(category)
    ann.coords[row], ann.visibility[row] = garment(category)
    save_annotations(ann, csv)


def test_a_merge_onto_a_category_changed_on_disk_clears_and_lists_the_points_it_lacks(open_window, dataset, qtbot,
                                                                                     monkeypatch):
    """Issue 30 item 11: the other side made the blouse a skirt; this session's neckline edit has no
    place on a skirt: cleared and listed, this session's value kept beside the file; the save works."""
    csv = dataset["csv"]
    window = open_window(csv)
    _show(window, qtbot, 0)
    _select(window, "neckline_left")
    window.editing.nudge(5, 0)
    ours = window.doc.ann.coords[0, K["neckline_left"]].tolist()
    _recategorized(csv, 0, "skirt")
    errors = []
    monkeypatch.setattr(QMessageBox, "critical", lambda parent, title, text, *a: errors.append(text))
    shown = _answer(window, monkeypatch, "merge")
    with qtbot.waitSignal(window.datasetOpened, timeout=10000):
        assert window.save()
    assert not errors
    saved = load_annotations(csv)
    assert saved.categories[0] == category_code("skirt") and saved.visibility[0, K["neckline_left"]] == -1
    assert not saved.problems
    assert "neckline_left: cleared, skirt has no neckline_left" in shown[0]
    assert len(list(csv.parent.glob("train.theirs-*.csv"))) == 1
    (kept,) = csv.parent.glob("train.ours-*.csv")
    assert load_annotations(kept).coords[0, K["neckline_left"]].tolist() == ours
    assert not window.isWindowModified()


def test_a_restore_onto_a_category_changed_on_disk_clears_the_points_it_lacks(open_window, dataset, qtbot, crash,
                                                                            monkeypatch):
    """Issue 30 item 11 (restore): the crashed session's neckline edit on an image now a skirt is
    not restored onto the skirt (listed in the question); the restored file saves."""
    csv = dataset["csv"]
    window = open_window(csv)
    _show(window, qtbot, 0)
    _select(window, "neckline_left")
    window.editing.nudge(4, 0)
    _select(window, "cuff_left_in")
    window.editing.nudge(0, 2)
    _show(window, qtbot, 1)
    _select(window, "waistband_left")
    window.editing.nudge(3, 0)
    trousers = window.doc.ann.coords[1, K["waistband_left"]].tolist()
    crash(window)
    _recategorized(csv, 0, "skirt")
    questions = []

    def answer(box):
        questions.append(box.text())
        return QMessageBox.Yes
    monkeypatch.setattr(QMessageBox, "exec", answer)
    again = open_window(csv, restore_policy="ask")
    a = again.doc.ann
    assert a.categories[0] == category_code("skirt")
    assert (a.visibility[0, [K["neckline_left"], K["cuff_left_in"]]] == -1).all()
    assert "neckline_left: cleared, skirt has no neckline_left" in questions[0]
    assert a.coords[1, K["waistband_left"]].tolist() == trousers and again.isWindowModified()
    errors = []
    monkeypatch.setattr(QMessageBox, "critical", lambda parent, title, text, *a: errors.append(text))
    assert again.save() and not errors and not load_annotations(csv).problems


def test_saving_a_deleted_file_says_it_is_gone_and_offers_save_as(open_window, dataset, qtbot, monkeypatch):
    from PySide6.QtCore import Qt

    csv = dataset["csv"]
    window = open_window(csv)
    _show(window, qtbot, 0)
    canvas = window.canvas
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key_N)
    qtbot.keyClick(canvas, Qt.Key_Right)  # nudged 1 px
    ours = window.doc.ann.coords[0].copy()
    csv.unlink()
    asked, errors = [], []
    monkeypatch.setattr(window.questions, "changed_on_disk", lambda name: pytest.fail("nothing to merge onto"))
    monkeypatch.setattr(window.questions, "file_gone", lambda path: asked.append(path) or "cancel", raising=False)
    monkeypatch.setattr(window, "show_error", lambda title, text: errors.append(text))
    qtbot.keyClick(canvas, Qt.Key_S, Qt.ControlModifier)
    assert asked == [str(csv.resolve())] and errors == [] and window.isWindowModified() and not csv.exists()
    assert "is gone from disk" in window.status_bar.currentMessage()
    again = csv.parent / "again.csv"
    monkeypatch.setattr(window.questions, "file_gone", lambda path: "save_as")
    monkeypatch.setattr(window.questions, "save_path", lambda start: str(again))
    with qtbot.waitSignal(window.datasetOpened, timeout=10000):
        qtbot.keyClick(canvas, Qt.Key_S, Qt.ControlModifier)
    np.testing.assert_array_equal(load_annotations(again).coords[0], ours)
    assert window.doc.csv_path == again.resolve() and errors == []
