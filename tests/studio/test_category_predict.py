"""A category change predicts the image again with the new category (issue 29, item 4): the old
category's crosses go at once, `Enter` waits for the new prediction and then accepts it; `1`-`5` set
the category directly, `C` cycles forward (one undo step, journaled)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from PySide6.QtCore import Qt

from engine.io.journal import read_journal
from engine.io.predictions import Predictions
from engine.jobs.model_jobs import model_source
from engine.schema import CATEGORIES, category_code, category_keypoints
from tests.studio.conftest import garment


@pytest.fixture
def fake_model(monkeypatch):
    """The predict job replaced by one that predicts each image's category's layout (shifted 7 px),
    on the model thread, once `release` is set; `calls` lists the rows and categories asked for."""
    import fkp_studio.controllers.predict as predict

    release, calls = threading.Event(), []

    def predict_job(workspace, version, csv, snapshot, rows=None, **_kw):
        def run(ctx) -> dict:
            assert release.wait(10)
            cats = snapshot.categories[rows].astype(np.int64)
            calls.append((rows.tolist(), cats.tolist()))
            made = [garment(CATEGORIES[c]) for c in cats]
            coords = np.stack([np.where(v[:, None] >= 0, c + 7, -1) for c, v in made]).astype(np.float32)
            vis = np.stack([v for _, v in made])
            part = Predictions.unpredicted(snapshot.image_ids[rows], cats, rows=rows, source=model_source(version))
            part.coords[:], part.visibility[:], part.present[:] = coords, vis, True
            part.scores[:] = np.where(vis >= 0, 0.9, -1)
            ctx.partial(part)
            return {"version": version, "path": None, "predicted": len(rows), "errors": {}, "batch_size": 8}

        return run

    monkeypatch.setattr(predict, "predict_job", predict_job)
    return release, calls


def _crosses(canvas) -> set[int]:
    from fkp_studio.views.canvas import MarkerItem

    return {item.k for item in canvas.scene().items() if isinstance(item, MarkerItem) and item.kind == "prediction"}


def test_a_category_key_predicts_the_image_again_and_enter_waits_for_it(split_csv, open_window, dataset, qtbot,
                                                                        monkeypatch, fake_model):
    release, calls = fake_model
    window = open_window(split_csv, dataset["pred"])
    doc, canvas = window.doc, window.canvas
    monkeypatch.setattr(doc.workspace, "active_model_version", lambda: "v001")
    errors = []
    monkeypatch.setattr(window, "show_error", lambda title, text: errors.append(f"{title}: {text}"))
    qtbot.waitUntil(lambda: window.current_row == 0, timeout=3000)
    blouse = set(category_keypoints(category_code("blouse")))
    assert _crosses(canvas) == blouse
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key_3)  # trousers
    trousers = category_code("trousers")
    assert doc.categories[0] == trousers and window.undo_stack.count() == 1
    assert not doc.predictions.present[0] and _crosses(canvas) == set(), "the blouse's crosses are gone at once"
    qtbot.keyClick(canvas, Qt.Key_Return)  # while the new prediction runs: waits, says so
    assert window.current_row == 0 and doc.review_state(0) == "unreviewed" and (doc.ann.visibility[0] < 0).all()
    assert "new category" in window.status_bar.currentMessage()
    release.set()
    qtbot.waitUntil(lambda: bool(doc.predictions.present[0]), timeout=5000)
    assert calls == [([0], [trousers])]
    assert _crosses(canvas) == set(category_keypoints(trousers))
    qtbot.keyClick(canvas, Qt.Key_Return)
    ks = list(category_keypoints(trousers))
    expected = garment("trousers")[0][ks] + 7
    np.testing.assert_array_equal(doc.ann.coords[0, ks], expected)
    assert doc.review_state(0) == "reviewed" and errors == []


def test_c_cycles_forward_in_one_journaled_step_and_undo_brings_the_old_crosses_back(open_window, dataset, qtbot,
                                                                                     monkeypatch, fake_model):
    release, calls = fake_model
    window = open_window(dataset["csv"], dataset["pred"])
    doc, canvas = window.doc, window.canvas
    monkeypatch.setattr(doc.workspace, "active_model_version", lambda: "v001")
    errors = []
    monkeypatch.setattr(window, "show_error", lambda title, text: errors.append(f"{title}: {text}"))
    window.list_panel.go_to(0)  # a data set with predictions opens on its worst image
    qtbot.waitUntil(lambda: window.current_row == 0, timeout=3000)
    before = doc.predictions.coords[0].copy()
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key_C)  # blouse -> outwear: the blouse points outwear has no place for go
    assert doc.categories[0] == category_code("outwear") and window.undo_stack.count() == 1
    assert read_journal(doc.journal.path).edits[-1].category == category_code("outwear")
    release.set()
    qtbot.waitUntil(lambda: bool(doc.predictions.present[0]), timeout=5000)
    assert _crosses(canvas) == set(category_keypoints(category_code("outwear")))
    window.undo_stack.undo()  # blouse again: its earlier prediction is back, nothing predicted again
    assert doc.categories[0] == category_code("blouse") and doc.predictions.present[0]
    np.testing.assert_array_equal(doc.predictions.coords[0], before)
    assert len(calls) == 1 and errors == []


def test_a_predictions_file_says_the_category_each_image_was_predicted_with(split_csv, open_window, dataset, qtbot,
                                                                            monkeypatch, fake_model):
    """The file predicted image 0 as a dress (its annotation says blouse, as after a crash whose
    journal held the detector's categories): setting the category to dress keeps those crosses
    and predicts nothing again; an edit after it does not either."""
    from engine.io.annotations import load_annotations, save_annotations

    release, calls = fake_model
    release.set()
    pred = load_annotations(dataset["pred"])
    dress = category_code("dress")
    coords, vis = garment("dress")
    pred.coords[0], pred.visibility[0], pred.categories[0] = coords, vis, dress
    save_annotations(pred, dataset["pred"])
    window = open_window(split_csv, dataset["pred"])
    doc, canvas = window.doc, window.canvas
    monkeypatch.setattr(doc.workspace, "active_model_version", lambda: "v001")
    window.list_panel.go_to(0)
    qtbot.waitUntil(lambda: window.current_row == 0, timeout=3000)
    assert doc.predictions.categories[0] == dress and doc.categories[0] == category_code("blouse")
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key_5)  # dress: what the file predicted it as
    assert doc.categories[0] == dress and doc.predictions.present[0]
    assert _crosses(canvas) == set(category_keypoints(dress))
    qtbot.keyClick(canvas, Qt.Key_Return)
    qtbot.wait(100)
    assert calls == [] and doc.review_state(0) == "reviewed"
