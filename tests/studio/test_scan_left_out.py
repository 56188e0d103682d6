"""A folder of photos with a file the annotation file cannot hold: the other photos open, and the
one left out is listed in the Problems panel, named."""

from __future__ import annotations

import numpy as np

from engine.io.images import write_jpeg


def test_a_photo_left_out_by_the_scan_is_listed_in_the_problems_panel(qtbot, tmp_path):
    from fkp_studio.main_window import MainWindow

    images = tmp_path / "shoot" / "Images" / "skirt"
    images.mkdir(parents=True)
    picture = np.full((40, 40, 3), 128, np.uint8)
    write_jpeg(images / "good.jpg", picture)
    write_jpeg(images / "bad,name.jpg", picture)  # a comma: no FashionAI row can hold it
    window = MainWindow()
    window.questions.unsaved = lambda name: "discard"
    qtbot.addWidget(window)
    window.show()
    with qtbot.waitSignal(window.datasetOpened, timeout=10000):
        window.open_images(tmp_path / "shoot" / "Images")
    assert [str(i) for i in window.doc.ann.image_ids] == ["Images/skirt/good.jpg"]
    table = window.problems
    texts = [" ".join(table.item(r, c).text() for c in range(table.columnCount()) if table.item(r, c))
             for r in range(table.rowCount())]
    assert len(texts) == 1 and "bad,name.jpg" in texts[0]
    assert window.problems_dock.windowTitle() == "Problems (1)"
