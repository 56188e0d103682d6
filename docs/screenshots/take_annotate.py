"""Take the README's screenshots of annotating new photos, reproducibly.

    xvfb-run -s "-screen 0 1600x1000x24" .venv/bin/python docs/screenshots/take_annotate.py

A folder of synthetic photos (fixed seed): a few under `Images/skirt/`, the rest under
`Images/new/` (no category). Opened in the studio as new annotations (`studio-new-images.png`:
the photos without a category listed with "—"), then predicted with the demo model, which gives
them the detector's class, the first image accepted with Enter, and an image with points
predicted occluded on show (`studio-annotate.png`); the next image of the review queue with a
predicted point dragged into place (`studio-review-flow.png`), and the `?` sheet of every key
(`studio-shortcuts.png`).
Settings and data live in a temporary folder: the user's own studio state is untouched.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from capture import new_window, private_folder, shot, wait, wait_for

HERE = Path(__file__).resolve().parent


def write_photos(root: Path, n: int) -> None:
    """`n` rendered garments of every category: a quarter of the skirts in their category folder."""
    import numpy as np

    from engine.io.images import write_jpeg
    from engine.schema import CATEGORIES
    from engine.synth import render_sample

    rng = np.random.default_rng(2026)
    for i in range(n):
        category = CATEGORIES[i % len(CATEGORIES)]
        folder = "skirt" if category == "skirt" and i % 4 == 3 else "new"
        path = root / "Images" / folder / f"photo_{i:03d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        write_jpeg(path, render_sample(rng, category, (256, 256)).image)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(HERE))
    parser.add_argument("--n", type=int, default=40, help="photos to generate")
    args = parser.parse_args()

    tmp = private_folder()
    import numpy as np
    from PySide6.QtCore import QPoint, Qt
    from PySide6.QtTest import QTest

    from fkp_studio.app import demo_model, init_application

    app = init_application()  # noqa: F841 (kept alive for the windows)
    out = Path(args.out)

    root = tmp / "shoot"
    write_photos(root, args.n)
    w = new_window()
    w.open_images(root / "Images")
    wait_for(w.datasetOpened)
    w.list_panel.go_to(0)
    shot(w, out / "studio-new-images.png")

    w.predict.use_model_package(demo_model())
    wait_for(w.predict.predictionsDone)
    w.list_panel.go_to(0)
    wait(800)
    w.activateWindow()
    w.canvas.setFocus()
    QTest.keyClick(w.canvas, Qt.Key_Return)  # accept the prediction, marked reviewed, on to the next in the queue
    wait(600)
    # On show: an image with points the visibility stage predicts occluded (dashed rings).
    p = w.doc.predictions
    w.list_panel.go_to(next(r for r in range(len(w.doc)) if (p.visibility[r] == 0).any() and w.doc.review[r] == 0))
    shot(w, out / "studio-annotate.png")

    # The review flow: a category key, then a predicted point pressed and dragged (accepted and
    # moved in one gesture), the list's Δ and marks, the undo step in the toolbar.
    row = int(w.doc.review_queue()[0])
    w.list_panel.go_to(row)
    wait(600)
    w.canvas.setFocus()
    QTest.keyClick(w.canvas, Qt.Key_1 + int(w.doc.categories[row]))  # the category it has: no re-predict
    k = int(np.flatnonzero(w.doc.predictions.visibility[row] >= 0)[0])
    start = w.canvas.mapFromScene(*(float(v) for v in w.doc.predictions.coords[row, k]))
    QTest.mousePress(w.canvas.viewport(), Qt.LeftButton, pos=start)
    for step in range(1, 6):
        QTest.mouseMove(w.canvas.viewport(), start + QPoint(5 * step, 3 * step))
    QTest.mouseRelease(w.canvas.viewport(), Qt.LeftButton, pos=start + QPoint(25, 15))
    shot(w, out / "studio-review-flow.png")

    w.action_by_id["help.shortcuts"].trigger()  # the `?` sheet
    wait(400)
    shot(w.shortcut_sheet, out / "studio-shortcuts.png")
    w.shortcut_sheet.close()
    w.undo_stack.setClean()
    w.close()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
