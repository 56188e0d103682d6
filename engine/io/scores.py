"""Prediction confidences on disk: `pred.scores.csv` beside `pred.csv`, an `image_id` column and
one column per keypoint (the share of Hough votes near the chosen peak, 3 decimals; -1 where
the category lacks the keypoint or the image could not be read)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from engine.io.annotations import Annotations, save_annotations
from engine.io.files import atomic_write_text, check_writable
from engine.io.predictions import saved_scores
from engine.schema import KEYPOINTS


def scores_path(predictions_csv: str | os.PathLike) -> Path:
    """Where the confidences of a predictions CSV live: `pred.csv` -> `pred.scores.csv`."""
    p = Path(predictions_csv)
    return p.with_name(p.stem + ".scores.csv")


def save_scores(path: str | os.PathLike, image_ids: Sequence[str], scores: np.ndarray) -> None:
    """Write `image_id` + 24 confidences (3 decimals; -1 where the category lacks the keypoint)."""
    frame = pd.DataFrame(saved_scores(scores).astype(np.float64), columns=list(KEYPOINTS))
    frame.insert(0, "image_id", [str(i) for i in image_ids])
    atomic_write_text(path, frame.to_csv(index=False, float_format="%.3f", lineterminator="\n"))


def load_scores(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Read a scores file -> (image ids, (N, 24) float32); raises ValueError naming the file."""
    try:
        frame = pd.read_csv(path, dtype={"image_id": str})
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise ValueError(f"{path}: cannot read scores file ({e})") from None
    if list(frame.columns) != ["image_id", *KEYPOINTS]:
        raise ValueError(f"{path}: not a scores file (expected columns image_id + the 24 keypoints)")
    return frame["image_id"].tolist(), frame[list(KEYPOINTS)].to_numpy(np.float32)


# What a CSV row and its scores row take on disk, at most: the output check's estimate.
ROW_BYTES = 1024


def check_prediction_outputs(path: str | os.PathLike, n_images: int) -> None:
    """Raise OSError before the work when a predictions CSV or its scores could not be written."""
    check_writable(path, ROW_BYTES * n_images)
    check_writable(scores_path(path), 0)


def write_predictions(path: str | os.PathLike, predictions: Annotations, scores: np.ndarray) -> None:
    """A predictions CSV and its scores beside it; the scores first, so a predictions file on
    disk always has matching scores."""
    save_scores(scores_path(path), list(predictions.image_ids), scores)
    save_annotations(predictions, path)
