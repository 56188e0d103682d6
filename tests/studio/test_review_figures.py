"""What the studio shows a reviewer (issue 29, items 11 and 12): no NE against the predictions an
annotation was made from, the toolbar that keeps its place, the shortcut sheet on `?`."""

from __future__ import annotations

import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from fkp_studio.models.image_list import COL_NE


def test_an_accepted_image_shows_how_far_review_moved_the_prediction_not_ne(open_window, dataset, qtbot):
    window = open_window(dataset["csv"], dataset["pred"])
    window.list_panel.go_to(2)
    qtbot.waitUntil(lambda: window.current_row == 2, timeout=3000)
    model, canvas = window.list_model, window.canvas
    assert model.data(model.index(model.view_row(2), COL_NE)).replace(".", "").isdigit()  # NE before review
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key_Return)  # accepted in review: its annotation now comes from the model
    assert window.doc.review_state(2) == "reviewed"
    cell = model.index(model.view_row(2), COL_NE)
    assert model.data(cell) == "Δ 6.0 px"  # row 2 is predicted 6 px to the right of its annotation
    assert model.data(cell, Qt.ForegroundRole) is None  # no red
    window.list_panel.worst_first()
    finite = [r for r in range(6) if r != 2 and np.isfinite(window.doc.ne[r])]
    assert model.order.tolist().index(2) >= len(finite), "not sorted among the worst"


def test_toolbar_buttons_keep_their_places_and_question_mark_lists_the_bound_keys(open_window, dataset, qtbot):
    from PySide6.QtWidgets import QToolBar

    window = open_window(dataset["csv"], dataset["pred"])
    qtbot.waitUntil(lambda: window.current_row is not None, timeout=3000)
    toolbar = window.findChild(QToolBar, "main_toolbar")
    undo = window.action_by_id["edit.undo"]
    fit = toolbar.widgetForAction(window.action_by_id["view.fit"])
    x_before = fit.x()
    window.canvas.setFocus()
    qtbot.keyClick(window.canvas, Qt.Key_S)  # an undo step with a long name
    QApplication.processEvents()
    assert "Swap" in undo.toolTip() and toolbar.widgetForAction(undo).text() == "Undo"
    assert fit.x() == x_before
    qtbot.keyClick(window, Qt.Key_Question)
    sheet = window.shortcut_sheet
    qtbot.waitUntil(sheet.isVisible, timeout=2000)
    listed = {sheet.table.item(i, 0).text() for i in range(sheet.table.rowCount())}
    assert any("Ctrl+Z" in keys for keys in listed) and {"1", "5", "C", "?", "0"} <= listed
    sheet.close()


def test_the_error_type_chart_leaves_out_images_annotated_from_the_predictions(open_window, dataset, qtbot):
    window = open_window(dataset["csv"], dataset["pred"])
    chart, doc = window.error_chart, window.doc
    qtbot.waitUntil(lambda: chart.index is not None and chart.counts().sum() > 0, timeout=5000)
    before = chart.counts().sum()
    window.list_panel.go_to(2)
    qtbot.waitUntil(lambda: window.current_row == 2, timeout=3000)
    window.canvas.setFocus()
    qtbot.keyClick(window.canvas, Qt.Key_Return)  # accepted: row 2's points would all count as good
    assert doc.review_state(2) == "reviewed"
    predicted = int(((doc.ann.visibility[2] >= 0) & (doc.predictions.visibility[2] >= 0)).sum())
    assert chart.counts().sum() == before - predicted > 0
