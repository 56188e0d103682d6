"""The synthetic FashionAI data every model, test and demo runs on: garments with known
keypoints (`garments.py`), then data sets on disk (`dataset.py`).

`engine.synth` is its public API: `render_sample` draws one garment, `generate_dataset` a data set.
"""

from engine.synth.dataset import contact_sheet, draw_keypoints, generate_dataset, load_hard_kinds, load_layouts
from engine.synth.garments import (
    HARD_KINDS, REAL_OCCLUSION_RATES, Sample, canonical_keypoints, hard_kinds_for, render_sample,
)

__all__ = [
    "HARD_KINDS", "REAL_OCCLUSION_RATES", "Sample", "canonical_keypoints", "contact_sheet",
    "draw_keypoints", "generate_dataset", "hard_kinds_for", "load_hard_kinds", "load_layouts",
    "render_sample",
]
