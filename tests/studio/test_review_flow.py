"""The review flow's smaller promises (issue 29 item 12): `--images` opens the root's annotation
file of another name, and an undo that reverts an image no longer on show says so and shows it."""

from __future__ import annotations

from PySide6.QtCore import Qt

from fkp_studio.main_window import MainWindow


def test_images_of_a_root_with_an_annotation_file_of_another_name_open_that_file(dataset, qtbot):
    window = MainWindow()
    window.questions.unsaved = lambda name: "discard"
    qtbot.addWidget(window)
    window.show()
    with qtbot.waitSignal(window.datasetOpened, timeout=10000):
        window.open_images(dataset["root"] / "Images")
    doc = window.doc
    assert doc.csv_path == dataset["csv"].resolve()  # train.csv, not a new ds.csv
    assert doc.ann.image_ids.tolist() == dataset["ids"] and doc.ann.has_keypoints
    assert not (dataset["root"] / "Annotations" / "ds.csv").exists()


def test_undo_after_enter_shows_the_image_it_reverts_and_says_so(open_window, dataset, qtbot):
    csv = dataset["csv"].with_name("test.csv")
    csv.write_text("".join(",".join(line.split(",")[:2]) + "\n" for line in dataset["csv"].read_text().splitlines()))
    window = open_window(csv, dataset["pred"])
    qtbot.waitUntil(lambda: window.current_row == 0, timeout=3000)
    canvas = window.canvas
    canvas.setFocus()
    qtbot.keyClick(canvas, Qt.Key_Return)
    assert window.current_row != 0 and window.doc.review[0] == 1
    qtbot.keyClick(canvas, Qt.Key_Z, Qt.ControlModifier)
    assert window.doc.review[0] == 0 and (window.doc.ann.visibility[0] < 0).all()
    qtbot.waitUntil(lambda: window.current_row == 0, timeout=3000)
    assert "img0.jpg, which was not on show" in window.status_bar.currentMessage()
