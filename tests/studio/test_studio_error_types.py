"""Error types in the studio: the list filter by error type and "check annotation", the
keypoint table's type column, the error-type chart, the swap actions fixing inversions."""

from __future__ import annotations

import numpy as np
import pytest

from engine.io.annotations import load_annotations, save_annotations
from engine.analysis.error_types import GOOD, INVERSION, UNTYPED
from engine.schema import CATEGORY_MASK, FLIP_PERMUTATION, KEYPOINT_INDEX, category_code
from fkp_studio.views.keypoint_table import COL_TYPE

K = KEYPOINT_INDEX


@pytest.fixture
def error_dataset(dataset):
    """The 6-image data set with predictions made to hold one error of each kind:
    row 0 (blouse) predicted mirrored (an inversion on every pair), row 1 (trousers) with its
    crotch far off (a miss), row 2 (skirt) annotated with its hemline pair on the wrong side,
    row 5 (blouse) with one inverted cuff pair; every other prediction exact."""
    ann = load_annotations(dataset["csv"])
    s = (K["hemline_left"], K["hemline_right"])
    ann.coords[2, list(s)] = ann.coords[2, list(s[::-1])]
    save_annotations(ann, dataset["csv"])
    pred = ann.copy()
    pred.visibility[pred.visibility == 0] = 1
    pred.coords[0] = ann.coords[0, FLIP_PERMUTATION]
    pred.coords[1, K["crotch"]] += (0, 150)
    cuffs = [K["cuff_left_out"], K["cuff_right_out"]]
    pred.coords[5, cuffs] = ann.coords[5, cuffs[::-1]]
    save_annotations(pred, dataset["pred"])
    return dataset


def _rows(window) -> list[int]:
    return sorted(window.list_model.order.tolist())


def test_filter_images_by_error_type(open_window, error_dataset, qtbot):
    window = open_window(error_dataset["csv"], error_dataset["pred"])
    window.list_panel.filter_error_type("inversion")
    assert _rows(window) == [0, 5]
    assert window.list_panel.count_label.text() == "2 of 6 images"
    box = window.list_panel.error_box
    box.setCurrentIndex(box.findData("miss"))  # the same through the combo box
    assert _rows(window) == [1]
    assert window.list_model.filter.error_type == "miss"
    box.setCurrentIndex(box.findData("jitter"))
    assert _rows(window) == []
    assert window.list_panel.count_label.text() == "0 of 6 images"
    # Combined with the category filter.
    window.list_panel.filter_error_type("inversion")
    window.list_panel.category_box.setCurrentIndex(category_code("blouse") + 1)
    assert _rows(window) == [0, 5]
    window.list_panel.category_box.setCurrentIndex(category_code("dress") + 1)
    assert _rows(window) == []
    window.list_panel.clear_filter()
    assert _rows(window) == list(range(6)) and window.list_panel.error_box.currentData() is None


def test_check_annotation_filter_and_panel(open_window, error_dataset, qtbot):
    window = open_window(error_dataset["csv"], error_dataset["pred"])
    window.list_panel.filter_error_type("check_annotation")
    # The wrong-side skirt, and the trousers whose only bad point is a miss among good ones.
    assert _rows(window) == [1, 2]
    panel = window.check_panel
    kinds = {(s.row, s.keypoint, s.kind) for s in panel.shown}
    assert kinds == {(1, "crotch", "confident_far"), (2, "hemline_left", "wrong_side")}
    assert panel.rowCount() == 2 and window.check_dock.windowTitle() == "Check annotation (2)"
    window.list_panel.clear_filter()
    window.list_panel.filter_error_type("inversion")  # hides row 2
    i = next(i for i, s in enumerate(panel.shown) if s.row == 2)
    panel.cellClicked.emit(i, 0)
    assert window.current_row == 2 and window.editing.selected_k == K["hemline_left"]
    assert window.list_model.filter.error_type is None, "the filter that hid the image was cleared"
    # Fixing the annotation takes the image off the list.
    window.editing.swap_twin()
    assert 2 not in window.doc.error_index.suspects
    assert window.check_dock.windowTitle() == "Check annotation (1)"
    qtbot.waitUntil(lambda: panel.rowCount() == 1, timeout=3000)  # edits refresh the panel lazily
    assert panel.shown[0].row == 1


