"""The hand on the canvas (issue 29, items 8-10): a prediction accepted by a double click or a drag
while its point is absent, the image on show kept when a prediction run re-sorts the list, and
the first view of an image fitted when its pixels arrive."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import QPoint, Qt

from engine.io.predictions import Predictions
from engine.io.annotations import load_annotations
from engine.schema import category_keypoints


def _shown(window, qtbot, row: int):
    """Go to data row `row` and wait until its pixels are on the canvas."""
    window.list_panel.go_to(row)
    qtbot.waitUntil(lambda: window.current_row == row and window.canvas.image_size() is not None, timeout=5000)
    return window.canvas


def test_a_double_click_on_the_cross_of_an_absent_point_accepts_it(split_csv, open_window, dataset, qtbot):
    window = open_window(split_csv, dataset["pred"])
    canvas, doc = _shown(window, qtbot, 1), window.doc
    pred = load_annotations(dataset["pred"])
    k = category_keypoints(int(doc.categories[1]))[0]
    assert doc.ann.visibility[1, k] == -1  # the normal review case: nothing annotated yet
    px, py = pred.coords[1, k]
    at = canvas.mapFromScene(float(px), float(py))
    # What X delivers for a double click: press, release, then the double click (and its release).
    qtbot.mouseClick(canvas.viewport(), Qt.LeftButton, pos=at)
    assert window.editing.selected_k == k and doc.ann.visibility[1, k] == -1  # the first click selects
    qtbot.mouseDClick(canvas.viewport(), Qt.LeftButton, pos=at)
    assert doc.ann.coords[1, k].tolist() == [px, py] and doc.ann.visibility[1, k] == 1
    assert window.undo_stack.count() == 1
    window.undo_stack.undo()
    assert doc.ann.visibility[1, k] == -1


def test_pressing_on_a_prediction_and_dragging_it_accepts_and_moves_it_in_one_step(split_csv, open_window, dataset,
                                                                                   qtbot):
    window = open_window(split_csv, dataset["pred"])
    canvas, doc = _shown(window, qtbot, 1), window.doc
    pred = load_annotations(dataset["pred"])
    k = category_keypoints(int(doc.categories[1]))[1]
    px, py = pred.coords[1, k]
    start = canvas.mapFromScene(float(px), float(py))
    viewport = canvas.viewport()
    qtbot.mousePress(viewport, Qt.LeftButton, pos=start)
    for step in range(1, 5):
        qtbot.mouseMove(viewport, start + QPoint(10 * step, 6 * step))
    end = start + QPoint(40, 24)
    qtbot.mouseRelease(viewport, Qt.LeftButton, pos=end)
    dropped = canvas.mapToScene(end)
    x, y = doc.ann.coords[1, k]
    assert doc.ann.visibility[1, k] == 1
    assert abs(x - dropped.x()) <= 1 and abs(y - dropped.y()) <= 1 and abs(x - px) >= 10
    assert window.undo_stack.count() == 1 and "Accept" in window.undo_stack.text(0)
    window.undo_stack.undo()
    assert doc.ann.visibility[1, k] == -1


def test_the_end_of_a_prediction_run_re_sorts_the_list_but_keeps_the_image_on_show(open_window, dataset, qtbot):
    window = open_window(dataset["csv"], dataset["pred"])
    canvas = _shown(window, qtbot, 2)
    panel, doc = window.list_panel, window.doc
    canvas.setFocus()
    doc.set_predictions(doc.predictions)  # what a run's end does (`PredictController._finish`)
    assert window.list_model.sort_column == 2 and window.list_model.order[0] != 2, "sorted worst first"
    assert window.current_row == 2
    assert window.list_model.data_row(panel.list_view.currentIndex().row()) == 2
    qtbot.keyClick(canvas, Qt.Key_K)  # a key pressed then acts on the image the user sees
    assert doc.review_state(2) == "skipped" and int((doc.review == 2).sum()) == 1


def test_an_image_decoded_after_it_is_shown_is_fitted_when_its_pixels_arrive(open_window, dataset, qtbot):
    from PySide6.QtCore import QRectF

    # Without predictions the list stays in file order and opens on row 0: rows 1 and 2 are
    # prefetched as its neighbours, row 4 is decoded only when shown. (With predictions it opened
    # on the worst image first, whose neighbours, by timing, could cover every row.)
    window = open_window(dataset["csv"])
    _shown(window, qtbot, 0)
    canvas = window.canvas
    qtbot.wait(300)  # the prefetches asked so far have landed
    row = 4
    assert window.loader.cached(str(window.doc.image_path(row))) is None
    window.list_panel.go_to(row)
    assert window.current_row == row and canvas.image_size() is None  # "loading…" first
    qtbot.waitUntil(lambda: canvas.image_size() is not None, timeout=5000)
    w, h = canvas.image_size()
    on_screen = canvas.mapFromScene(QRectF(0, 0, w, h)).boundingRect()
    viewport = canvas.viewport().rect()
    fill = max(on_screen.width() / viewport.width(), on_screen.height() / viewport.height())
    assert fill > 0.95, f"the image fills {fill:.0%} of the canvas"


def test_the_first_run_on_a_data_set_without_predictions_keeps_the_image_on_show(open_window, dataset, qtbot):
    window = open_window(dataset["csv"])
    _shown(window, qtbot, 3)
    doc, pred = window.doc, load_annotations(dataset["pred"])
    doc.start_predictions("model v001")  # what a run's start does
    batch = Predictions.from_annotations(pred, np.full(pred.visibility.shape, 0.9), "model v001")
    doc.fill_predictions(batch)
    doc.set_predictions(doc.predictions)  # and its end
    assert window.list_model.order[0] != 3 and window.current_row == 3
