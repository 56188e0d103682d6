"""A hard-set file with a row the studio cannot read: the row is named, the others are kept, and
the next change to the hard set does not write the unread row away (the file is kept aside)."""

from __future__ import annotations

from PySide6.QtCore import Qt


def test_a_bad_hard_set_row_is_named_and_nothing_is_lost_on_the_next_change(open_window, dataset, qtbot):
    window = open_window(dataset["csv"])
    ws = window.doc.workspace
    ids = [str(i) for i in window.doc.ann.image_ids]
    ws.save_hard_set({ids[0]: "manual", ids[2]: "worst-ne"})
    original = ws.hard_set_path.read_text() + f"{ids[3]},because\n"
    ws.hard_set_path.write_text(original)
    errors: list[str] = []
    window.show_error = lambda title, text: errors.append(f"{title}: {text}")
    with qtbot.waitSignal(window.datasetOpened, timeout=10000):
        window.open_dataset(dataset["csv"])
    assert len(errors) == 1 and "row 4" in errors[0] and "because" in errors[0]
    assert window.state.hard_set.members() == sorted([ids[0], ids[2]])
    window.list_panel.go_to(1)
    qtbot.waitUntil(lambda: window.current_row == 1, timeout=3000)
    window.canvas.setFocus()
    qtbot.keyClick(window.canvas, Qt.Key_H)  # add the current image
    assert ws.load_hard_set() == {ids[0]: "manual", ids[1]: "manual", ids[2]: "worst-ne"}
    kept = list(ws.hard_set_path.parent.glob("hard_set.damaged-*.csv"))
    assert [k.read_text() for k in kept] == [original]
