"""Review marks that mean what they say (issue 29): an image with no annotated point is not
"reviewed" without a confirmation, review keys never act from a text field, and review marks
share the edits' history (discarding the edits discards the marks they came with)."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from engine.io.annotations import load_annotations


def _test_split(dataset):
    """The 6-image data set as a test split (ids and categories only): nothing annotated yet."""
    csv = dataset["csv"].with_name("test.csv")
    csv.write_text("".join(",".join(line.split(",")[:2]) + "\n" for line in dataset["csv"].read_text().splitlines()))
    return csv


def test_enter_typed_in_the_search_box_edits_the_text_not_the_review(open_window, dataset, qtbot):
    window = open_window(_test_split(dataset), dataset["pred"])
    qtbot.waitUntil(lambda: window.current_row == 0, timeout=3000)
    doc, search = window.doc, window.list_panel.search
    window.canvas.setFocus()
    qtbot.keyClick(window.canvas, Qt.Key_Return)  # from the canvas: accepted, reviewed, next image
    assert doc.review[0] == 1 and (doc.ann.visibility[0] >= 0).any()
    shown = window.current_row
    search.setFocus()
    qtbot.keyClicks(search, "img")
    qtbot.keyClick(search, Qt.Key_Return)
    assert (doc.review == 1).sum() == 1 and window.current_row == shown
    assert (doc.ann.visibility[shown] < 0).all()
    qtbot.keyClick(search, Qt.Key_Z, Qt.ControlModifier)  # undoes the typing, not the accept
    assert search.text() != "img" and doc.review[0] == 1 and (doc.ann.visibility[0] >= 0).any()
    qtbot.keyClick(search, Qt.Key_K)  # a review key typed is text
    assert (doc.review == 2).sum() == 0
    # From the list, Enter still accepts.
    view = window.list_panel.list_view
    view.setFocus()
    qtbot.keyClick(view, Qt.Key_Return)
    assert (doc.review == 1).sum() == 2


def test_enter_on_an_image_with_no_annotated_point_asks_before_marking_it_reviewed(open_window, dataset, qtbot,
                                                                                monkeypatch):
    window = open_window(_test_split(dataset))  # no predictions: Enter accepts nothing
    qtbot.waitUntil(lambda: window.current_row == 0, timeout=3000)
    doc = window.doc
    asked = []
    monkeypatch.setattr(window.questions, "confirm", lambda title, text: asked.append(text) and False)
    window.canvas.setFocus()
    qtbot.keyClick(window.canvas, Qt.Key_Return)
    assert doc.review[0] == 0 and window.current_row == 0 and len(asked) == 1
    assert "no annotated point" in asked[0]
    assert window.undo_stack.count() == 0
    monkeypatch.setattr(window.questions, "confirm", lambda title, text: asked.append(text) or True)
    qtbot.keyClick(window.canvas, Qt.Key_Return)  # confirmed: reviewed as an image without points
    assert doc.review[0] == 1 and len(asked) == 2 and window.current_row != 0


def _window(qtbot, asked: list[str], answer: str):
    """A window whose restore question is recorded and answered `answer`."""
    from fkp_studio.main_window import MainWindow

    window = MainWindow()
    window.questions.restore = lambda question: asked.append(question) or answer
    window.questions.unsaved = lambda name: "discard"
    qtbot.addWidget(window)
    window.show()
    return window


def _open(qtbot, window, csv, predictions=None) -> None:
    signals = [window.datasetOpened] + ([window.predictionsReady] if predictions else [])
    with qtbot.waitSignals(signals, timeout=10000):
        window.open_dataset(csv, predictions)


def test_discarding_edits_after_a_crash_discards_their_review_marks(dataset, qtbot, crash, monkeypatch):
    csv = _test_split(dataset)
    first = _window(qtbot, [], "discard")
    _open(qtbot, first, csv, dataset["pred"])
    qtbot.waitUntil(lambda: first.current_row == 0, timeout=3000)
    first.canvas.setFocus()
    for key in (Qt.Key_Return, Qt.Key_Return, Qt.Key_K):
        qtbot.keyClick(first.canvas, key)
    assert first.doc.review.tolist().count(1) == 2 and first.doc.review.tolist().count(2) == 1
    crash(first)
    asked = []
    again = _window(qtbot, asked, "discard")
    _open(qtbot, again, csv)
    assert len(asked) == 1 and "review marks on 3 images (2 marked reviewed, 1 marked skipped)" in asked[0]
    assert "edited points on 2 images" in asked[0]
    assert (again.doc.review == 0).all() and (again.doc.ann.visibility < 0).all()
    messages = []
    again.state.message.connect(lambda text, _ms: messages.append(text))
    monkeypatch.setattr(again.questions, "training_file", lambda start: pytest.fail("nothing is reviewed"))
    again.action_by_id["review.add_to_training_file"].trigger()
    assert messages and messages[-1].startswith("No image is reviewed yet")
    again.close()
    third = _window(qtbot, asked, "restore")
    _open(qtbot, third, csv)
    assert len(asked) == 1 and (third.doc.review == 0).all()  # nothing left to offer


def test_marks_come_back_with_their_edits_after_kill_9_and_go_with_them_on_quit_discard(dataset, qtbot, tmp_path):
    """A real studio process accepts two images and refuses to mark one without points, then dies
    by SIGKILL; the restore question names edits and marks, Restore brings both back, and
    quitting with Discard then drops both."""
    import json
    import os
    import subprocess
    import sys
    import textwrap

    from engine.io.annotations import save_annotations

    csv = _test_split(dataset)
    pred = load_annotations(dataset["pred"])
    few = dataset["root"] / "few.csv"  # rows 4 and 5 have no prediction: nothing to accept there
    save_annotations(pred.subset([0, 1, 2, 3]), few)
    expected = tmp_path / "expected.json"
    script = textwrap.dedent(f"""
        import json, os, signal
        from PySide6.QtCore import QEventLoop, QTimer
        from fkp_studio.app import init_application
        from fkp_studio.main_window import MainWindow
        app = init_application()
        w = MainWindow()
        w.questions.confirm = lambda title, text: False  # "mark an image without points reviewed?" No
        w.show()
        loop = QEventLoop()
        w.predictionsReady.connect(loop.quit)
        w.open_dataset({str(csv)!r}, {str(few)!r})
        QTimer.singleShot(30000, loop.quit)
        loop.exec()
        for row in (0, 1, 4):
            w.state.set_current_row(row)
            w.review.accept_image()
        state = {{"review": w.doc.review.tolist(), "vis": w.doc.ann.visibility.tolist()}}
        open({str(expected)!r}, "w").write(json.dumps(state))
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    proc = subprocess.run([sys.executable, "-c", script], env=env, timeout=120)
    assert proc.returncode == -9
    state = json.loads(expected.read_text())
    assert state["review"] == [1, 1, 0, 0, 0, 0], "no point, not confirmed: not reviewed"
    asked = []
    window = _window(qtbot, asked, "restore")
    _open(qtbot, window, csv)
    assert len(asked) == 1 and "review marks on 2 images (2 marked reviewed)" in asked[0]
    assert window.doc.review.tolist() == state["review"]
    np.testing.assert_array_equal(window.doc.ann.visibility, state["vis"])
    window.close()  # quit > Discard
    assert not window.isVisible()
    again = _window(qtbot, asked, "restore")
    _open(qtbot, again, csv)
    assert len(asked) == 1, "nothing left to offer"
    assert (again.doc.review == 0).all() and (again.doc.ann.visibility < 0).all()
