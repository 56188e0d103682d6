"""Images without a category (photos outside the category folders, not predicted): listed and
viewable like the others, their category set with C or the category box (one undo step), left
out of the FashionAI CSV on save (the message says how many) and kept in the workspace, so that
reopening brings them back with their points."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QMessageBox

from engine.io.annotations import load_annotations, save_annotations
from engine.io.images import write_jpeg
from engine.schema import CATEGORIES, category_keypoints

pytestmark = pytest.mark.float_paths  # its figures depend on the CPU's kernels: make test-kernels

IDS = ["Images/misc/d.jpg", "Images/skirt/a.jpg", "Images/skirt/b.jpg"]


@pytest.fixture
def photos(tmp_path):
    """A folder of three photos: two in a category folder, one ("misc") outside any."""
    root = tmp_path / "shoot"
    for image_id in IDS:
        (root / image_id).parent.mkdir(parents=True, exist_ok=True)
        write_jpeg(root / image_id, np.full((120, 100, 3), 90, np.uint8))
    return root


def _window(qtbot):
    from fkp_studio.main_window import MainWindow

    window = MainWindow()
    window.questions.restore_policy = "restore"
    window.questions.unsaved = lambda name: "discard"
    qtbot.addWidget(window)
    window.show()
    return window


def _open_folder(qtbot, root):
    window = _window(qtbot)
    with qtbot.waitSignal(window.datasetOpened, timeout=10000):
        window.open_images(root / "Images")
    return window


def _open_csv(qtbot, csv):
    window = _window(qtbot)
    with qtbot.waitSignal(window.datasetOpened, timeout=10000):
        window.open_dataset(csv)
    return window


def _show(qtbot, window, row):
    window.list_panel.go_to(row)
    qtbot.waitUntil(lambda: window.current_row == row, timeout=3000)
    qtbot.waitUntil(lambda: window.canvas.image_size() is not None, timeout=5000)


def test_an_image_without_a_category_is_listed_left_out_of_the_save_and_kept_for_the_next_opening(qtbot, photos):
    window = _open_folder(qtbot, photos)
    doc = window.doc
    csv = photos / "Annotations" / "shoot.csv"
    assert doc.ann.image_ids.tolist() == IDS and doc.uncategorized.tolist() == [True, False, False]
    assert window.list_model.rowCount() == 3
    _show(qtbot, window, 0)
    assert window.category_combo.currentIndex() == -1  # the box shows "no category"
    # A point placed on it before it has a category is kept with it.
    canvas = window.canvas
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key_N)
    k = window.editing.selected_k
    qtbot.mouseClick(canvas.viewport(), Qt.LeftButton, pos=canvas.mapFromScene(40, 50))
    placed = doc.ann.coords[0, k].tolist()
    assert doc.ann.visibility[0, k] == 1
    qtbot.keyClick(canvas, Qt.Key_S, Qt.ControlModifier)
    assert not window.isWindowModified()
    assert "1 image without a category was left out (kept in the workspace)" in window.statusBar().currentMessage()
    assert load_annotations(csv).image_ids.tolist() == IDS[1:]
    window.close()

    # Reopened, from the file or the folder: it is back, with its point, still without a category.
    for again in (_open_csv(qtbot, csv), _open_folder(qtbot, photos)):
        d = again.doc
        assert sorted(d.ann.image_ids.tolist()) == IDS and int(d.uncategorized.sum()) == 1
        row = d.ann.index_of(IDS[0])
        assert d.uncategorized[row] and d.ann.visibility[row, k] == 1 and d.ann.coords[row, k].tolist() == placed
        assert "1 without a category (C or the category box sets it)" in again.statusBar().currentMessage()
        again.close()


def test_c_or_the_category_box_gives_it_a_category_in_one_undo_step_and_the_save_writes_it(qtbot, photos, tmp_path):
    window = _open_folder(qtbot, photos)
    doc = window.doc
    csv = photos / "Annotations" / "shoot.csv"
    _show(qtbot, window, 0)
    window.canvas.setFocus()
    qtbot.keyClick(window.canvas, Qt.Key_C)  # no category -> the first one
    assert not doc.uncategorized[0] and CATEGORIES[doc.categories[0]] == "blouse"
    assert window.category_combo.currentText() == "blouse" and doc.edited[0]
    window.undo_stack.undo()  # back to no category, not to the placeholder's "blouse"
    assert doc.uncategorized[0] and window.category_combo.currentIndex() == -1 and not doc.edited[0]
    window.undo_stack.redo()
    assert not doc.uncategorized[0]
    window.undo_stack.undo()
    window.category_combo.activated.emit(3)  # the box: skirt
    assert not doc.uncategorized[0] and CATEGORIES[doc.categories[0]] == "skirt"
    qtbot.keyClick(window.canvas, Qt.Key_N)
    assert window.editing.selected_k == category_keypoints(3)[0]
    assert window.save()
    assert window.statusBar().currentMessage() == f"Saved {doc.csv_path}"
    saved = load_annotations(csv)
    assert saved.image_ids.tolist() == IDS and CATEGORIES[saved.categories[0]] == "skirt"
    assert not doc.workspace.uncategorized_path(doc.csv_path).exists()


@pytest.mark.parametrize("category", ["blouse", "dress"])  # blouse: the stand-in's own code
def test_a_category_chosen_before_a_crash_is_restored(qtbot, photos, crash, category):
    window = _open_folder(qtbot, photos)
    csv = photos / "Annotations" / "shoot.csv"
    assert window.save()  # the image without a category goes to the workspace
    _show(qtbot, window, 0)
    window.category_combo.activated.emit(CATEGORIES.index(category))
    crash(window)
    again = _open_csv(qtbot, csv)  # restore_policy "restore"
    row = again.doc.ann.index_of(IDS[0])
    assert not again.doc.uncategorized[row] and CATEGORIES[again.doc.categories[row]] == category
    assert again.save()
    saved = load_annotations(csv)
    assert CATEGORIES[saved.categories[saved.index_of(IDS[0])]] == category


def test_points_placed_after_naming_and_saving_survive_a_save_onto_a_file_changed_on_disk(qtbot, photos,
                                                                                          monkeypatch):
    window = _open_folder(qtbot, photos)
    csv = photos / "Annotations" / "shoot.csv"
    _show(qtbot, window, 0)
    window.category_combo.activated.emit(CATEGORIES.index("skirt"))
    assert window.save()  # the image enters the file
    canvas = window.canvas
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key_N)
    k = window.editing.selected_k
    qtbot.mouseClick(canvas.viewport(), Qt.LeftButton, pos=canvas.mapFromScene(40, 50))
    placed = window.doc.ann.coords[0, k].tolist()
    outside = load_annotations(csv)  # another program moves a point of another image
    other = outside.index_of(IDS[1])
    outside.coords[other, k], outside.visibility[other, k] = (7, 8), 1
    save_annotations(outside, csv)
    monkeypatch.setattr(window.questions, "changed_on_disk", lambda name: "merge")
    monkeypatch.setattr(QMessageBox, "information", lambda *a: None)
    with qtbot.waitSignal(window.datasetOpened, timeout=10000):
        assert window.save()
    saved = load_annotations(csv)
    row = saved.index_of(IDS[0])
    assert saved.visibility[row, k] == 1 and saved.coords[row, k].tolist() == placed
    assert saved.coords[saved.index_of(IDS[1]), k].tolist() == [7, 8]


def test_predict_all_gives_an_image_without_a_category_the_detectors_class_in_one_undo_step(qtbot, tmp_path):
    """The demo model's detector chooses the category of a photo outside the category folders
    (the other images keep theirs); the list shows it; Ctrl+Z puts the image back to none."""
    from engine.synth import render_sample
    from fkp_studio.app import demo_model

    rng = np.random.default_rng(7)
    root = tmp_path / "shoot"
    ids = {"Images/misc/t.jpg": "trousers", "Images/skirt/s.jpg": "skirt"}
    for image_id, category in ids.items():
        (root / image_id).parent.mkdir(parents=True, exist_ok=True)
        write_jpeg(root / image_id, render_sample(rng, category, (256, 256)).image)
    window = _open_folder(qtbot, root)
    doc = window.doc
    row = doc.ann.index_of("Images/misc/t.jpg")
    assert doc.uncategorized[row] and window.list_model.data(window.list_model.index(
        int(np.flatnonzero(window.list_model.order == row)[0]), 1)) == "—"
    with qtbot.waitSignal(window.predict.predictionsDone, timeout=120000):
        window.predict.use_model_package(demo_model())
    assert not doc.uncategorized[row] and CATEGORIES[doc.categories[row]] == "trousers"
    assert CATEGORIES[doc.categories[doc.ann.index_of("Images/skirt/s.jpg")]] == "skirt"
    assert "1 without a category took the detector's" in window.statusBar().currentMessage()
    window.undo_stack.undo()
    assert doc.uncategorized[row]
