"""Take the README's studio screenshots, reproducibly.

    xvfb-run -s "-screen 0 1600x1000x24" .venv/bin/python docs/screenshots/take.py
    (or QT_QPA_PLATFORM=offscreen .venv/bin/python docs/screenshots/take.py)

Generates a small synthetic demo data set (fixed seed) in a temporary folder, opens it in
the studio — with predictions from `--predictions` or `--model`, or the demo model when it
is installed, else a mean-shape baseline (each category's mean layout placed in the
annotated box: a weak predictor, so the errors are real errors) — and the real `tests/data/fashionai/val.csv` (annotations without images),
and saves the window as PNGs in this folder. Settings and data folders are temporary, so
the user's own studio state is untouched.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from capture import REPO, new_window, private_folder, shot, wait, wait_for

HERE = Path(__file__).resolve().parent


def mean_shape_predictions(csv: Path, out: Path) -> Path:
    """A weak but genuine predictor for the pictures when no model is at hand: each category's
    mean keypoint layout (relative to the keypoint box), placed in the image's annotated box."""
    import numpy as np

    from engine.io.annotations import Annotations, load_annotations, save_annotations
    from engine.schema import CATEGORY_MASK

    gt = load_annotations(csv)
    present = gt.visibility >= 0
    xy = np.where(present[..., None], gt.coords, np.nan)
    lo = np.nanmin(xy, axis=1, keepdims=True)
    size = np.maximum(np.nanmax(xy, axis=1, keepdims=True) - lo, 1)
    rel = (xy - lo) / size
    cats = gt.categories.astype(np.int64)
    pred = np.full_like(gt.coords, -1)
    for c in np.unique(cats):
        rows = cats == c
        mean = np.nanmean(rel[rows], axis=0)
        ks = CATEGORY_MASK[c]
        pred[np.ix_(rows, ks)] = (lo[rows] + mean[None] * size[rows])[:, ks]
    vis = np.where(CATEGORY_MASK[cats], 1, -1)
    save_annotations(Annotations.from_arrays(gt.image_ids, cats, np.rint(pred), vis), out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE))
    parser.add_argument("--n", type=int, default=120, help="demo images to generate")
    parser.add_argument("--predictions", help="predictions CSV for the demo data set")
    parser.add_argument("--model", help="model package to predict the demo data set with")
    args = parser.parse_args()

    tmp = private_folder()
    from PySide6.QtCore import QPoint, Qt
    from PySide6.QtTest import QTest
    from PySide6.QtWidgets import QAbstractItemView

    from engine.synth import generate_dataset
    from fkp_studio.app import demo_model, init_application

    app = init_application()  # noqa: F841 (kept alive for the windows)
    out = Path(args.out)

    # --- the demo data set -------------------------------------------------------------
    demo = tmp / "demo"
    csv = generate_dataset(demo, args.n, seed=0, hard_fraction=0.15)
    model = args.model or (None if args.predictions else demo_model())
    predictions = args.predictions
    if predictions is None and model is None:
        predictions = mean_shape_predictions(csv, demo / "mean_shape_predictions.csv")
        print("no model: predictions are the mean garment shape placed in the annotated box")
    w = new_window()
    w.open_dataset(csv, predictions, model)
    wait_for(w.datasetOpened)
    wait_for(w.predictionsReady)
    typical = w.list_model.rowCount() // 4  # a typical error, not the very worst
    w.list_panel.list_view.selectRow(typical)
    w.list_panel.list_view.scrollTo(w.list_model.index(typical, 0), QAbstractItemView.PositionAtCenter)
    wait(800)
    w.editing.select_keypoint(next(k for k in range(24) if w.doc.ann.visibility[w.current_row, k] == 1))
    shot(w, out / "studio-demo.png")

    # Drag a point with the mouse, as a user would: the title shows the unsaved state.
    row, k = w.current_row, w.editing.selected_k
    x, y = w.doc.ann.coords[row, k]
    start = w.canvas.mapFromScene(float(x), float(y))
    vp = w.canvas.viewport()
    QTest.mousePress(vp, Qt.LeftButton, pos=start)
    for i in range(1, 6):
        QTest.mouseMove(vp, start + QPoint(6 * i, 4 * i))
    QTest.mouseRelease(vp, Qt.LeftButton, pos=start + QPoint(30, 20))
    w.canvas.zoom_by(1.6)
    w.canvas.centerOn(*(float(v) for v in w.doc.ann.coords[row, k] + (60, 120)))
    shot(w, out / "studio-edit.png")
    w.undo_stack.setClean()
    w.close()

    # --- the real validation annotations (no images) ----------------------------------------
    val = tmp / "val" / "val.csv"
    val.parent.mkdir()
    shutil.copy(REPO / "tests" / "data" / "fashionai" / "val.csv", val)
    w = new_window()
    w.open_dataset(val)
    wait_for(w.datasetOpened)
    w.problems_dock.raise_()
    w.list_panel.list_view.selectRow(1)
    wait(500)
    w.editing.select_keypoint(next(k for k in range(24) if w.doc.ann.visibility[w.current_row, k] == 0))
    shot(w, out / "studio-val.png")
    w.undo_stack.setClean()
    w.close()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
