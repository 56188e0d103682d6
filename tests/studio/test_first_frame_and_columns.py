"""Issue 29 item 12: the window's first frame is drawn before the slow starts (the device probe
imports torch and held the GIL for seconds: the first frames were black), and the list's and
the keypoint table's columns are measured in their font, so that at their default width no
header or value is cut ("✓ r", "nnotation")."""

from __future__ import annotations

import numpy as np
from PySide6.QtWidgets import QAbstractItemView

from fkp_studio.models.image_list import HEADERS as LIST_HEADERS
from fkp_studio.views.keypoint_table import HEADERS as TABLE_HEADERS


def test_the_device_probe_waits_for_the_first_frame(qtbot):
    from fkp_studio.main_window import MainWindow

    window = MainWindow()
    qtbot.addWidget(window)
    found: list[str] = []
    window.predict.deviceFound.connect(found.append)
    qtbot.wait(300)
    assert found == [], "the probe waits for the first frame (in this process torch is loaded: it would be quick)"
    with qtbot.waitSignal(window.firstFrameShown, timeout=5000):
        window.show()
    qtbot.waitUntil(lambda: bool(found), timeout=60000)
    assert found[0].startswith(("CPU", "CUDA", "MPS", "unknown"))


def _cut(view: QAbstractItemView, headers) -> list[str]:
    """The headers and cell texts of `view` wider than their column (in the view's font)."""
    model, cells, header_font = view.model(), view.fontMetrics(), view.horizontalHeader().fontMetrics()
    cut = [h for c, h in enumerate(headers) if header_font.horizontalAdvance(h) + 8 > view.columnWidth(c)]
    for r in range(model.rowCount()):
        for c in range(1, len(headers)):  # the first column stretches (the list) or has a swatch (the table)
            text = str(model.index(r, c).data() or "")
            if cells.horizontalAdvance(text) + 4 > view.columnWidth(c):
                cut.append(text)
    return cut


def test_at_their_measured_widths_no_column_of_the_list_or_the_keypoint_table_is_cut(open_window, dataset, qtbot):
    window = open_window(dataset["csv"], dataset["pred"])
    doc = window.doc
    window.state.set_current_row(0)
    for dock, widget in ((window.list_dock, window.list_panel), (window.keypoint_dock, window.keypoint_table)):
        dock.setFloating(True)
        dock.resize(widget.needed_width() + 24, 600)
    doc.review[:3] = 1  # "✓ reviewed", the widest review text
    window.list_model.layoutChanged.emit()
    qtbot.wait(50)
    views = ((window.list_panel.list_view, LIST_HEADERS), (window.keypoint_table, TABLE_HEADERS))
    for view, headers in views:
        assert view.horizontalScrollBar().maximum() == 0, f"{type(view).__name__} scrolls sideways"
        assert _cut(view, headers) == []
    assert np.isfinite(doc.ne).any()  # the NE column holds numbers, not only dashes
