"""Browsing: sort and filter the image list, chart clicks, problems panel, missing images,
the real val.csv (no images), settings."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6.QtCore import QSettings, Qt

from engine.schema import CATEGORIES, category_code
from fkp_studio.models.image_list import COL_CATEGORY, COL_ID, COL_NE, COL_VISIBLE

VAL_CSV = Path(__file__).resolve().parents[1] / "data" / "fashionai" / "val.csv"


def _column(window, col):
    m = window.list_model
    return [m.data(m.index(r, col)) for r in range(m.rowCount())]


def test_worst_first_sort_and_filters(open_window, dataset, qtbot):
    window = open_window(dataset["csv"], dataset["pred"])
    model = window.list_model
    # Predictions are worse row by row: worst first is the reverse file order.
    assert model.order.tolist() == [5, 4, 3, 2, 1, 0]
    ne = window.doc.ne[model.order]
    assert np.all(np.diff(ne) <= 0) and ne[-1] == 0
    assert window.current_row == 5, "the worst image is shown first"
    model.sort(COL_NE, Qt.AscendingOrder)
    assert model.order.tolist() == [0, 1, 2, 3, 4, 5]
    model.sort(COL_ID, Qt.AscendingOrder)
    assert _column(window, COL_ID) == sorted(p.rsplit("/", 1)[-1] for p in dataset["ids"])
    model.sort(COL_VISIBLE, Qt.DescendingOrder)
    visible = [int(v) for v in _column(window, COL_VISIBLE)]
    assert visible == sorted(visible, reverse=True)
    # Category filter from the combo box.
    window.list_panel.category_box.setCurrentIndex(category_code("blouse") + 1)
    assert _column(window, COL_CATEGORY) == ["blouse", "blouse"]
    assert window.list_panel.count_label.text() == "2 of 6 images"
    # Text search (debounced) on top of it.
    window.list_panel.search.setText("IMG5")
    qtbot.waitUntil(lambda: model.rowCount() == 1, timeout=2000)
    assert model.data_row(0) == 5
    window.list_panel.clear_filter()
    assert model.rowCount() == 6
    # Edited only: the images changed in this session.
    window.editing.select_keypoint(int(np.flatnonzero(window.doc.ann.visibility[window.current_row] == 1)[0]))
    window.editing.nudge(1, 0)
    window.list_panel.edited_box.setChecked(True)
    assert model.order.tolist() == [window.current_row]
    window.list_panel.clear_filter()
    assert model.rowCount() == 6 and not window.list_panel.edited_box.isChecked()
    # The W shortcut.
    model.sort(COL_ID, Qt.AscendingOrder)
    window.activateWindow()
    window.list_panel.list_view.setFocus()
    qtbot.keyClick(window.list_panel.list_view, Qt.Key_W)
    assert model.order.tolist() == [5, 4, 3, 2, 1, 0]


def test_edit_updates_ne_and_edited_columns(open_window, dataset, qtbot):
    window = open_window(dataset["csv"], dataset["pred"])
    row = 5
    assert window.current_row == row
    before = window.doc.ne[row]
    ks = np.flatnonzero(window.doc.ann.visibility[row] == 1)
    # Move every visible point onto its prediction: the image's NE drops to 0.
    from fkp_studio.models import commands
    for k in ks:
        x, y = window.doc.predictions.coords[row, k]
        window.undo_stack.push(commands.move_point(window.doc, row, int(k), float(x), float(y)))
    assert before > 0 and window.doc.ne[row] == 0
    view_row = window.list_model.view_row(row)
    assert window.list_model.data(window.list_model.index(view_row, COL_NE)) == "0.00"
    assert "edited" in window.list_model.data(window.list_model.index(view_row, 4))


def test_chart_clicks_filter_the_list(open_window, dataset, qtbot):
    window = open_window(dataset["csv"], dataset["pred"])
    charts = window.charts
    charts.refresh()
    cat_bars = [p for p in charts.per_cat.ax.patches if getattr(p, "fkp_filter", None)]
    assert sorted(b.fkp_filter[1] for b in cat_bars) == list(range(len(CATEGORIES)))
    skirt = next(b for b in cat_bars if b.fkp_filter[1] == category_code("skirt"))

    class Pick:  # what matplotlib hands a pick handler
        artist = skirt
    charts._on_pick(Pick)
    assert _column(window, COL_CATEGORY) == ["skirt"]
    window.list_panel.clear_filter()
    hist_bars = [p for p in charts.hist.ax.patches if getattr(p, "fkp_filter", None)]
    last = hist_bars[-1]
    Pick.artist = last
    charts._on_pick(Pick)
    lo = last.fkp_filter[1]
    assert window.list_model.rowCount() >= 1
    assert all(window.doc.ne[r] >= lo for r in window.list_model.order)
    assert window.list_panel.clear_filter_button.isVisible() or not window.isVisible()


def test_missing_image_shows_placeholder_and_points(open_window, dataset, qtbot):
    window = open_window(dataset["csv"], dataset["pred"])
    row = 5  # its image file does not exist
    window.list_panel.list_view.selectRow(window.list_model.view_row(row))
    qtbot.waitUntil(lambda: window.loader.error(str(window.doc.image_path(row))) is not None, timeout=3000)
    texts = [i.toPlainText() for i in window.canvas.scene().items() if hasattr(i, "toPlainText")]
    assert any("Image not available" in t and "img5.jpg" in t and "not found" in t for t in texts)
    markers = [i for i in window.canvas.scene().items() if type(i).__name__ == "MarkerItem"]
    assert len(markers) == 2 * (window.doc.ann.visibility[row] >= 0).sum()


def test_problems_panel_lists_unparsed_rows(open_window, dataset, qtbot, tmp_path):
    lines = dataset["csv"].read_text().splitlines()
    lines.insert(2, "Images/blouse/broken.jpg,blouse,12_x_1")  # too few cells, bad number
    lines.insert(4, lines[1])  # a duplicate id
    broken = dataset["csv"].with_name("broken.csv")
    broken.write_text("\n".join(lines) + "\n")
    window = open_window(broken)
    panel = window.problems
    assert panel.rowCount() == 2
    assert [panel.item(r, 0).text() for r in range(2)] == ["3", "5"]
    assert panel.item(0, 1).text() == "Images/blouse/broken.jpg"
    assert "Problems (2)" in window.problems_dock.windowTitle()
    assert window.list_model.rowCount() == 6
    # Saving keeps the unparsed rows verbatim.
    window.undo_stack.setClean()
    assert window.save()
    assert broken.read_text().splitlines()[2] == "Images/blouse/broken.jpg,blouse,12_x_1"


def test_real_val_csv_without_images(open_window, qtbot, tmp_path):
    # A copy, so the test never writes next to the repository's data.
    csv = tmp_path / "val.csv"
    csv.write_bytes(VAL_CSV.read_bytes())
    window = open_window(csv)
    assert window.list_model.rowCount() == len(window.doc) > 6000
    assert window.problems.rowCount() == len(window.doc.ann.problems)
    window.list_panel.step(1)
    qtbot.waitUntil(lambda: window.loader.error(str(window.doc.image_path(window.current_row))) is not None, timeout=3000)
    window.editing.next_keypoint()
    window.editing.nudge(1, 0)
    assert window.doc.edited[window.current_row]


def test_geometry_and_last_dataset_persist(open_window, dataset, qtbot):
    from fkp_studio.main_window import MainWindow
    from fkp_studio.models.session import last_dataset

    window = open_window(dataset["csv"], dataset["pred"])
    window.resize(760, 540)
    size = (window.width(), window.height())
    window.close()
    assert last_dataset() == (str(dataset["csv"].resolve()), str(dataset["pred"].resolve()))
    assert QSettings().value("window/geometry") is not None
    again = MainWindow()
    qtbot.addWidget(again)
    # The offscreen screen is 800 px wide, so the width is clamped; the height tells.
    assert again.height() == size[1] != 880
    assert QSettings().value("window/state") is not None


def test_markers_name_themselves_and_show_visibility(open_window, dataset, qtbot):
    window = open_window(dataset["csv"], dataset["pred"])
    row = 0  # a blouse with one occluded point
    window.list_panel.list_view.selectRow(window.list_model.view_row(row))
    qtbot.waitUntil(lambda: window.current_row == row, timeout=3000)
    markers = [i for i in window.canvas.scene().items() if type(i).__name__ == "MarkerItem"]
    annotations = {m.k: m for m in markers if m.kind == "annotation"}
    occluded = int(np.flatnonzero(window.doc.ann.visibility[row] == 0)[0])
    assert annotations[occluded].visibility == 0 and "occluded" in annotations[occluded].toolTip()
    assert "neckline left — annotation, visible" in annotations[0].toolTip()
    assert any(m.kind == "prediction" and "prediction" in m.toolTip() for m in markers)
    # Selecting a point in the keypoint table hands the arrow keys to the canvas.
    window.list_panel.list_view.setFocus()
    window.keypoint_table.keypointClicked.emit(0)
    assert window.editing.selected_k == 0
    x0 = window.doc.ann.coords[row, 0, 0]
    qtbot.keyClick(window.canvas, Qt.Key_Left)
    assert window.doc.ann.coords[row, 0, 0] == x0 - 1
    assert window.current_row == row


def test_keypoint_bar_lists_images_with_that_error_worst_first(open_window, dataset, qtbot):
    from engine.schema import KEYPOINT_INDEX

    window = open_window(dataset["csv"], dataset["pred"])
    k = KEYPOINT_INDEX["waistband_left"]  # trousers and skirt only
    window.charts.refresh()  # drawn by a debounce timer in the app
    bar = next(p for p in window.charts.per_kp.ax.patches if getattr(p, "fkp_filter", None) == ("keypoint", k))

    class Pick:
        artist = bar
    window.charts._on_pick(Pick)
    rows = window.list_model.order.tolist()
    assert sorted(rows) == [1, 2]
    errs = window.doc.errors[rows, k]
    assert errs[0] >= errs[1]
    assert "waistband_left" in window.list_panel.filter_label.text()


def test_a_very_long_image_id_is_shown_elided(open_window, qtbot, tmp_path):
    """An id of 160,000 characters took 2.2 s per display (text layout of the title, the list
    cell and the "image not available" placeholder); every label now shows both ends of it."""
    from engine.schema import CATEGORY_MASK, CSV_HEADER

    long_id = "Images/blouse/" + "x" * 160_000 + ".jpg"
    cells = ["10_10_1" if m else "-1_-1_-1" for m in CATEGORY_MASK[0]]
    csv = tmp_path / "Annotations" / "train.csv"
    csv.parent.mkdir()
    csv.write_text(",".join(CSV_HEADER) + "\n" + ",".join([long_id, "blouse", *cells]) + "\n", encoding="utf-8")
    window = open_window(csv)
    qtbot.waitUntil(lambda: window.current_row == 0, timeout=3000)
    qtbot.waitUntil(lambda: window.loader.error(str(window.doc.image_path(0))) is not None, timeout=3000)
    shown = [window.windowTitle(), window.list_model.data(window.list_model.index(0, 0)),
             window.list_model.data(window.list_model.index(0, 0), Qt.ToolTipRole)]
    assert all(len(text) <= 1000 for text in shown) and "xxx…xxx" in shown[0] and ".jpg — " in shown[0]
    placeholder = [item.toPlainText() for item in window.canvas.scene().items() if hasattr(item, "toPlainText")]
    assert placeholder and all(len(text) < 500 for text in placeholder)
    assert window.doc.ann.image_ids[0] == long_id  # only the display is cut, never the data
