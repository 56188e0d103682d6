"""Issue 29 item 12's leftovers, through the window's keys, clicks and message boxes: Predict all
without a model offers the demo model; the list's sort arrow shows only when the list is sorted;
predictions made on a data set read from a CSV are not edits."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import QPoint, Qt, QTimer
from PySide6.QtWidgets import QApplication, QMessageBox

from engine.io.images import write_jpeg
from fkp_studio.models.image_list import COL_EDITED, COL_NE, COL_VISIBLE

pytestmark = pytest.mark.float_paths  # predictions of a trained model: make test-kernels


def _window(qtbot):
    from fkp_studio.main_window import MainWindow

    window = MainWindow()
    window.questions.restore_policy = "discard"
    window.questions.unsaved = lambda name: "discard"
    qtbot.addWidget(window)
    window.show()
    return window


def _answer_next_box(qtbot, button, seen: list) -> None:
    """Click `button` on the next message box when it shows within 2 s (its text goes into `seen`)."""
    def click(tries: int = 100) -> None:
        box = QApplication.activeModalWidget()
        if isinstance(box, QMessageBox) and box.isVisible():
            seen.append(box.text())
            if box.button(button) is None:  # not the question (an error): closed, the test fails on `seen`
                box.done(0)
            else:
                qtbot.mouseClick(box.button(button), Qt.LeftButton)
        elif tries:
            QTimer.singleShot(20, lambda: click(tries - 1))

    QTimer.singleShot(0, click)


def _predict_all_keys(qtbot, window) -> None:
    window.activateWindow()  # back from a message box
    qtbot.waitUntil(window.isActiveWindow, timeout=2000)
    qtbot.keyClick(window.list_panel.list_view, Qt.Key_R, Qt.ControlModifier)


def test_predict_all_without_a_model_offers_the_demo_model_in_one_question(qtbot, tmp_path):
    """A folder of new photos has no model: Ctrl+R asks once whether to use the demo model; No
    does nothing (no error, no model, no run); Yes makes it the model and predicts every image."""
    from engine.synth import render_sample

    rng = np.random.default_rng(3)
    root = tmp_path / "shoot"
    for image_id, category in {"Images/skirt/s.jpg": "skirt", "Images/trousers/t.jpg": "trousers"}.items():
        (root / image_id).parent.mkdir(parents=True, exist_ok=True)
        write_jpeg(root / image_id, render_sample(rng, category, (160, 160)).image)
    window = _window(qtbot)
    errors = []
    window.show_error = lambda title, text: errors.append((title, text))
    with qtbot.waitSignal(window.datasetOpened, timeout=10000):
        window.open_images(root / "Images")
    doc = window.doc
    assert doc.workspace.active_model_version() is None

    asked: list[str] = []
    _answer_next_box(qtbot, QMessageBox.No, asked)
    _predict_all_keys(qtbot, window)
    assert len(asked) == 1 and "demo model" in asked[0]
    assert errors == [] and window.predict.handle is None and doc.predictions is None
    assert doc.workspace.active_model_version() is None

    _answer_next_box(qtbot, QMessageBox.Yes, asked)
    with qtbot.waitSignal(window.predict.predictionsDone, timeout=20000):
        _predict_all_keys(qtbot, window)
    assert len(asked) == 2 and errors == []
    assert doc.workspace.active_model_version() is not None
    assert doc.predictions is not None and doc.predictions.present.all()


def _header_click(qtbot, header, col: int) -> None:
    qtbot.mouseClick(header.viewport(), Qt.LeftButton, pos=QPoint(header.sectionViewportPosition(col) + 5, 5))


def test_the_sort_arrow_shows_only_on_a_sorted_list(open_window, dataset, qtbot):
    """Unsorted (file order): no arrow. A click on a column sorts by it and shows its arrow;
    "Worst NE first" shows the NE arrow; a data set opened after it (unsorted) has none."""
    window = open_window(dataset["csv"])
    panel = window.list_panel
    header = panel.list_view.horizontalHeader()
    assert window.list_model.sort_column == -1 and not header.isSortIndicatorShown()

    _header_click(qtbot, header, COL_VISIBLE)
    assert window.list_model.sort_column == COL_VISIBLE
    assert header.isSortIndicatorShown() and header.sortIndicatorSection() == COL_VISIBLE

    qtbot.mouseClick(panel.worst_button, Qt.LeftButton)
    assert window.list_model.sort_column == COL_NE
    assert header.isSortIndicatorShown() and header.sortIndicatorSection() == COL_NE
    assert header.sortIndicatorOrder() == Qt.DescendingOrder

    with qtbot.waitSignal(window.datasetOpened, timeout=10000):
        window.open_dataset(dataset["csv"])
    assert window.list_model.sort_column == -1 and not header.isSortIndicatorShown()
    assert window.list_model.order.tolist() == list(range(len(window.doc)))


@pytest.mark.parametrize("split", ["train", "test"])
def test_predict_all_on_a_csv_data_set_marks_no_row_edited(open_window, dataset, split_csv, qtbot, split):
    """Predictions are not edits: after Predict all (the demo model, offered by Ctrl+R) no row of a
    data set read from a CSV (an annotated one, a test split of ids and categories) says "edited",
    and the window has nothing to save."""
    window = open_window(split_csv if split == "test" else dataset["csv"])
    doc = window.doc
    asked: list[str] = []
    _answer_next_box(qtbot, QMessageBox.Yes, asked)
    with qtbot.waitSignal(window.predict.predictionsDone, timeout=20000):
        _predict_all_keys(qtbot, window)
    assert len(asked) == 1 and doc.predictions.present.any()
    model = window.list_model
    assert [model.data(model.index(i, COL_EDITED)) for i in range(model.rowCount())] == [""] * len(doc)
    assert not doc.edited.any() and window.undo_stack.isClean() and not window.isWindowModified()


def test_predict_all_on_new_photos_says_category_set_until_the_points_are_edited(qtbot, tmp_path):
    """Photos without a category take the detector's class when Predict all ends: the Edited
    column says "category set" (a change to save, not the hand's), and "✎ edited" once the
    reviewer accepts the image's points with Enter."""
    from engine.synth import render_sample

    rng = np.random.default_rng(4)
    root = tmp_path / "shoot"
    for i, category in enumerate(("skirt", "trousers", "blouse")):
        (root / "Images" / "new").mkdir(parents=True, exist_ok=True)
        write_jpeg(root / "Images" / "new" / f"p{i}.jpg", render_sample(rng, category, (160, 160)).image)
    window = _window(qtbot)
    with qtbot.waitSignal(window.datasetOpened, timeout=10000):
        window.open_images(root / "Images")
    doc, model = window.doc, window.list_model
    assert doc.uncategorized.all()
    _answer_next_box(qtbot, QMessageBox.Yes, [])
    with qtbot.waitSignal(window.predict.predictionsDone, timeout=20000):
        _predict_all_keys(qtbot, window)
    assert not doc.uncategorized.any() and doc.edited.all()

    def edited_column() -> dict[int, str]:
        return {int(model.order[i]): model.data(model.index(i, COL_EDITED)) for i in range(model.rowCount())}

    assert set(edited_column().values()) == {"category set"}
    row = window.current_row
    window.activateWindow()  # back from the message box
    qtbot.waitUntil(window.isActiveWindow, timeout=2000)
    window.canvas.setFocus()
    qtbot.keyClick(window.canvas, Qt.Key_Return)
    qtbot.waitUntil(lambda: doc.review_state(row) == "reviewed", timeout=5000)
    column = edited_column()
    assert column[row] == "✎ edited" and doc.points_edited[row]
    assert all(text == "category set" for r, text in column.items() if r != row)
