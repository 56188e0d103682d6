"""The retrain dialog's two modes: the hard set keeps RetrainConfig()'s defaults; "all reviewed
images" switches to the domain-adaptation defaults (RetrainConfig.adapt())."""

from __future__ import annotations

import dataclasses
import math

from PySide6.QtCore import Qt

from engine.io.annotations import load_annotations, save_annotations
from engine.training.retrain_config import RetrainConfig


def test_training_on_reviewed_images_defaults_to_the_adapt_mode(open_window, dataset, qtbot):
    window = open_window(dataset["csv"])
    dialog = window.open_retrain_dialog()
    hard, adapt = RetrainConfig(), RetrainConfig.adapt()
    config = dialog.config()
    assert config == dataclasses.replace(hard, batch_size=None)
    assert dialog.steps.value() == hard.steps and abs(dialog.lr.value() - hard.lr) < 1e-9
    dialog.source.setCurrentIndex(dialog.source.findData("reviewed"))
    config = dialog.config()
    assert config == dataclasses.replace(adapt, batch_size=None)
    assert dialog.steps.value() == adapt.steps and abs(dialog.hard_share.value() - adapt.hard_share) < 1e-9
    assert "Adapting to the reviewed images' domain" in dialog.info.text()
    dialog.steps.setValue(17)  # the user's own settings go with the mode
    assert dialog.config().steps == 17 and dialog.config().mode == "adapt"
    dialog.source.setCurrentIndex(dialog.source.findData("hard"))
    assert dialog.config() == RetrainConfig(steps=hard.steps, batch_size=None)
    dialog.close()


def test_the_reviewed_mode_names_what_it_leaves_out_and_counts_what_it_trains_on(open_window, dataset, qtbot):
    # An image reviewed with no annotated point (confirmed) teaches nothing: the dialog names it
    # and counts the images the retrain learns from, in the words of its mode.
    ann = load_annotations(dataset["csv"])
    ann.visibility[2] = -1
    ann.coords[2] = -1
    save_annotations(ann, dataset["csv"])
    window = open_window(dataset["csv"])
    window.questions.confirm = lambda title, text: True
    window.canvas.setFocus()
    for row in (0, 1, 2):
        window.state.go_to(row)
        qtbot.keyClick(window.canvas, Qt.Key_Return)
    assert len(window.state.training_ids("reviewed")) == 3
    dialog = window.open_retrain_dialog()
    dialog.source.setCurrentIndex(dialog.source.findData("reviewed"))
    text = dialog.info.text()
    assert "on 2 reviewed images" in text and "1 reviewed image(s) without an annotated point" in text
    assert str(ann.image_ids[2]) in text and dialog.windowTitle() == "Retrain on the reviewed images"
    dialog.close()


def _report(before: float, after: float, held_out: int) -> dict:
    """What the retrain job reports when it ends (the dialog's input), for the images trained on."""
    ne = {"overall": math.nan, "per_category": {}}
    return {"version": "v002", "base_version": "v001",
            "report": {"before": {**ne, "hard": before}, "after": {**ne, "hard": after}, "seconds": 3.0,
                       "hard_images": 4, "replay_images": 0, "holdout_images": held_out}}


def test_a_result_nothing_shows_better_cannot_be_accepted(open_window, dataset, qtbot):
    window = open_window(dataset["csv"])
    dialog = window.open_retrain_dialog()
    dialog.source.setCurrentIndex(dialog.source.findData("reviewed"))
    discarded = []
    dialog.discardRequested.connect(discarded.append)
    dialog.on_started()
    dialog.on_finished(_report(0.0089, 0.0193, held_out=0))  # the case: 0.89 -> 1.93, nothing held out
    assert not dialog.accept_button.isEnabled() and dialog.discard_button.isDefault()
    assert "Nothing was held out and the reviewed images got worse" in dialog.status.text()
    assert "reviewed images" in dialog.table_values()
    qtbot.mouseClick(dialog.discard_button, Qt.LeftButton)
    assert discarded == ["v002"]
    dialog.on_started()
    dialog.on_finished(_report(0.0193, 0.0089, held_out=0))  # better on what it trained on: the user decides
    assert dialog.accept_button.isEnabled() and dialog.accept_button.isDefault()
    dialog.close()


def test_progress_says_how_long_is_left_once_a_few_steps_ran(open_window, dataset, qtbot):
    window = open_window(dataset["csv"])
    dialog = window.open_retrain_dialog()
    dialog.on_started()
    dialog.on_progress(1, 100, "keypoint network")
    assert "left" not in dialog.status.text()  # one step says nothing of the pace
    dialog._started_at -= 10.0                 # ten seconds for the first ten steps
    dialog.on_progress(10, 100, "keypoint network")
    assert dialog.status.text().startswith("keypoint network, about ") and dialog.status.text().endswith(" left")
    dialog.close()
