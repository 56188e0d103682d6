"""One editing session per annotation file: a second window (or process) opens it read-only and
says who holds it; a killed owner's lock is taken over with a message."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.io.journal import read_journal
from engine.io.lock import LockedError, acquire_lock
from engine.io.workspace import Workspace

REPO = Path(__file__).resolve().parents[2]


def _show(window, qtbot, data_row: int) -> None:
    window.list_panel.list_view.selectRow(window.list_model.view_row(data_row))
    qtbot.waitUntil(lambda: window.current_row == data_row, timeout=3000)


@pytest.fixture
def other_process(dataset):
    """Another process holding the editing lock of the data set's CSV, with one edit in its
    journal (unsaved: it is live), until killed."""
    ws = Workspace(dataset["root"])
    csv, lock_path, journal = str(dataset["csv"]), str(ws.lock_path(dataset["csv"])), str(ws.journal_path(dataset["csv"]))
    script = ("import time\n"
              "from engine.io.journal import Edit, Journal, make_base\n"
              "from engine.io.lock import acquire_lock\n"
              f"acquire_lock({lock_path!r})\n"
              f"Journal({journal!r}, make_base({csv!r})).append(Edit('Images/blouse/img0.jpg', [0], [[1, 1]], [1]))\n"
              "print('locked', flush=True)\n"
              "time.sleep(60)\n")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    yield proc
    proc.kill()
    proc.wait()


def test_a_file_another_process_edits_opens_read_only(open_window, dataset, qtbot, other_process):
    window = open_window(dataset["csv"], restore_policy="restore")
    doc = window.doc
    assert doc.read_only and f"process {other_process.pid} on" in doc.read_only
    assert "(read-only)" in window.windowTitle()
    _show(window, qtbot, 0)
    before = doc.ann.coords.copy()
    window.editing.next_keypoint()
    window.editing.nudge(5, 0)
    window.action_by_id["edit.swap_left_right"].trigger()
    np.testing.assert_array_equal(doc.ann.coords, before)
    # The live session's journal is not "unsaved edits from an earlier session": not restored, kept.
    assert not window.isWindowModified() and len(read_journal(doc.journal.path).edits) == 1


def test_a_killed_owners_lock_is_taken_over(open_window, dataset, qtbot, other_process):
    other_process.send_signal(signal.SIGKILL)
    other_process.wait()
    window = open_window(dataset["csv"], restore_policy="restore")
    assert not window.doc.read_only
    assert window.doc.lock.took_over.pid == other_process.pid
    # Its journal is now a crashed session's: its edit is restored.
    assert window.doc.ann.coords[0, 0].tolist() == [1, 1] and window.isWindowModified()
    _show(window, qtbot, 0)
    window.editing.next_keypoint()
    window.editing.nudge(5, 0)
    assert window.doc.edited[0]


def test_two_windows_in_one_process_and_the_lock_is_released_on_close(open_window, dataset, qtbot):
    first = open_window(dataset["csv"])
    second = open_window(dataset["csv"])
    assert not first.doc.read_only and second.doc.read_only
    assert f"process {os.getpid()}" in second.doc.read_only
    first.close()
    lock = acquire_lock(Workspace(dataset["root"]).lock_path(dataset["csv"]))
    assert lock.took_over is None  # released cleanly, not abandoned
    with pytest.raises(LockedError, match="open for editing by"):
        acquire_lock(lock.path)
    lock.release()


@pytest.mark.parametrize("planted", ["directory", "fifo", "symlink"])
def test_a_lock_this_session_cannot_open_means_read_only_and_the_journal_untouched(open_window, dataset, qtbot,
                                                                                    tmp_path, planted):
    """Issue 30 item 2: a lock file that cannot be opened for writing (a directory, a FIFO, a planted
    link; another user's file alike) is never edited around: the file opens read-only, saying so,
    and the journal and the review log (of the session that may hold it) are not offered, restored,
    discarded, restarted nor appended to."""
    csv = dataset["csv"]
    ws = Workspace(dataset["root"])
    lock_path, journal = ws.lock_path(csv), ws.journal_path(csv)
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    if planted == "directory":
        lock_path.mkdir()
    elif planted == "fifo":
        os.mkfifo(lock_path)
    else:
        target = tmp_path / "victim.txt"
        target.write_text("precious\n")
        lock_path.symlink_to(target)
    # Another session's (or a crash's) unsaved edit, and a review state.
    from engine.io.journal import Edit, Journal, make_base
    Journal(journal, make_base(csv)).append(Edit("Images/blouse/img0.jpg", [0], [[1, 1]], [1]))
    ws.review_path(csv).write_text('{"Images/blouse/img0.jpg": "skipped"}\n')
    journal_bytes, review_bytes = journal.read_bytes(), ws.review_path(csv).read_bytes()
    window = open_window(csv, restore_policy="restore")
    doc = window.doc
    assert doc.lock is None
    assert doc.read_only and "cannot lock train.csv" in doc.read_only and str(lock_path) in doc.read_only
    assert "\n" not in doc.read_only and "(read-only)" in window.windowTitle()
    assert not window.isWindowModified() and doc.ann.coords[0, 0].tolist() != [1, 1]  # not restored
    _show(window, qtbot, 1)
    before = doc.ann.coords.copy()
    window.editing.next_keypoint()
    window.editing.nudge(5, 0)
    window.review.accept_image()
    np.testing.assert_array_equal(doc.ann.coords, before)
    errors = []
    window.show_error = lambda title, text: errors.append(text)
    assert not window.save() and "cannot lock" in errors[0]
    window.close()
    assert journal.read_bytes() == journal_bytes and ws.review_path(csv).read_bytes() == review_bytes
    if planted == "symlink":
        assert target.read_text() == "precious\n"


def _no_space(*args, **kwargs):
    raise OSError(28, "No space left on device", str(args[0]) if args else None)


@pytest.mark.parametrize("trouble", ["csv_became_a_folder", "full_disk"])
def test_closing_in_trouble_shows_the_error_keeps_the_journal_and_releases_the_lock(open_window, dataset, qtbot,
                                                                                  monkeypatch, trouble):
    """Issue 30 item 17: closing (edits discarded) when the file became a folder, or on a full disk:
    the error is shown (one line naming the file), the edits' journal stays where the next session
    offers it, and the lock is released (closeEvent never raises half-way)."""
    csv = dataset["csv"]
    window = open_window(csv)
    _show(window, qtbot, 0)
    window.editing.next_keypoint()
    window.editing.nudge(5, 0)
    journal = window.doc.journal.path
    journal_bytes = journal.read_bytes()
    if trouble == "csv_became_a_folder":
        csv.unlink()
        csv.mkdir()
    else:
        monkeypatch.setattr("engine.io.journal.os.replace", _no_space)
    errors = []
    window.show_error = lambda title, text: errors.append(text)
    window.questions.unsaved = lambda name: "discard"
    assert window.close()
    monkeypatch.undo()
    assert len(errors) == 1 and "\n" not in errors[0] and str(journal if trouble == "full_disk" else csv) in errors[0]
    assert journal.read_bytes() == journal_bytes  # offered again at the next opening
    lock = acquire_lock(Workspace(dataset["root"]).lock_path(csv))
    assert lock.took_over is None  # released by the window, not left to the process's exit
    lock.release()
