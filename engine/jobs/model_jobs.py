"""The model jobs of the hard-example loop, as `JobRunner` functions: predict, evaluate, retrain.

Each `*_job(...)` takes what the job needs (a snapshot of the annotations, taken by the caller
on its own thread) and returns `fn(ctx)` for `JobRunner.submit`. They read and write the
workspace (`engine.io.workspace.Workspace`): predictions are saved per model version, a finished
retrain becomes a new model version. Every write is atomic and happens only once the work it
records is complete, so a failing or cancelled job leaves the workspace as it was (a
cancelled predict keeps the batches it finished).

Out of memory: a prediction batch that does not fit is predicted again in halves (the smaller
batch is kept for the rest of the run), down to one image, which then gets its own error like an
unreadable image; a retrain that runs out of memory fails with one line naming the phase.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from engine.io.annotations import Annotations
from engine.io.model_files import package_file
from engine.io.predictions import Predictions
from engine.jobs.runner import JobCancelled, JobContext, JobError
from engine.analysis.ne import evaluate, pooled_ne
from engine.training.retrain_config import RetrainConfig
from engine.io.workspace import Workspace


def ensure_active_model(workspace: Workspace, default_package: str | os.PathLike | None) -> str | None:
    """The active version; with none yet, `default_package` is imported as the first version and
    activated (`use_model_package`: a package `load_model` refuses never becomes one)."""
    version = workspace.active_model_version()
    if version is not None or default_package is None:
        return version
    return use_model_package(workspace, default_package)


def use_model_package(workspace: Workspace, package: str | os.PathLike) -> str:
    """Import a model package (once) and make it the active version. It is loaded first: a
    package that is refused (`ModelPackageError` naming the file) becomes no version and the
    active one stays as it was. Loads torch: run it on the model thread (`use_package_job`)."""
    source = package_file(package)
    version = workspace.import_model(package, check=lambda copy: _check_package(copy, source))
    workspace.set_active_model(version)
    return version


def use_package_job(workspace: Workspace, package: str | os.PathLike):
    """`use_model_package` as a `JobRunner` function; returns {"version"}."""
    def run(ctx: JobContext) -> dict[str, Any]:
        ctx.progress(0, 1, f"checking model {Path(package).name}")
        return {"version": use_model_package(workspace, package)}

    return run


def _check_package(copy: Path, source: Path) -> None:
    """Raise `ModelPackageError` naming `source` unless its `copy` loads as a model package."""
    from engine.model.package import ModelPackageError, load_model

    try:
        load_model(copy)
    except ModelPackageError as e:
        message = str(e)
        # The copy sits in the workspace's hidden staging folder: name the file the user chose.
        if message.startswith(str(copy)):
            message = f"{source}{message[len(str(copy)):]}"
        raise ModelPackageError(message) from None


def predict_job(workspace: Workspace, version: str, annotations_path: str | os.PathLike, annotations: Annotations,
                rows: np.ndarray | None = None, device: str | None = None, batch_size: int = 8,
                detector_chooses: np.ndarray | None = None):
    """Predict annotation rows `rows` (default all) with model `version`; each batch is sent as a
    `Predictions` partial (its `rows` annotation rows, its `source` "model VERSION", exactly as the
    version's predictions file will hold it); they are merged into the version's saved predictions.
    The workflow is `fkp predict`'s (`engine.model.prediction`): the thread count, a batch out
    of memory predicted again in halves, every batch rounded as saved.
    Where `detector_chooses` (bool per annotation row) is set, the detector's class is the
    category (images without one); elsewhere the annotation's category.

    Returns {"version", "path", "predicted", "errors", "batch_size" (the one it ended with)}."""
    rows = np.arange(len(annotations)) if rows is None else np.asarray(rows, np.int64)

    def run(ctx: JobContext) -> dict[str, Any]:
        from engine.model.prediction import prediction_threads

        # Where the studio's model thread gets its CPU thread count: set on that thread (OpenMP
        # counts threads per calling thread) for this job, given back after.
        with prediction_threads():
            return predict(ctx)

    def predict(ctx: JobContext) -> dict[str, Any]:
        from engine.model.pipeline import Pipeline
        from engine.model.prediction import (PredictionError, load_for_prediction, out_of_memory_named,
                                             predict_as_saved)

        phase = f"loading model {version}"
        ctx.progress(0, len(rows), phase)
        try:
            with out_of_memory_named(phase):
                model, default_device = load_for_prediction(workspace.model_path(version))
                pipeline = Pipeline(model, device=device or default_device, batch_size=batch_size)
        except PredictionError as e:
            raise JobError(str(e)) from None
        ids = [str(annotations.image_ids[r]) for r in rows]
        chooses = np.zeros(len(annotations), bool) if detector_chooses is None else np.asarray(detector_chooses, bool)
        cats = [None if chooses[r] else int(annotations.categories[r]) for r in rows]
        done: list[Predictions] = []
        for batch in predict_as_saved(pipeline, workspace.root, ids, cats, should_stop=ctx.should_stop,
                                      on_progress=lambda d, t: ctx.progress(d, t, f"predicting with {version}")):
            batch.rows, batch.source = rows[batch.rows], model_source(version)
            done.append(batch)
            ctx.partial(batch)
        merged = Predictions.concat(done)
        path = _merge_and_save(workspace, version, annotations_path, annotations, merged) if done else None
        ctx.check_cancelled()
        return {"version": version, "path": path, "predicted": len(merged), "errors": merged.errors,
                "batch_size": pipeline.batch_size}

    return run


def model_source(version: str) -> str:
    """The `Predictions.source` of what model `version` predicted."""
    return f"model {version}"


def _merge_and_save(workspace: Workspace, version: str, annotations_path, annotations: Annotations,
                    new: Predictions) -> Path:
    """The version's saved predictions with these rows replaced or added, written atomically."""
    new_ids = [str(annotations.image_ids[r]) for r in new.rows]
    new_cats, coords, vis, scores = new.categories, new.coords, new.visibility, new.scores
    saved = workspace.load_predictions(version, annotations_path)
    if saved is not None:
        old, old_scores = saved
        keep = ~np.isin(np.asarray(old.image_ids, dtype=str), np.asarray(new_ids, dtype=str))
        new_ids = [str(i) for i in np.asarray(old.image_ids)[keep]] + new_ids
        new_cats = np.concatenate([np.asarray(old.categories, np.int64)[keep], new_cats])
        coords = np.concatenate([old.coords[keep], coords])
        vis = np.concatenate([old.visibility[keep], vis])
        scores = np.concatenate([old_scores[keep], scores])
    # Rows in annotation-file order, so the file reads like the data set.
    order_of = annotations.id_index()
    order = np.argsort([order_of.get(i, len(order_of)) for i in new_ids], kind="stable")
    pred = Annotations.from_arrays([new_ids[i] for i in order], new_cats[order], coords[order], vis[order])
    return workspace.save_predictions(version, annotations_path, pred, scores[order])


class RefinerHolder:
    """The model loaded for refinement after a correction, kept between corrections (a load per
    drag would take seconds); only the jobs on the model thread touch it."""

    def __init__(self) -> None:
        self.version: str | None = None
        self.refiner: Any = None


def refine_job(holder: RefinerHolder, workspace: Workspace, version: str, image_id: str, category: int,
               predicted: Predictions, fixed: np.ndarray, fixed_coords: np.ndarray):
    """Predict one image's untouched points again from the points set by hand (`fixed` (24,) bool,
    at `fixed_coords` (24, 2)), with model `version` (`engine.model.correction`). `predicted` is
    the image's current prediction (one row). Returns {"prediction": that row with every point
    that is neither set nor absent predicted again, as saved; "hints": whether the model's net
    took the set points as hints}."""

    def run(ctx: JobContext) -> dict[str, Any]:
        from engine.io.images import ImageError, read_image
        from engine.model.correction import CorrectionRefiner
        from engine.model.onnx_runtime import is_onnx_model
        from engine.model.prediction import load_for_prediction, prediction_threads

        with prediction_threads():
            if holder.version != version:
                path = workspace.model_path(version)
                if is_onnx_model(path):
                    raise JobError(f"model {version} is an ONNX export: refinement after a correction needs "
                                   "a model package")
                model, device = load_for_prediction(path)
                holder.refiner, holder.version = CorrectionRefiner(model, device), version
            try:
                image = read_image(workspace.image_path(image_id), workspace.root)
            except ImageError as e:
                raise JobError(str(e)) from None
            out = holder.refiner.refine(f"{image_id}\0{category}", image, category,
                                        (predicted.coords[0], predicted.visibility[0], predicted.scores[0]),
                                        fixed, fixed_coords)
        part = predicted.take([0])
        again = ~np.asarray(fixed, bool) & (part.visibility[0] >= 0)
        part.coords[0, again], part.visibility[0, again] = out.coords[again], out.visibility[again]
        part.scores[0, again] = out.scores[again]
        return {"prediction": part.as_saved(), "hints": holder.refiner.uses_hints}

    return run


def evaluate_job(workspace: Workspace, version: str, annotations_path: str | os.PathLike, annotations: Annotations,
                 hard_ids: list[str] | None = None):
    """Score the saved predictions of `version` against the annotation snapshot.

    Returns {"version", "ne", "per_category", "hard", "images"} (NE as fractions)."""

    def run(ctx: JobContext) -> dict[str, Any]:
        saved = workspace.load_predictions(version, annotations_path)
        if saved is None:
            raise FileNotFoundError(f"no predictions of model {version} for {Path(annotations_path).name}; predict first")
        result = evaluate(annotations, saved[0], intersect=True)
        hard = math.nan
        if hard_ids:
            rows = np.flatnonzero(np.isin(np.asarray(annotations.image_ids, dtype=str), list(hard_ids)))
            hard = pooled_ne(result.per_image_errors[rows])
        return {"version": version, "ne": result.ne, "hard": hard, "images": result.n_images,
                "per_category": {k: v["ne"] for k, v in result.per_category.items()}}

    return run


def retrain_job(workspace: Workspace, annotations: Annotations, hard_ids: list[str],
                config: RetrainConfig = RetrainConfig(), base_version: str | None = None):
    """Retrain the active (or `base_version`) model on the hard set of the annotation snapshot.

    Partials are {"step", "steps", "loss"}; the result is {"version" (new, not active),
    "base_version", "report"}. The workflow is `fkp retrain`'s (`retrain.retrain_and_save`): the
    held-out ids are chosen on the first retrain and kept once its version is saved.
    Cancelled or failed, no version is added."""

    def run(ctx: JobContext) -> dict[str, Any]:
        from engine.model.package import load_model
        from engine.training.retrain import RetrainCancelled, RetrainError, retrain_and_save, save_retrained

        base = base_version or workspace.active_model_version()
        if base is None:
            raise FileNotFoundError(f"{workspace.state_dir}: no active model to retrain")
        model = load_model(workspace.model_path(base))

        def add_version(result) -> str:
            ctx.check_cancelled()  # cancelled after the last step: still no version
            return workspace.add_model_version(lambda d: save_retrained(result, d, parent=base))

        try:
            result, version = retrain_and_save(
                model, workspace.root, annotations, hard_ids, config, workspace.load_holdout(), save=add_version,
                keep_holdout=workspace.save_holdout,
                on_step=lambda s, n, loss: ctx.partial({"step": s, "steps": n, "loss": loss}),
                on_progress=ctx.progress, should_stop=ctx.should_stop)
        except RetrainCancelled:
            raise JobCancelled() from None
        except RetrainError as e:  # its message is the user's: "out of GPU memory during ...: try ..."
            raise JobError(str(e)) from None
        return {"version": version, "base_version": base, "report": result.report()}

    return run
