"""The actions table: every action exists once by id, with a shortcut no other action takes."""

from __future__ import annotations

from collections import Counter

from PySide6.QtGui import QKeySequence

from fkp_studio.views.actions import ACTIONS, TOOLBAR


def test_every_action_is_made_once_by_id_and_no_two_share_a_shortcut(qtbot):
    from fkp_studio.main_window import MainWindow

    window = MainWindow()
    qtbot.addWidget(window)
    assert set(window.action_by_id) == {a.id for a in ACTIONS} | {"edit.undo", "edit.redo"}
    assert {i for i in TOOLBAR if i} <= set(window.action_by_id)
    keys = Counter((spec.canvas_only, QKeySequence(k).toString()) for spec in ACTIONS for k in spec.shortcuts)
    assert [k for k, n in keys.items() if n > 1] == []
    menus = {m.title().replace("&", ""): [a.text() for a in m.actions() if a.text()] for m in
             (a.menu() for a in window.menuBar().actions())}
    assert menus["Model"][:2] == ["Predict &all", "Predict &selection"] and "&Save annotations" in menus["File"]
    # Triggered by id, an action runs its slot.
    window.action_by_id["view.show_predictions"].trigger()
    assert not window.canvas.show_predictions
