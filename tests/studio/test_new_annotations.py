"""Annotating images that have no keypoints yet: a FashionAI test split (`image_id,image_category`)
opens editable, and nothing placed is ever dropped on save."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt

from engine.cli import main
from engine.io.annotations import TEST_HEADER, load_annotations, save_annotations
from engine.schema import CSV_HEADER, category_keypoints

pytestmark = pytest.mark.float_paths  # its figures depend on the CPU's kernels: make test-kernels


def test_a_test_split_opens_editable_and_its_first_save_writes_the_full_layout(open_window, qtbot, tmp_path):
    # The repro: synth a test split, cut it to its first two columns, place a point, save.
    assert main(["synth", str(tmp_path / "D"), "--n", "3", "--split", "test", "--size", "128", "--workers", "1"]) == 0
    csv = tmp_path / "D" / "Annotations" / "test.csv"
    two_columns = "".join(",".join(line.split(",")[:2]) + "\n" for line in csv.read_text().splitlines())
    csv.write_text(two_columns)
    assert not load_annotations(csv).has_keypoints
    window = open_window(csv)
    qtbot.waitUntil(lambda: window.current_row == 0, timeout=3000)
    canvas = window.canvas
    qtbot.waitUntil(lambda: canvas.image_size() is not None, timeout=5000)
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key_N)  # the garment's first keypoint: absent, so a click places it
    first = category_keypoints(int(window.doc.categories[0]))[0]
    assert window.editing.selected_k == first
    w, h = canvas.image_size()
    target = canvas.mapFromScene(w / 2, h / 2)
    qtbot.mouseClick(canvas.viewport(), Qt.LeftButton, pos=target)
    assert window.doc.ann.visibility[0, first] == 1
    placed = window.doc.ann.coords[0, first].tolist()
    assert abs(placed[0] - w / 2) <= 1 and abs(placed[1] - h / 2) <= 1
    qtbot.keyClick(canvas, Qt.Key_S, Qt.ControlModifier)
    assert not window.isWindowModified()
    saved = load_annotations(csv)
    assert saved.has_keypoints and csv.read_text().splitlines()[0] == ",".join(CSV_HEADER)
    assert saved.image_ids.tolist() == [line.split(",")[0] for line in two_columns.splitlines()[1:]]
    assert saved.coords[0, first].tolist() == placed and saved.visibility[0, first] == 1
    assert (saved.visibility[1:] == -1).all() and (saved.visibility[0] == -1).sum() == 23
    # The first version is kept as it was.
    assert csv.with_name("test.csv.orig").read_text() == two_columns
    assert two_columns.splitlines()[0] == ",".join(TEST_HEADER)


def _scores(dataset, confidence_per_row) -> None:
    """A scores file beside the predictions: every point of row i scored confidence_per_row[i]."""
    from engine.io.scores import save_scores, scores_path

    pred = load_annotations(dataset["pred"])
    scores = np.where(pred.visibility >= 0, np.asarray(confidence_per_row)[:, None], -1.0)
    save_scores(scores_path(dataset["pred"]), list(pred.image_ids), scores)


def test_enter_accepts_the_prediction_marks_reviewed_and_moves_on_in_one_undo_step(split_csv, open_window, dataset,
                                                                                   qtbot, tmp_path):
    csv = split_csv
    pred = load_annotations(dataset["pred"])
    occluded = int(np.flatnonzero(pred.visibility[0] == 1)[-1])  # the model's visibility stage says so
    pred.visibility[0, occluded] = 0
    save_annotations(pred, dataset["pred"])
    window = open_window(csv, dataset["pred"])
    doc, canvas = window.doc, window.canvas
    qtbot.waitUntil(lambda: window.current_row == 0, timeout=3000)
    from fkp_studio.views.canvas import MarkerItem

    shown = {item.k: item.visibility for item in canvas.scene().items()
             if isinstance(item, MarkerItem) and item.kind == "prediction"}
    assert shown[occluded] == 0 and sum(v == 0 for v in shown.values()) == 1  # drawn with an occluded ring
    canvas.setFocus()
    # One point placed by hand first: Enter keeps it, and fills in every other point.
    qtbot.keyClick(canvas, Qt.Key_N)
    first = window.editing.selected_k
    qtbot.mouseClick(canvas.viewport(), Qt.LeftButton, pos=canvas.mapFromScene(20, 30))
    hand = doc.ann.coords[0, first].tolist()
    qtbot.keyClick(canvas, Qt.Key_Return)
    garment = category_keypoints(int(doc.categories[0]))
    others = [k for k in garment if k != first]
    np.testing.assert_array_equal(doc.ann.coords[0, others], pred.coords[0, others])
    # Accepted as predicted: visible, and occluded where the prediction says so.
    np.testing.assert_array_equal(doc.ann.visibility[0, others], pred.visibility[0, others])
    assert doc.ann.visibility[0, occluded] == 0 and doc.ann.coords[0, first].tolist() == hand
    assert doc.review_state(0) == "reviewed" and window.current_row != 0
    assert not window.state.hard_members(), "annotating a new image is not correcting one: not in the hard set"
    assert window.status_bar.review_label.text() == "1 / 6 reviewed"
    assert window.list_model.data(window.list_model.index(window.list_model.view_row(0), 5)) == "✓ reviewed"
    window.undo_stack.undo()  # accept and review are one step
    assert (doc.ann.visibility[0, others] == -1).all() and doc.review_state(0) == "unreviewed"
    window.undo_stack.redo()
    assert window.save()
    saved = load_annotations(csv)
    np.testing.assert_array_equal(saved.coords[0, others], pred.coords[0, others])


def test_space_follows_the_review_queue_most_expected_seconds_first_and_states_survive_a_crash(
        open_window, dataset, qtbot, crash):
    _scores(dataset, [0.9, 0.5, 0.8, 0.2, 0.7, 0.95])
    window = open_window(dataset["csv"], dataset["pred"])
    qtbot.waitUntil(lambda: window.doc.predictions is not None and (window.doc.predictions.scores >= 0).any(),
                    timeout=5000)
    # The engine's expected correction seconds, most first: the dress (15 points at 0.2), the
    # outwear (14 at 0.7), the trousers (7 at 0.5), the blouses (13 at 0.9, then 0.95), the skirt
    # (4 at 0.8): many unsure points cost more than a few.
    assert window.doc.review_queue().tolist() == [3, 4, 1, 0, 5, 2]
    window.list_panel.go_to(2)
    qtbot.waitUntil(lambda: window.current_row == 2, timeout=3000)
    canvas = window.canvas
    canvas.setFocus()
    visited = []
    for _ in range(3):
        qtbot.keyClick(canvas, Qt.Key_Space)
        visited.append(window.current_row)
    assert visited == [3, 4, 1]  # from the skirt, the queue goes round to its head
    qtbot.keyClick(canvas, Qt.Key_K)  # skip row 1: the queue starts again from its head
    assert window.doc.review_state(1) == "skipped" and window.current_row == 3
    qtbot.keyClick(canvas, Qt.Key_Return)  # row 3: accepted (nothing to fill in), reviewed
    assert window.doc.review_state(3) == "reviewed" and window.current_row == 4
    window.list_panel.review_box.setCurrentIndex(window.list_panel.review_box.findData("skipped"))
    assert window.list_model.order.tolist() == [1]
    crash(window)
    again = open_window(dataset["csv"], restore_policy="restore")  # marks are unsaved work, as edits are
    assert [again.doc.review_state(r) for r in range(6)] == [
        "unreviewed", "skipped", "unreviewed", "reviewed", "unreviewed", "unreviewed"]
    assert again.status_bar.review_label.text() == "1 / 6 reviewed"


def test_a_double_click_on_a_prediction_accepts_that_point(open_window, dataset, qtbot):
    window = open_window(dataset["csv"], dataset["pred"])
    qtbot.waitUntil(lambda: window.doc.predictions is not None, timeout=5000)
    window.list_panel.go_to(2)
    qtbot.waitUntil(lambda: window.current_row == 2, timeout=3000)
    canvas = window.canvas
    qtbot.waitUntil(lambda: canvas.image_size() is not None, timeout=5000)
    doc = window.doc
    k = category_keypoints(int(doc.categories[2]))[0]
    px, py = doc.predictions.coords[2, k]
    assert doc.ann.coords[2, k, 0] == px - 6  # row 2 is predicted 6 px to the right
    qtbot.mouseDClick(canvas.viewport(), Qt.LeftButton, pos=canvas.mapFromScene(float(px), float(py)))
    assert doc.ann.coords[2, k].tolist() == [px, py]
    window.undo_stack.undo()
    assert doc.ann.coords[2, k, 0] == px - 6


def test_reviewed_images_are_appended_to_a_training_file_byte_exactly(split_csv, open_window, dataset, qtbot,
                                                                      monkeypatch, tmp_path):
    csv = split_csv
    window = open_window(csv, dataset["pred"])
    qtbot.waitUntil(lambda: window.current_row == 0, timeout=3000)
    window.canvas.setFocus()
    for _ in range(2):
        qtbot.keyClick(window.canvas, Qt.Key_Return)
    reviewed = np.flatnonzero(window.doc.review == 1).tolist()
    assert len(reviewed) == 2
    train = dataset["csv"]
    before = train.read_bytes()
    # An id already in the training file is refused, naming it; nothing is appended.
    monkeypatch.setattr(window.questions, "training_file", lambda start: str(train))
    errors = []
    monkeypatch.setattr(window, "show_error", lambda title, text: errors.append(text))
    window.review.add_reviewed_to_training_file()
    qtbot.waitUntil(lambda: bool(errors), timeout=5000)
    assert "in the file already" in errors[0] and dataset["ids"][reviewed[0]] in errors[0]
    assert train.read_bytes() == before
    fresh = dataset["root"] / "reviewed.csv"  # in the data root that holds the images (else refused)
    fresh.write_bytes(before[:before.index(b"\n") + 1])  # a header-only training file
    monkeypatch.setattr(window.questions, "training_file", lambda start: str(fresh))
    asked = []
    monkeypatch.setattr(window.questions, "confirm", lambda title, text: asked.append(text) or True)
    window.review.add_reviewed_to_training_file()
    qtbot.waitUntil(lambda: fresh.read_bytes() != before[:before.index(b"\n") + 1], timeout=5000)
    assert asked == ["reviewed.csv: adds 2 images, skips 0 already there with the same points. Add them?"]
    added = load_annotations(fresh)
    assert fresh.read_bytes().startswith(before[:before.index(b"\n") + 1])
    assert added.image_ids.tolist() == [dataset["ids"][r] for r in reviewed]
    np.testing.assert_array_equal(added.coords, window.doc.ann.coords[reviewed])


def test_adding_more_reviewed_images_adds_the_new_ones_after_saying_what_it_skips(split_csv, open_window, dataset,
                                                                                  qtbot, monkeypatch, tmp_path):
    csv = split_csv
    window = open_window(csv, dataset["pred"])
    qtbot.waitUntil(lambda: window.current_row == 0, timeout=3000)
    train = dataset["root"] / "Annotations" / "reviewed.csv"
    train.write_bytes(dataset["csv"].read_bytes().splitlines(keepends=True)[0])
    asked, errors = [], []
    monkeypatch.setattr(window.questions, "training_file", lambda start: str(train))
    monkeypatch.setattr(window.questions, "confirm", lambda title, text: asked.append(text) or True)
    monkeypatch.setattr(window, "show_error", lambda title, text: errors.append(text))
    add = window.action_by_id["review.add_to_training_file"]
    window.canvas.setFocus()
    qtbot.keyClick(window.canvas, Qt.Key_Return)  # one reviewed, added
    add.trigger()
    qtbot.waitUntil(lambda: len(load_annotations(train)) == 1, timeout=5000)
    first = train.read_bytes()
    for _ in range(2):  # two more reviewed: the first is in the file already, the others are added
        qtbot.keyClick(window.canvas, Qt.Key_Return)
    add.trigger()
    qtbot.waitUntil(lambda: len(load_annotations(train)) == 3, timeout=5000)
    assert asked[-1] == "reviewed.csv: adds 2 images, skips 1 already there with the same points. Add them?"
    assert train.read_bytes().startswith(first) and errors == []
    reviewed = np.flatnonzero(window.doc.review == 1).tolist()
    assert load_annotations(train).image_ids.tolist() == [dataset["ids"][r] for r in reviewed]
    # Cancelled: nothing written. A file of another data root without the images: refused, why said.
    qtbot.keyClick(window.canvas, Qt.Key_Return)
    monkeypatch.setattr(window.questions, "confirm", lambda title, text: asked.append(text) and False)
    with qtbot.waitSignal(window.io_thread.busyChanged, timeout=5000, check_params_cb=lambda busy: not busy):
        add.trigger()
    assert len(load_annotations(train)) == 3 and "adds 1 image," in asked[-1]
    elsewhere = tmp_path / "other" / "Annotations" / "train.csv"
    elsewhere.parent.mkdir(parents=True)
    elsewhere.write_bytes(first)
    monkeypatch.setattr(window.questions, "training_file", lambda start: str(elsewhere))
    add.trigger()
    qtbot.waitUntil(lambda: bool(errors), timeout=5000)
    assert "does not hold" in errors[0] and str(elsewhere) in errors[0] and "Error" not in errors[0]
    assert elsewhere.read_bytes() == first


def test_a_folder_of_images_without_a_csv_becomes_new_annotations_on_the_first_save(qtbot, tmp_path):
    from PySide6.QtWidgets import QMessageBox

    from engine.io.images import write_jpeg
    from fkp_studio.main_window import MainWindow

    root = tmp_path / "shoot"
    for name in ("Images/skirt/a.jpg", "Images/skirt/b.jpg", "Images/dress/c.jpg", "Images/misc/d.jpg"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        write_jpeg(root / name, np.full((120, 100, 3), 90, np.uint8))
    window = MainWindow()
    window.questions.unsaved = lambda name: "discard"
    qtbot.addWidget(window)
    window.show()
    with qtbot.waitSignal(window.datasetOpened, timeout=10000):
        window.open_images(root / "Images")
    doc = window.doc
    assert doc.csv_path == (root / "Annotations" / "shoot.csv").resolve() and not doc.csv_path.exists()
    assert doc.ann.image_ids.tolist() == ["Images/dress/c.jpg", "Images/misc/d.jpg", "Images/skirt/a.jpg",
                                          "Images/skirt/b.jpg"]
    assert doc.uncategorized.tolist() == [False, True, False, False] and not doc.ann.problems
    qtbot.waitUntil(lambda: window.current_row == 0, timeout=3000)
    canvas = window.canvas
    qtbot.waitUntil(lambda: canvas.image_size() == (100, 120), timeout=5000)
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key_N)
    qtbot.mouseClick(canvas.viewport(), Qt.LeftButton, pos=canvas.mapFromScene(50, 60))
    qtbot.keyClick(canvas, Qt.Key_S, Qt.ControlModifier)
    saved = load_annotations(root / "Annotations" / "shoot.csv")
    # The image without a category is not in the file (no row can hold it): kept in the workspace.
    assert saved.has_keypoints and saved.image_ids.tolist() == doc.ann.image_ids[[0, 2, 3]].tolist()
    assert (saved.visibility[0] == 1).sum() == 1 and (saved.visibility[1:] == -1).all()


def test_each_points_confidence_is_shown_and_unsure_predictions_are_ringed(open_window, dataset, qtbot):
    from fkp_studio.views.canvas import MarkerItem
    from fkp_studio.views.keypoint_table import COL_CONFIDENCE

    _scores(dataset, [0.3, 0.9, 0.9, 0.9, 0.9, 0.9])
    window = open_window(dataset["csv"], dataset["pred"])
    qtbot.waitUntil(lambda: window.doc.predictions is not None, timeout=5000)
    window.list_panel.go_to(1)
    window.list_panel.go_to(0)
    qtbot.waitUntil(lambda: window.current_row == 0, timeout=3000)
    table = window.keypoint_table
    assert {table.item(i, COL_CONFIDENCE).text() for i in range(table.rowCount())} == {"0.30"}
    unsure = [item.unsure for item in window.canvas.scene().items()
              if isinstance(item, MarkerItem) and item.kind == "prediction"]
    assert unsure and all(unsure)
    window.list_panel.go_to(1)
    unsure = [item.unsure for item in window.canvas.scene().items()
              if isinstance(item, MarkerItem) and item.kind == "prediction"]
    assert unsure and not any(unsure)


def test_changing_the_category_is_one_undo_step_and_survives_a_crash(open_window, dataset, qtbot, crash):
    from engine.schema import CATEGORIES, CATEGORY_MASK

    window = open_window(dataset["csv"])
    qtbot.waitUntil(lambda: window.current_row == 0, timeout=3000)
    doc = window.doc
    assert CATEGORIES[doc.categories[0]] == "blouse"
    before_coords, before_vis = doc.ann.coords[0].copy(), doc.ann.visibility[0].copy()
    window.canvas.setFocus()
    qtbot.keyClick(window.canvas, Qt.Key_C)  # blouse -> outwear
    assert CATEGORIES[doc.categories[0]] == "outwear" and window.category_combo.currentText() == "outwear"
    assert (doc.ann.visibility[0][~CATEGORY_MASK[1]] == -1).all() and doc.edited[0]
    window.category_combo.activated.emit(4)  # the combo box: dress
    assert CATEGORIES[doc.categories[0]] == "dress" and window.list_model.data(window.list_model.index(0, 1)) == "dress"
    window.undo_stack.undo()
    window.undo_stack.undo()
    assert CATEGORIES[doc.categories[0]] == "blouse"
    assert (doc.ann.visibility[0] == before_vis).all() and (doc.ann.coords[0] == before_coords).all()
    window.undo_stack.redo()  # outwear again
    crash(window)
    again = open_window(dataset["csv"], restore_policy="restore")
    assert CATEGORIES[again.doc.categories[0]] == "outwear"
    assert again.save()
    assert CATEGORIES[load_annotations(dataset["csv"]).categories[0]] == "outwear"


def test_a_folder_of_photos_takes_the_categories_of_its_predictions(qtbot, tmp_path):
    """`fkp predict --images` then the studio: photos outside category folders get the detector's
    category from the predictions file, and the predictions are shown to accept."""
    from PySide6.QtWidgets import QMessageBox

    from engine.io.annotations import Annotations, save_annotations
    from engine.io.images import write_jpeg
    from fkp_studio.main_window import MainWindow

    root = tmp_path / "photos"
    ids = ["Images/new/a.jpg", "Images/new/b.jpg"]
    for image_id in ids:
        (root / image_id).parent.mkdir(parents=True, exist_ok=True)
        write_jpeg(root / image_id, np.full((100, 100, 3), 90, np.uint8))
    coords = np.full((2, 24, 2), -1, np.float32)
    vis = np.full((2, 24), -1, np.int8)
    coords[:, 15:17], vis[:, 15:17] = 50, 1  # skirt waistbands
    save_annotations(Annotations.from_arrays(ids, [3, 3], coords, vis), tmp_path / "pred.csv")
    window = MainWindow()
    window.questions.unsaved = lambda name: "discard"
    qtbot.addWidget(window)
    window.show()
    with qtbot.waitSignals([window.datasetOpened, window.predictionsReady], timeout=10000):
        window.open_images(root / "Images", predictions=tmp_path / "pred.csv")
    doc = window.doc
    assert doc.ann.image_ids.tolist() == ids and doc.categories.tolist() == [3, 3] and not doc.ann.problems
    assert doc.predictions.present.all()
    qtbot.waitUntil(lambda: window.current_row is not None, timeout=3000)
    window.canvas.setFocus()
    qtbot.keyClick(window.canvas, Qt.Key_Return)
    assert (doc.ann.visibility[0, 15:17] == 1).all() and doc.review_state(0) == "reviewed"
