"""The retrain dialog's two modes: the hard set keeps RetrainConfig()'s defaults; "all reviewed
images" switches to the domain-adaptation defaults (RetrainConfig.adapt())."""

from __future__ import annotations

import dataclasses

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
