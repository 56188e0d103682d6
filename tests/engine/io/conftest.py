"""What the journal and lock tests share: a one-row annotation file in a data root."""

from __future__ import annotations

import pytest


@pytest.fixture
def csv(tmp_path):
    """<tmp>/Annotations/train.csv holding one blouse (ids and categories only)."""
    path = tmp_path / "Annotations" / "train.csv"
    path.parent.mkdir()
    path.write_text("image_id,image_category\nImages/a.jpg,blouse\n")
    return path