def test_keypoint_table_shows_each_points_type(open_window, error_dataset, qtbot):
    window = open_window(error_dataset["csv"], error_dataset["pred"])
    window.editing.go_to_point(0, K["neckline_left"])
    table = window.keypoint_table
    assert table.horizontalHeaderItem(COL_TYPE).text() == "Error type"
    types = {table.keypoints[i]: table.item(i, COL_TYPE).text() for i in range(table.rowCount())}
    assert types[K["neckline_left"]] == types[K["cuff_right_out"]] == "inversion"
    assert types[K["center_front"]] == ""  # occluded in the annotation: not scored, no type
    assert types[K["shoulder_left"]] == "inversion"
    window.editing.go_to_point(1, K["crotch"])
    types = {table.keypoints[i]: table.item(i, COL_TYPE).text() for i in range(table.rowCount())}
    assert types[K["crotch"]] == "miss" and types[K["waistband_left"]] == "good"


def test_swap_left_right_fixes_a_mirrored_annotation_in_one_step(open_window, error_dataset, qtbot):
    window = open_window(error_dataset["csv"], error_dataset["pred"])
    index = window.doc.error_index
    ks = np.flatnonzero(CATEGORY_MASK[category_code("blouse")])
    paired = ks[FLIP_PERMUTATION[ks] != ks]
    assert (index.types[0, paired] == INVERSION).all()
    window.editing.go_to_point(0, K["neckline_left"])
    window.editing.swap_left_right()
    assert window.undo_stack.count() == 1
    scored = ks[window.doc.ann.visibility[0, ks] == 1]
    assert len(scored) == len(ks) - 1 and (index.types[0, scored] == GOOD).all()
    assert not index.rows_with("inversion")[0]
    assert window.keypoint_table.item(0, COL_TYPE).text() == "good"
    window.undo_stack.undo()
    assert (index.types[0, paired] == INVERSION).all()


def test_swap_with_twin_fixes_one_inverted_pair(open_window, error_dataset, qtbot):
    window = open_window(error_dataset["csv"], error_dataset["pred"])
    index = window.doc.error_index
    cuffs = [K["cuff_left_out"], K["cuff_right_out"]]
    assert (index.types[5, cuffs] == INVERSION).all()
    window.editing.go_to_point(5, K["cuff_right_out"])
    window.editing.swap_twin()
    assert window.undo_stack.count() == 1
    ks = np.flatnonzero(CATEGORY_MASK[category_code("blouse")])
    assert (index.types[5, ks] == GOOD).all(), "the other pairs stay as they were"
    window.editing.go_to_point(5, K["center_front"])
    window.editing.swap_twin()  # no twin: nothing happens
    assert window.undo_stack.count() == 1


def test_error_type_chart_counts_and_click_filters(open_window, error_dataset, qtbot):
    window = open_window(error_dataset["csv"], error_dataset["pred"])
    counts = window.error_chart.counts()
    assert counts[K["crotch"], 3] == 1                    # one miss
    assert counts[K["cuff_left_out"], 2] == 2             # rows 0 and 5
    assert counts[K["center_front"], 2] == 0 and counts.sum() == (window.doc.error_index.types != UNTYPED).sum()
    window.error_chart.segmentClicked.emit("inversion", K["cuff_left_out"])
    assert _rows(window) == [0, 5] and window.list_panel.error_box.currentData() == "inversion"
    window.error_chart.segmentClicked.emit("inversion", K["neckline_left"])
    assert _rows(window) == [0]


def test_without_predictions_nothing_is_typed(open_window, error_dataset, qtbot):
    window = open_window(error_dataset["csv"])
    assert (window.doc.error_index.types == UNTYPED).all()
    window.list_panel.filter_error_type("inversion")
    assert _rows(window) == []
    window.list_panel.filter_error_type("check_annotation")
    assert _rows(window) == [2], "the wrong-side annotation needs no predictions"
