"""The studio's controllers driven without a window: a `StudioState`, the controller under test, a
real document opened from real files (off the main thread, as the studio opens them), and the
user's answers given by an object that stands in for the dialogs (`UserQuestions`)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from engine.io.annotations import load_annotations, save_annotations
from fkp_studio.controllers.editing import EditingController
from fkp_studio.controllers.opening import OpeningController
from fkp_studio.controllers.predict import PredictController
from fkp_studio.controllers.saving import SavingController
from fkp_studio.models.state import StudioState

pytestmark = pytest.mark.float_paths  # predictions of a trained model: make test-kernels


class Answers:
    """The user's answers, given in advance; every question asked is recorded."""

    def __init__(self, **answers: str):
        self.answers = {"restore": "discard", "unsaved": "discard", "changed_on_disk": "cancel", **answers}
        self.asked: list[str] = []
        self.told: list[str] = []

    def __getattr__(self, question: str):
        if question not in self.answers:
            raise AttributeError(question)

        def answer(*_args) -> str:
            self.asked.append(question)
            return self.answers[question]

        return answer

    def inform(self, title: str, text: str) -> None:
        self.told.append(f"{title}: {text}")


@pytest.fixture
def studio(qtbot):
    """A function that opens a CSV on a fresh state -> (state, saving controller, questions); no
    error may reach the user meanwhile."""
    states, errors = [], []

    def _open(csv, **answers):
        state = StudioState()
        states.append(state)
        state.error.connect(lambda title, text: errors.append(f"{title}: {text}"))
        questions = Answers(**answers)
        saving = SavingController(state, questions)
        OpeningController(state, questions, saving)
        with qtbot.waitSignal(state.datasetOpened, timeout=10000):
            state.session.open(csv)
        return state, saving, questions

    yield _open
    for state in states:
        state.model_thread.shutdown(timeout=5)
        state.io_thread.shutdown(timeout=5)
        if state.doc is not None:
            state.doc.close()
    assert errors == []


def test_editing_changes_the_document_through_undo_steps(studio, dataset, qtbot):
    state, _, _ = studio(dataset["csv"])
    editing = EditingController(state)
    doc = state.doc
    selections, messages = [], []
    state.selectionChanged.connect(selections.append)
    state.message.connect(lambda text, _ms: messages.append(text))

    editing.nudge(5, 0)  # no image shown yet: nothing to edit
    assert state.undo_stack.count() == 0

    state.set_current_row(2)
    editing.next_keypoint()
    k = state.selected_k
    assert selections == [k] and k is not None and "selected" in messages[-1]
    before = doc.ann.coords[2, k].copy()
    editing.nudge(5, 0)
    editing.nudge(5, 0)  # merged into one undo step
    assert state.undo_stack.count() == 1
    np.testing.assert_allclose(doc.ann.coords[2, k], before + (10, 0))
    assert doc.edited[2] and doc.journal.path.is_file() and state.has_unsaved_edits()

    editing.remove_point()
    assert doc.ann.visibility[2, k] == -1
    state.undo_stack.undo()
    state.undo_stack.undo()
    np.testing.assert_array_equal(doc.ann.coords[2, k], before)
    assert not doc.edited[2]

    editing.cancel_mode()
    assert state.selected_k is None and selections[-1] is None


def test_a_drag_on_a_read_only_file_is_drawn_back_not_applied(studio, dataset, qtbot):
    state, _, _ = studio(dataset["csv"])
    editing = EditingController(state)
    state.set_current_row(1)
    state.doc.read_only = "read-only: another session edits it"
    redraws = []
    state.redraw.connect(lambda: redraws.append(True))
    before = state.doc.ann.coords.copy()
    editing.move(int(np.flatnonzero(state.doc.ann.visibility[1] >= 0)[0]), 3.0, 4.0)
    assert redraws == [True] and state.undo_stack.count() == 0
    np.testing.assert_array_equal(state.doc.ann.coords, before)


def test_saving_writes_the_file_and_merges_a_file_changed_on_disk(studio, dataset, qtbot):
    csv = dataset["csv"]
    state, saving, questions = studio(csv, changed_on_disk="merge")
    editing = EditingController(state)
    state.set_current_row(0)
    editing.next_keypoint()
    k = state.selected_k
    editing.nudge(3, 0)
    expected = state.doc.ann.coords[0, k].copy()
    assert saving.save() and not state.has_unsaved_edits()
    np.testing.assert_allclose(load_annotations(csv).coords[0, k], expected)
    assert questions.asked == []

    # Another program changes another image; this session edits image 0 again, then saves: merge.
    theirs = load_annotations(csv)
    other = int(np.flatnonzero(theirs.visibility[3] >= 0)[0])
    theirs.coords[3, other] += (9, 0)
    save_annotations(theirs, csv)
    editing.nudge(4, 0)
    mine = state.doc.ann.coords[0, k].copy()
    with qtbot.waitSignal(state.datasetOpened, timeout=10000):  # reopened after the merge
        assert saving.save()
    assert questions.asked == ["changed_on_disk"] and questions.told[0].startswith("Merged: Saved train.csv")
    merged = load_annotations(csv)
    np.testing.assert_allclose(merged.coords[0, k], mine)
    np.testing.assert_allclose(merged.coords[3, other], theirs.coords[3, other])


def test_unsaved_edits_are_kept_on_cancel_and_set_aside_on_discard(studio, dataset, qtbot):
    state, saving, questions = studio(dataset["csv"], unsaved="cancel")
    editing = EditingController(state)
    state.set_current_row(1)
    editing.next_keypoint()
    editing.nudge(2, 2)
    journal = state.doc.journal.path
    assert not saving.maybe_save() and state.has_unsaved_edits() and journal.is_file()
    questions.answers["unsaved"] = "discard"
    assert saving.maybe_save() and not state.has_unsaved_edits()
    assert list(journal.parent.glob(f"{journal.stem}.discarded-*.jsonl")), "set aside, never deleted"
    assert questions.asked == ["unsaved", "unsaved"]


def test_predict_fills_the_document_batch_by_batch(studio, qtbot, loop_model, tmp_path):
    data, model = loop_model
    root = tmp_path / "data"
    shutil.copytree(data, root, ignore=shutil.ignore_patterns(".fkp"))
    state, _, _ = studio(root / "Annotations" / "train.csv")
    predict = PredictController(state)
    doc = state.doc
    batches = []

    def on_batch(rows) -> None:
        batches.append((np.isfinite(doc.ne[rows]).all() and doc.predictions.present[rows].all(), len(rows)))

    predict.batchShown.connect(on_batch)
    filled = []
    doc.predictionsFilled.connect(lambda rows: filled.append(len(rows)))
    with qtbot.waitSignal(predict.predictionsDone, timeout=300000) as done:
        predict.use_model_package(model)
    assert done.args == ["v001"] and predict.version == "v001"
    assert len(batches) >= 2 and all(ok for ok, _ in batches), "each batch lands in the document with its NE"
    assert filled == [n for _, n in batches] and sum(filled) == len(doc)
    assert doc.predictions.present.all() and np.isfinite(doc.ne).all()
    assert doc.workspace.predictions_path("v001", doc.csv_path).is_file()
    assert state.undo_stack.count() == 0, "every image had a category: nothing taken from the detector"
