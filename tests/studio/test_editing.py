"""Editing in the studio: mouse drag, nudge, visibility, placement, left/right swap, undo/redo,
saving (and failing to save), restoring unsaved edits from the journal after a crash."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt
from PySide6.QtWidgets import QMessageBox

from engine.io.annotations import load_annotations
from engine.io.journal import read_journal
from engine.schema import FLIP_PERMUTATION, KEYPOINT_INDEX, category_keypoints


def _show(window, qtbot, data_row: int) -> None:
    window.list_panel.list_view.selectRow(window.list_model.view_row(data_row))
    qtbot.waitUntil(lambda: window.current_row == data_row, timeout=3000)


def _state(window, row):
    a = window.doc.ann
    return a.coords[row].copy(), a.visibility[row].copy()


def test_drag_a_point_with_the_mouse_then_save(open_window, dataset, qtbot):
    window = open_window(dataset["csv"])
    row = 0
    _show(window, qtbot, row)
    canvas = window.canvas
    qtbot.waitUntil(lambda: canvas.image_size() is not None, timeout=5000)  # the fit is the image's
    k = KEYPOINT_INDEX["shoulder_left"]
    x0, y0 = window.doc.ann.coords[row, k]
    start = canvas.mapFromScene(float(x0), float(y0))
    # Aim a few pixels off the marker's centre: grabbing must not need pixel precision.
    press = start + QPoint(4, -3)
    scale = canvas.transform().m11()
    target = start + QPoint(round(23 * scale), round(11 * scale))
    viewport = canvas.viewport()
    qtbot.mousePress(viewport, Qt.LeftButton, pos=press)
    for t in (0.3, 0.6, 1.0):
        qtbot.mouseMove(viewport, press + (target - start) * t)
    qtbot.mouseRelease(viewport, Qt.LeftButton, pos=press + (target - start))
    assert window.undo_stack.count() == 1, "a whole drag is one undo step"
    moved = window.doc.ann.coords[row, k]
    assert abs(moved[0] - (x0 + 23)) <= 1.5 and abs(moved[1] - (y0 + 11)) <= 1.5
    assert window.isWindowModified() and "[*]" in window.windowTitle()
    assert window.doc.edited[row]
    assert window.save()
    assert not window.isWindowModified()
    saved = load_annotations(dataset["csv"])
    np.testing.assert_array_equal(saved.coords[row, k], np.rint(moved))
    assert (dataset["csv"].parent / "train.csv.orig").read_bytes() != dataset["csv"].read_bytes()
    orig = load_annotations(dataset["csv"].parent / "train.csv.orig")
    np.testing.assert_array_equal(orig.coords[row, k], [x0, y0])


def test_every_edit_undo_and_redo(open_window, dataset, qtbot):
    window = open_window(dataset["csv"])
    row = 0  # a blouse
    _show(window, qtbot, row)
    before = _state(window, row)
    states = [before]

    def record():
        states.append(_state(window, row))

    # N selects keypoints in order; nudge the first one by 1 px, then by 10 px.
    window.editing.next_keypoint()
    k0 = category_keypoints("blouse")[0]
    assert window.editing.selected_k == k0
    window.canvas.setFocus()
    qtbot.keyClick(window.canvas, Qt.Key_Right)
    qtbot.keyClick(window.canvas, Qt.Key_Down, Qt.ShiftModifier)
    np.testing.assert_array_equal(window.doc.ann.coords[row, k0], before[0][k0] + [1, 10])
    assert window.undo_stack.count() == 1, "consecutive nudges of one point merge into one step"
    record()
    # V cycles visible -> occluded -> visible.
    qtbot.keyClick(window.canvas, Qt.Key_V)
    assert window.doc.ann.visibility[row, k0] == 0
    record()
    # Remove the second keypoint, then N to it and a click places it again.
    k1 = category_keypoints("blouse")[1]
    window.editing.select_keypoint(k1)
    window.editing.remove_point()
    assert window.doc.ann.visibility[row, k1] == -1
    assert (window.doc.ann.coords[row, k1] == -1).all()
    record()
    window.editing.select_keypoint(k0)
    qtbot.keyClick(window.canvas, Qt.Key_N)
    assert window.editing.selected_k == k1 and window.canvas.place_mode == k1
    where = window.canvas.mapFromScene(77.0, 66.0)
    qtbot.mouseClick(window.canvas.viewport(), Qt.LeftButton, pos=where)
    assert window.doc.ann.visibility[row, k1] == 1
    assert np.allclose(window.doc.ann.coords[row, k1], [77, 66], atol=1.5)
    record()
    # Swap left and right for the whole garment.
    pre = _state(window, row)
    window.editing.swap_left_right()
    ks = np.array(category_keypoints("blouse"))
    np.testing.assert_array_equal(window.doc.ann.coords[row, ks], pre[0][FLIP_PERMUTATION[ks]])
    np.testing.assert_array_equal(window.doc.ann.visibility[row, ks], pre[1][FLIP_PERMUTATION[ks]])
    record()
    assert window.undo_stack.count() == 5
    # Undo everything step by step, then redo everything.
    for expected in reversed(states[:-1]):
        qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier)
        np.testing.assert_array_equal(_state(window, row)[0], expected[0])
        np.testing.assert_array_equal(_state(window, row)[1], expected[1])
    assert not window.doc.edited[row] and not window.isWindowModified()
    for expected in states[1:]:
        qtbot.keyClick(window, Qt.Key_Z, Qt.ControlModifier | Qt.ShiftModifier)
        np.testing.assert_array_equal(_state(window, row)[0], expected[0])
        np.testing.assert_array_equal(_state(window, row)[1], expected[1])
    assert window.isWindowModified()


def test_crash_then_restore_from_journal(open_window, dataset, qtbot, crash):
    window = open_window(dataset["csv"])
    row = 1  # trousers
    _show(window, qtbot, row)
    window.editing.next_keypoint()
    window.editing.nudge(5, 0)
    window.editing.swap_left_right()
    window.undo_stack.undo()  # the undo is journaled too
    window.editing.next_keypoint()
    window.editing.cycle_visibility()
    expected = _state(window, row)
    assert len(read_journal(window.doc.journal.path).edits) == 4
    # "Crash": the window goes away without saving or cleaning up anything.
    crash(window)
    assert load_annotations(dataset["csv"]).visibility[row].tolist() != expected[1].tolist()

    again = open_window(dataset["csv"], restore_policy="restore")
    np.testing.assert_array_equal(_state(again, row)[0], expected[0])
    np.testing.assert_array_equal(_state(again, row)[1], expected[1])
    assert again.isWindowModified() and again.doc.edited[row]
    again.undo_stack.undo()  # the restore is one undoable step
    np.testing.assert_array_equal(_state(again, row)[0], load_annotations(dataset["csv"]).coords[row])
    again.undo_stack.redo()
    assert again.save()
    np.testing.assert_array_equal(load_annotations(dataset["csv"]).visibility[row], expected[1])
    assert not again.doc.journal.path.exists(), "a save starts a fresh journal"


def test_restore_question_answered_by_the_user(open_window, dataset, qtbot, monkeypatch, crash):
    window = open_window(dataset["csv"])
    _show(window, qtbot, 0)
    window.editing.next_keypoint()
    window.editing.nudge(3, 3)
    edited = _state(window, 0)
    crash(window)
    monkeypatch.setattr(QMessageBox, "exec", lambda self: QMessageBox.Yes)
    again = open_window(dataset["csv"], restore_policy="ask")
    np.testing.assert_array_equal(_state(again, 0)[0], edited[0])


def test_discarded_edits_are_set_aside_not_deleted(open_window, dataset, qtbot, crash):
    window = open_window(dataset["csv"])
    _show(window, qtbot, 0)
    window.editing.next_keypoint()
    window.editing.nudge(3, 3)
    journal_dir = window.doc.journal.path.parent
    crash(window)
    again = open_window(dataset["csv"], restore_policy="discard")
    assert not again.isWindowModified()
    kept = list(journal_dir.glob("*.discarded-*.jsonl"))
    assert len(kept) == 1 and len(read_journal(kept[0]).edits) == 1


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root ignores file permissions")
def test_failed_save_keeps_edits(open_window, dataset, qtbot, monkeypatch):
    window = open_window(dataset["csv"])
    _show(window, qtbot, 0)
    window.editing.next_keypoint()
    window.editing.nudge(4, 0)
    edited = _state(window, 0)
    errors = []
    monkeypatch.setattr(QMessageBox, "critical", lambda parent, title, text, *a: errors.append(text))
    folder = dataset["csv"].parent
    folder.chmod(0o500)
    try:
        assert not window.save()
    finally:
        folder.chmod(0o755)
    assert errors and "not saved" in errors[0] and "Permission denied" in errors[0]
    assert window.isWindowModified()
    np.testing.assert_array_equal(_state(window, 0)[0], edited[0])
    assert window.save()
    np.testing.assert_array_equal(load_annotations(dataset["csv"]).coords[0], edited[0])


def test_a_write_protected_file_is_not_saved_over(open_window, dataset, qtbot, monkeypatch):
    window = open_window(dataset["csv"])
    _show(window, qtbot, 0)
    window.editing.next_keypoint()
    window.editing.nudge(4, 0)
    errors = []
    monkeypatch.setattr(QMessageBox, "critical", lambda parent, title, text, *a: errors.append(text))
    before = dataset["csv"].read_bytes()
    dataset["csv"].chmod(0o444)
    assert not window.save()
    assert "not saved (" + str(dataset["csv"].resolve()) + ": the file is write-protected)" in errors[0]
    assert dataset["csv"].read_bytes() == before and window.isWindowModified()
    dataset["csv"].chmod(0o644)
    assert window.save() and dataset["csv"].read_bytes() != before


def test_failed_save_when_root_owns_the_files(open_window, dataset, qtbot, monkeypatch):
    """The same guarantee with the failure injected (root ignores read-only folders)."""
    window = open_window(dataset["csv"])
    _show(window, qtbot, 0)
    window.editing.next_keypoint()
    window.editing.nudge(4, 0)
    errors = []
    monkeypatch.setattr(QMessageBox, "critical", lambda parent, title, text, *a: errors.append(text))

    def disk_full(ann, path):
        raise OSError(28, "No space left on device")  # as a failing write() raises it: no file name

    monkeypatch.setattr("fkp_studio.models.document.save_annotations", disk_full)
    before = dataset["csv"].read_bytes()
    assert not window.save()
    assert "not saved (No space left on device)" in errors[0] and "None" not in errors[0]
    assert dataset["csv"].read_bytes() == before
    assert window.isWindowModified() and window.doc.edited[0]
    assert len(read_journal(window.doc.journal.path).edits) == 1


def test_quitting_with_unsaved_edits_asks(open_window, dataset, qtbot, monkeypatch):
    window = open_window(dataset["csv"])
    _show(window, qtbot, 0)
    window.editing.next_keypoint()
    window.editing.nudge(1, 0)
    monkeypatch.setattr(window.questions, "unsaved", lambda name: "cancel")
    assert not window.close()
    assert window.isVisible()
    monkeypatch.setattr(window.questions, "unsaved", lambda name: "save")
    assert window.close()
    assert load_annotations(dataset["csv"]).coords[0, window.editing.selected_k, 0] == window.doc.ann.coords[0, window.editing.selected_k, 0]


def test_edits_all_undone_before_a_crash_ask_nothing(open_window, dataset, qtbot, monkeypatch, crash):
    window = open_window(dataset["csv"])
    _show(window, qtbot, 0)
    window.editing.next_keypoint()
    window.editing.nudge(2, 0)
    window.undo_stack.undo()
    crash(window)

    def no_question(_box):
        raise AssertionError("nothing to restore: the user must not be asked")

    monkeypatch.setattr(QMessageBox, "exec", no_question)
    again = open_window(dataset["csv"], restore_policy="ask")
    assert not again.isWindowModified()
    assert not again.doc.journal.path.exists()


def test_kill_9_mid_session_loses_nothing(open_window, dataset, qtbot, tmp_path):
    """A real studio process edits, then dies by SIGKILL; the next start restores every edit."""
    import json
    import subprocess
    import sys
    import textwrap

    expected = tmp_path / "expected.json"
    script = textwrap.dedent(f"""
        import json, os, signal
        import numpy as np
        from PySide6.QtCore import QEventLoop, QTimer
        from fkp_studio.app import init_application
        from fkp_studio.main_window import MainWindow
        app = init_application()
        w = MainWindow()
        w.show()
        loop = QEventLoop()
        w.datasetOpened.connect(loop.quit)
        w.open_dataset({str(dataset["csv"])!r})
        QTimer.singleShot(30000, loop.quit)
        loop.exec()
        w.state.set_current_row(2)
        w.editing.next_keypoint()
        w.editing.nudge(7, -3)
        w.editing.cycle_visibility()
        w.editing.swap_left_right()
        w.undo_stack.undo()
        w.state.set_current_row(3)
        w.editing.next_keypoint()
        w.editing.remove_point()
        state = {{str(r): [w.doc.ann.coords[r].tolist(), w.doc.ann.visibility[r].tolist()] for r in (2, 3)}}
        open({str(expected)!r}, "w").write(json.dumps(state))
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, timeout=120)
    assert proc.returncode == -9
    state = json.loads(expected.read_text())
    on_disk = load_annotations(dataset["csv"])
    assert all(on_disk.visibility[int(r)].tolist() != vis for r, (_c, vis) in state.items()), "edits not saved"
    window = open_window(dataset["csv"], restore_policy="restore")
    for r, (coords, vis) in state.items():
        np.testing.assert_array_equal(window.doc.ann.coords[int(r)], np.array(coords, np.float32))
        np.testing.assert_array_equal(window.doc.ann.visibility[int(r)], vis)
    assert window.isWindowModified()
