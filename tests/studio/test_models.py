"""The studio's models without a window: the document, the undo commands, the list model and the
error index, driven through their public interfaces (the window tests check the wiring)."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QUndoStack

from engine.io.annotations import load_annotations
from engine.io.journal import read_journal
from engine.io.workspace import Workspace
from engine.schema import FLIP_PERMUTATION, KEYPOINT_INDEX, category_keypoints
from fkp_studio.models import commands
from fkp_studio.models.document import AnnotationDocument, align_to_annotations
from fkp_studio.models.image_list import COL_NE, ImageListModel, ListFilter

pytestmark = pytest.mark.float_paths  # its figures depend on the CPU's kernels: make test-kernels

K = KEYPOINT_INDEX


@pytest.fixture
def doc(dataset, tmp_path):
    """The 6-image data set as a document, with its predictions (row i off by 3 i px in x)."""
    ann = load_annotations(dataset["csv"])
    d = AnnotationDocument(ann, dataset["csv"], Workspace(dataset["root"], state_dir=tmp_path / "state"))
    d.set_predictions(align_to_annotations(ann, load_annotations(dataset["pred"]), str(dataset["pred"])))
    yield d
    d.close()


def test_an_edit_changes_the_row_its_ne_and_the_journal_before_anyone_is_told(doc):
    k = K["neckline_left"]
    seen = []
    # Whoever listens to rowsChanged reads values already current, the error index's included.
    doc.rowsChanged.connect(lambda rows: seen.append((rows.tolist(), doc.ne[0], doc.error_index.type_of(0, k))))
    ne_before = doc.ne[0]
    assert ne_before == 0 and doc.error_index.type_of(0, k) == "good"
    x, y = doc.ann.coords[0, k]
    doc.apply(doc.edit_of(0, [k], [[x + 60, y]], [1]))
    assert doc.ann.coords[0, k].tolist() == [x + 60, y] and doc.edited[0] and not doc.edited[1:].any()
    assert seen == [([0], doc.ne[0], "miss")] and doc.ne[0] > ne_before
    (edit,) = read_journal(doc.journal.path).edits  # durable before apply returned
    assert edit.image_id == doc.ann.image_ids[0] and edit.keypoints.tolist() == [k]


def test_undo_and_redo_apply_the_kept_edits_and_nudges_merge(doc):
    stack = QUndoStack()
    k = K["shoulder_right"]
    start = doc.ann.coords[0, k].copy()
    stack.push(commands.move_point(doc, 0, k, 100.4, 50.6))
    assert doc.ann.coords[0, k].tolist() == [100, 51]  # whole pixels, as the CSV stores them
    for _ in range(3):
        stack.push(commands.nudge_point(doc, 0, k, 1, 0))
    assert stack.count() == 2 and doc.ann.coords[0, k].tolist() == [103, 51]
    stack.undo()
    assert doc.ann.coords[0, k].tolist() == [100, 51]
    stack.undo()
    np.testing.assert_array_equal(doc.ann.coords[0, k], start)
    assert not doc.edited[0]
    stack.redo()
    assert doc.ann.coords[0, k].tolist() == [100, 51]
    # Every step, undo and redo included, is in the journal: a replay reproduces what is shown.
    assert len(read_journal(doc.journal.path).edits) == 7


def test_visibility_removal_and_the_swaps(doc):
    stack = QUndoStack()
    k = K["armpit_left"]
    stack.push(commands.cycle_visibility(doc, 0, k))
    assert doc.ann.visibility[0, k] == 0
    stack.push(commands.remove_point(doc, 0, k))
    assert doc.ann.visibility[0, k] == -1 and (doc.ann.coords[0, k] == -1).all()
    assert commands.remove_point(doc, 0, k) is None and commands.cycle_visibility(doc, 0, k) is None
    stack.undo(), stack.undo()
    before = doc.ann.coords[0].copy()
    stack.push(commands.swap_twin(doc, 0, K["cuff_left_in"]))
    ks = [K["cuff_left_in"], K["cuff_right_in"]]
    np.testing.assert_array_equal(doc.ann.coords[0, ks], before[ks[::-1]])
    assert commands.swap_twin(doc, 1, K["crotch"]) is None  # no twin
    stack.undo()
    stack.push(commands.swap_left_right(doc, 0))
    garment = np.array(category_keypoints(int(doc.categories[0])))
    np.testing.assert_array_equal(doc.ann.coords[0, garment], before[FLIP_PERMUTATION[garment]])


def test_the_list_model_sorts_filters_and_follows_edits(doc):
    model = ImageListModel(doc)
    model.worst_first()
    # Row i is predicted 3 i px off: worst first is the reverse order.
    assert model.order.tolist() == [5, 4, 3, 2, 1, 0]
    model.sort(COL_NE, Qt.AscendingOrder)
    assert model.order.tolist() == [0, 1, 2, 3, 4, 5]
    model.set_filter(ListFilter(category=0))  # blouses
    assert model.order.tolist() == [0, 5] and model.rowCount() == 2
    assert "img0" in model.data(model.index(0, 0))
    model.set_filter(ListFilter())
    changed = []
    model.dataChanged.connect(lambda top, bottom: changed.append((top.row(), bottom.row())))
    k = K["neckline_left"]
    doc.apply(doc.edit_of(3, [k], doc.ann.coords[3, [k]] + 1, [1]))
    # Values change in place, the order stays put (the row under the cursor does not jump)...
    view = model.view_row(3)
    assert changed == [(view, view)] and model.order.tolist() == [0, 1, 2, 3, 4, 5]
    # ...and the next filter sees the edit.
    model.set_filter(ListFilter(edited_only=True))
    assert model.order.tolist() == [3]


def test_the_error_index_types_points_and_lists_suspects_with_or_without_scores(doc):
    index = doc.error_index
    assert not index.rows_with("inversion").any()
    # Mirror row 0's annotation: every pair inverted against the (right) prediction.
    stack = QUndoStack()
    stack.push(commands.swap_left_right(doc, 0))
    assert index.rows_with("inversion").tolist() == [True] + [False] * 5
    assert index.rows_with("inversion", K["shoulder_left"])[0]
    wrong_side = {s.keypoint for s in index.all_suspects() if s.row == 0 and s.kind == "wrong_side"}
    assert "shoulder_left" in wrong_side and index.rows_with("check_annotation")[0]
    stack.undo()
    assert index.suspect_count() == 0
    # A confident prediction far from its annotation is a suspect; an unsure one is not.
    k = K["hemline_left"]
    doc.predictions.scores[2] = 0.9
    doc.apply(doc.edit_of(2, [k], doc.ann.coords[2, [k]] + [0, 80], [1]))
    assert [(s.row, s.keypoint, s.kind) for s in index.all_suspects()] == [(2, "hemline_left", "confident_far")]
    doc.predictions.scores[2] = 0.1
    doc.set_predictions(doc.predictions)
    assert index.suspect_count() == 0


def test_the_session_opens_off_the_main_thread_and_offers_only_edits_that_change_something(dataset, qtbot):
    from fkp_studio.models.engine_thread import EngineThread
    from fkp_studio.models.session import DatasetSession, last_dataset

    thread = EngineThread("io")
    session = DatasetSession(thread)
    try:
        with qtbot.waitSignal(session.opened, timeout=10000) as opened, \
                qtbot.waitSignal(session.predictionsLoaded, timeout=10000):
            session.open(dataset["csv"], dataset["pred"])
        doc = opened.args[0]
        assert session.doc is doc and len(doc) == 6 and doc.predictions.present.all()
        assert last_dataset() == (str(dataset["csv"].resolve()), str(dataset["pred"].resolve()))
        k = K["waistband_left"]  # image 2 is a skirt (a point it has no place for is cleared: issue 30 item 11)
        x, y = doc.ann.coords[2, k]
        before = doc.current(2, [k])
        doc.apply(doc.edit_of(2, [k], [[x + 9, y]], [1]))
        with qtbot.waitSignal(session.opened, timeout=10000) as reopened:
            session.open(dataset["csv"])  # the edit was never saved: it is offered
        offer = session.restore_offer()
        assert reopened.args[0] is session.doc is not doc
        assert offer.rows.tolist() == [2] and offer.coords[0, k].tolist() == [x + 9, y]
        assert "1 edited points on 1 images" in offer.question("train.csv") and not offer.base_changed
        session.doc.apply(before)
        with qtbot.waitSignal(session.opened, timeout=10000):
            session.open(dataset["csv"])  # an edit and its reversal change nothing: nothing is offered
        assert session.restore_offer() is None
    finally:
        session.close()
        thread.shutdown(timeout=2)
