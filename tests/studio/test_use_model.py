"""File › Predict with model: a package is checked (loaded) on the model thread before it becomes
the data set's model version; a refused one is an error naming the file, and nothing changes."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("content", [b"not a model package\n" * 50, b"PK\x03\x04" + b"\0" * 200])
def test_a_refused_model_package_never_becomes_the_active_version(open_window, dataset, qtbot, tmp_path, content):
    """Issue 30 item 18 (last sentence), in the studio: a broken package is refused with one line
    naming the user's file; no model version is made or activated, no prediction runs."""
    bad = tmp_path / "broken.fkpmodel"
    bad.write_bytes(content)
    window = open_window(dataset["csv"])
    errors = []
    window.show_error = lambda title, text: errors.append((title, text))
    window.predict.use_model_package(bad)
    qtbot.waitUntil(lambda: bool(errors), timeout=30000)
    qtbot.waitUntil(lambda: not window.model_thread.busy, timeout=30000)
    ws = window.doc.workspace
    assert ws.active_model_version() is None and ws.model_versions() == []
    ((title, text),) = errors
    assert title == "Cannot use the model" and text.startswith(str(bad)) and "\n" not in text
    assert "Error:" not in text and ".py:" not in text  # no exception type, no source line
    assert window.doc.predictions is None
