"""The Qt binding the studio runs on keeps Python's `None` alive: PySide6 6.12.0 under Python 3.11
drops one reference to it on every call that returns nothing, and the studio aborts with
"Fatal Python error: none_dealloc" after a few hundred images (pyproject.toml excludes it)."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel

VAL_CSV = Path(__file__).resolve().parents[1] / "data" / "fashionai" / "val.csv"


def test_qt_calls_that_return_nothing_keep_none_referenced(qtbot):
    label = QLabel()
    qtbot.addWidget(label)
    before = sys.getrefcount(None)
    for i in range(2000):
        label.setText(str(i))
        label.setVisible(False)
        label.update()
    # Other references to None come and go (the test runner's), a few at most; the broken
    # binding loses 6,000 here.
    assert sys.getrefcount(None) > before - 100


def test_browsing_1200_images_with_page_down(open_window, qtbot, tmp_path):
    lines = VAL_CSV.read_text(encoding="utf-8").splitlines()
    header, rows = lines[0], lines[1:1201]
    jpeg = cv2.imencode(".jpg", np.full((96, 96, 3), 128, np.uint8))[1].tobytes()
    for row in rows:
        path = tmp_path / row.split(",", 1)[0]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(jpeg)
    csv = tmp_path / "Annotations" / "val.csv"
    csv.parent.mkdir()
    csv.write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    window = open_window(csv)
    n = window.list_model.rowCount()
    assert n == len(window.doc) > 1150  # the real file's few malformed rows are not listed
    window.canvas.setFocus()
    refs = sys.getrefcount(None)
    for step in range(1, n):
        qtbot.keyClick(window.canvas, Qt.Key_PageDown)
        assert window.current_row == window.list_model.data_row(step)
    qtbot.waitUntil(lambda: window.canvas.image_size() == (96, 96), timeout=5000)
    # The broken binding loses tens of thousands here before it aborts; the count may grow.
    assert sys.getrefcount(None) > refs - 100


def test_the_studio_refuses_a_known_bad_binding_with_a_clear_message():
    from fkp_studio.app import binding_problem

    problem = binding_problem("6.12.0", (3, 11))
    assert "PySide6 6.12.0" in problem and "Python 3.11" in problem and "!=6.12.0" in problem
    assert binding_problem("6.12.0", (3, 12)) is None and binding_problem("6.11.3", (3, 11)) is None
