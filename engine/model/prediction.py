"""Prediction as one workflow, for `fkp predict` and the studio's predict job: the model loaded
(a package, or a folder written by `fkp export-onnx`), the CPU threads chosen, every batch
predicted within memory (a batch out of memory predicted again in halves) and rounded exactly as
its files will hold it (`engine.io.predictions`). The callers only say where the images come
from and where the results go."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence

import numpy as np

from engine.io.annotations import Annotations
from engine.io.predictions import Predictions, as_saved
from engine.model.device import out_of_memory_message, predict_threads, torch_threads
from engine.model.package import TwoStageModel, load_model
from engine.model.pipeline import Pipeline, predict_within_memory


class PredictionError(Exception):
    """The model cannot predict here (one line naming what ran out), shown as it is."""


def prediction_threads(threads: int | None = None) -> contextlib.AbstractContextManager:
    """Torch's CPU threads while predicting on this thread: `threads`, or the engine's count
    (`device.predict_threads`); given back after (OpenMP counts threads per calling thread)."""
    return torch_threads(threads or predict_threads())


def load_for_prediction(path: str | os.PathLike, threads: int | None = None) -> tuple[TwoStageModel, str | None]:
    """(the model at `path`, the torch device it predicts on best unless told: None = the default).

    A folder written by `fkp export-onnx` runs on ONNX Runtime, which picks its own device;
    torch then only moves tensors between the networks, which the CPU does best."""
    from engine.model.onnx_runtime import is_onnx_model, load_onnx_model

    if is_onnx_model(path):
        return load_onnx_model(path, threads=threads), "cpu"
    return load_model(path), None


@contextlib.contextmanager
def out_of_memory_named(phase: str) -> Iterator[None]:
    """Running out of memory inside raises `PredictionError`: one line naming `phase`."""
    try:
        yield
    except (RuntimeError, MemoryError) as e:
        message = out_of_memory_message(e, phase)
        if message is None:
            raise
        raise PredictionError(message) from None


def predict_as_saved(pipeline: Pipeline, root: str | os.PathLike, image_ids: Sequence[str],
                     categories: Sequence[int | None] | None = None,
                     on_progress: Callable[[int, int], None] | None = None,
                     should_stop: Callable[[], bool] | None = None) -> Iterator[Predictions]:
    """`predict_within_memory`'s batches with coordinates and confidences as saved (`as_saved`)."""
    for batch in predict_within_memory(pipeline, root, image_ids, categories, on_progress=on_progress,
                                       should_stop=should_stop):
        yield batch.as_saved()


def predict_split_as_saved(pipeline: Pipeline, root: str | os.PathLike, image_ids: Sequence[str],
                           categories: Sequence[int | None] | None = None,
                           on_progress: Callable[[int, int], None] | None = None
                           ) -> tuple[Annotations, np.ndarray, dict[str, str]] | None:
    """Every image, shared by the ranks under torchrun (`predict_sharded`), as saved; rank 0
    gets (predictions, scores, errors) of all, in order, the other ranks None."""
    from engine.model.distributed import predict_sharded

    merged = predict_sharded(pipeline, root, image_ids, categories, on_progress=on_progress)
    if merged is None:
        return None
    pred, scores, errors = merged
    coords, scores = as_saved(pred.coords, pred.visibility, scores)
    pred = Annotations.from_arrays(list(pred.image_ids), np.asarray(pred.categories, np.int64), coords,
                                   pred.visibility)
    return pred, scores, errors
