"""Review marks that mean what they say (issue 29): an image with no annotated point is not
"reviewed" without a confirmation, review keys never act from a text field, and review marks
share the edits' history (discarding the edits discards the marks they came with)."""

from __future__ import annotations

import numpy as np
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
