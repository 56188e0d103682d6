"""The hard-example loop in the studio: predict -> rank -> hard set -> retrain -> accept (tiny model, tiny data)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PySide6.QtCore import Qt

from engine.io.workspace import Workspace

pytestmark = pytest.mark.float_paths  # its figures depend on the CPU's kernels: make test-kernels


@pytest.fixture
def loop_data(loop_model, tmp_path):
    """A private copy of the tiny data set (its workspace state is written beside it)."""
    data, model = loop_model
    root = tmp_path / "data"
    shutil.copytree(data, root, ignore=shutil.ignore_patterns(".fkp"))
    return root / "Annotations" / "train.csv", model


def _predicted_window(open_window, qtbot, csv, model):
    """A window that predicted `csv` with `model` -> (window, per batch: (its rows' NE and
    predictions are filled in, the keypoint table shows the current image's prediction when the
    batch held it, else None))."""
    window = open_window(csv)
    batches = []

    def on_batch(rows) -> None:
        filled = np.isfinite(window.doc.ne[rows]).all() and window.doc.predictions.present[rows].all()
        table = window.keypoint_table
        current = (any(table.item(i, 2).text() != "—" for i in range(table.rowCount()))
                   if window.current_row in set(rows.tolist()) else None)
        batches.append((filled, current))

    window.predict.batchShown.connect(on_batch)
    with qtbot.waitSignal(window.predict.predictionsDone, timeout=300000):
        window.predict.use_model_package(model)
    return window, batches


def _small_retrain(dialog, steps: int, detector_steps: int = 10) -> None:
    dialog.steps.setValue(steps)
    dialog.detector_steps.setValue(detector_steps)
    dialog.lr.setValue(3e-3)
    dialog.batch.setValue(8)
    dialog.boxes.setCurrentIndex(dialog.boxes.findData("annotated"))


def _state(ws: Workspace) -> dict[str, bytes]:
    return {str(p.relative_to(ws.state_dir)): p.read_bytes() for p in sorted(ws.state_dir.rglob("*"))
            if p.is_file() and "journal" not in p.parts}


def test_predict_rank_hard_set_retrain_accept_lowers_hard_set_ne(open_window, qtbot, loop_data, figure):
    """Hard-set NE after / before in the dialog: 0.44-0.62 over FKP_TEST_SEED 0-4 x 1-2 threads;
    0.33-0.68 with FKP_TEST_SEED 0-1 x default, SSE41 and AVX2 kernels."""
    csv, model = loop_data
    window, batches = _predicted_window(open_window, qtbot, csv, model)
    doc = window.doc
    assert len(batches) >= 6 and all(filled for filled, _ in batches), "NE filled in batch by batch while predicting"
    assert [current for _, current in batches if current is not None] == [True], \
        "the current image's prediction is shown as soon as its batch arrives"
    ws = doc.workspace
    assert ws.active_model_version() == "v001" and ws.predictions_path("v001", csv).is_file()
    assert "Device: CPU" in window.status_bar.device_label.text()

    window.list_panel.worst_first()
    worst = window.list_model.order[:10]
    assert window.hard_set.add_worst(10) == 10
    assert sorted(window.state.hard_rows().tolist()) == sorted(worst.tolist())
    assert window.hard_set_panel.table.rowCount() == 10 and ws.load_hard_set() == {str(doc.ann.image_ids[r]): "worst-ne" for r in worst}
    before = window.state.hard_ne()

    dialog = window.open_retrain_dialog()
    _small_retrain(dialog, 300)
    with qtbot.waitSignal(window.retrain.retrainFinished, timeout=300000):
        dialog.start()
    table = dialog.table_values()
    figure("hard_ratio", table["hard set"][1] / table["hard set"][0])
    assert table["hard set"][1] < table["hard set"][0]
    assert {"held-out, all", "held-out, blouse", "held-out, dress"} <= set(table)
    assert len(dialog.losses) == 300 and ws.model_versions() == ["v001", "v002"]
    assert dialog.result["report"]["detector_steps"] == 10
    assert dialog.progress.value() == dialog.progress.maximum() == 310
    assert ws.active_model_version() == "v001", "nothing changes before Accept"

    old_coords = doc.predictions.coords[window.state.hard_rows()].copy()
    with qtbot.waitSignal(window.predict.predictionsDone, timeout=300000) as done:
        dialog.accept_result()
    assert done.args == ["v002"] and ws.active_model_version() == "v002"
    assert ws.predictions_path("v002", csv).is_file()
    # The list now shows v002's predictions. Their hard-set NE is measured with the tiny model's
    # detector, whose boxes are poor on exactly these worst-ranked images (a from-scratch
    # detector trained for seconds), so the retrain's effect is asserted above on annotated
    # boxes; here: the predictions were refreshed and the list's NE is that of v002's file.
    assert not np.allclose(doc.predictions.coords[window.state.hard_rows()], old_coords)
    from engine.analysis.ne import evaluate

    saved, _ = ws.load_predictions("v002", csv)
    rows = window.state.hard_rows()
    expected = evaluate(doc.ann.subset(rows), saved, intersect=True).ne
    assert window.state.hard_ne() == pytest.approx(expected, abs=1e-12) and window.state.hard_ne() != pytest.approx(before)
    window.predict.evaluate()
    qtbot.waitUntil(lambda: window.statusBar().currentMessage().startswith("v002: NE"), timeout=60000)
    assert f"hard set {100 * expected:.2f} %" in window.statusBar().currentMessage()

    # Reopened: the active version's predictions and the hard set load without predicting again.
    again = open_window(csv)
    qtbot.waitUntil(lambda: again.doc.predictions is not None, timeout=60000)
    assert again.predict.version == "v002" and again.doc.predictions.present.all()
    assert again.predict.handle is None
    assert len(again.state.hard_members()) == 10
    # A fresh prediction run and a reopened one show the same NE and the same suspects.
    np.testing.assert_array_equal(again.doc.ne, doc.ne)
    np.testing.assert_array_equal(again.doc.predictions.scores, doc.predictions.scores)
    assert again.doc.error_index.all_suspects() == doc.error_index.all_suspects()


def test_cancel_mid_retrain_keeps_the_old_model(open_window, qtbot, loop_data):
    csv, model = loop_data
    window, _ = _predicted_window(open_window, qtbot, csv, model)
    window.hard_set.add_worst(8)
    ws = window.doc.workspace
    state = _state(ws)
    dialog = window.open_retrain_dialog()
    _small_retrain(dialog, 5000)
    dialog.start()
    handle = window.retrain.handle
    qtbot.waitUntil(lambda: len(dialog.losses) >= 3, timeout=120000)
    dialog.cancel()
    assert handle.wait(60)
    qtbot.waitUntil(lambda: not window.model_thread.busy, timeout=10000)
    assert len(dialog.losses) < 5000 and dialog.result is None
    assert ws.model_versions() == ["v001"] and ws.active_model_version() == "v001"
    assert _state(ws) == state
    assert "Cancelled" in dialog.status.text()


def test_a_failing_retrain_reports_the_error_and_leaves_the_workspace_intact(open_window, qtbot, loop_data):
    csv, model = loop_data
    window, _ = _predicted_window(open_window, qtbot, csv, model)
    window.hard_set.add_worst(6)
    ws = window.doc.workspace
    broken = str(window.doc.ann.image_ids[window.state.hard_rows()[0]])
    (ws.root / broken).write_bytes(b"truncated")
    state = _state(ws)
    dialog = window.open_retrain_dialog()
    _small_retrain(dialog, 20)
    with qtbot.waitSignal(window.retrain.retrainFailed, timeout=120000) as failed:
        dialog.start()
    assert broken.rsplit("/", 1)[-1] in failed.args[0]
    assert "Retrain failed" in dialog.status.text() and broken.rsplit("/", 1)[-1] in dialog.status.text()
    assert not dialog.accept_button.isEnabled()
    assert ws.model_versions() == ["v001"] and ws.active_model_version() == "v001"
    assert _state(ws) == state


def test_editing_during_a_retrain_is_not_lost_and_joins_the_hard_set(open_window, qtbot, loop_data):
    csv, model = loop_data
    window, _ = _predicted_window(open_window, qtbot, csv, model)
    doc = window.doc
    window.hard_set.add_worst(6)
    removed_row = int(window.state.hard_rows()[0])
    window.hard_set.remove_rows([removed_row])
    dialog = window.open_retrain_dialog()
    _small_retrain(dialog, 200)
    with qtbot.waitSignal(window.retrain.retrainFinished, timeout=300000):
        dialog.start()
        qtbot.waitUntil(lambda: len(dialog.losses) >= 2, timeout=120000)
        edited = [r for r in range(len(doc)) if r != removed_row and str(doc.ann.image_ids[r]) not in window.state.hard_members()][0]
        for row in (edited, removed_row):
            window.list_panel.list_view.selectRow(window.list_model.view_row(row))
            k = int(np.flatnonzero(doc.ann.visibility[row] >= 0)[0])
            window.editing.select_keypoint(k)
            window.editing.nudge(7, 0)
        assert window.model_thread.busy, "the edits were made while the retrain ran"
    expected = doc.ann.coords[edited].copy()
    assert doc.edited[edited] and doc.edited[removed_row]
    # The edit is in memory, in the journal, and the edited image joined the hard set as corrected;
    # the image the user removed stays out.
    assert window.has_unsaved_edits() and doc.journal.path.is_file()
    hard = doc.workspace.load_hard_set()
    assert hard[str(doc.ann.image_ids[edited])] == "corrected"
    assert hard[str(doc.ann.image_ids[removed_row])] == "removed"
    dialog.discard_result()
    assert doc.workspace.model_versions() == ["v001"]
    np.testing.assert_array_equal(doc.ann.coords[edited], expected)
    assert window.save()
    from engine.io.annotations import load_annotations

    np.testing.assert_allclose(load_annotations(csv).coords[edited], expected, atol=0.5)


def test_the_retrain_dialog_can_train_on_every_reviewed_image(open_window, qtbot, loop_data):
    csv, model = loop_data
    window, _ = _predicted_window(open_window, qtbot, csv, model)
    window.canvas.setFocus()
    before = window.doc.ann.copy()
    for _ in range(4):  # accept the predictions of points not annotated yet, and mark reviewed
        qtbot.keyClick(window.canvas, Qt.Key_Return)
    reviewed = window.state.training_ids("reviewed")
    # Which images the queue shows, and whether one lacks a point (a garment cut by the frame) that
    # the model predicts, depend on the model's arithmetic: an accept that added a point is an edit,
    # and an edited image joins the hard set; nothing else does.
    gained = {str(window.doc.ann.image_ids[r]) for r in range(len(before.image_ids))
              if (window.doc.ann.visibility[r] != before.visibility[r]).any()}
    assert len(reviewed) == 4 and set(window.state.hard_members()) == gained <= set(reviewed)
    dialog = window.open_retrain_dialog()
    dialog.source.setCurrentIndex(dialog.source.findData("reviewed"))
    assert "on 4 reviewed images" in dialog.info.text()
    _small_retrain(dialog, 5, detector_steps=0)
    with qtbot.waitSignal(window.retrain.retrainFinished, timeout=300000) as done:
        dialog.start()
    assert done.args[0]["report"]["hard_images"] == 4  # the hold-out is chosen among the other images
