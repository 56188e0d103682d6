"""Take the README's screenshots of annotating new photos, reproducibly.

    xvfb-run -s "-screen 0 1600x1000x24" .venv/bin/python docs/screenshots/take_annotate.py

A folder of synthetic photos (fixed seed): a few under `Images/skirt/`, the rest under
`Images/new/` (no category). Opened in the studio as new annotations (`studio-new-images.png`:
the photos without a category listed with "—"), then predicted with the demo model, which gives
them the detector's class, and the first images accepted with Enter (`studio-annotate.png`).
Settings and data live in a temporary folder: the user's own studio state is untouched.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))


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

    tmp = Path(tempfile.mkdtemp(prefix="fkp-shots-"))
    os.environ["XDG_CONFIG_HOME"] = str(tmp / "config")
    os.environ["XDG_DATA_HOME"] = str(tmp / "data")
    from PySide6.QtCore import QEventLoop, Qt, QTimer
    from PySide6.QtTest import QTest

    from fkp_studio.app import demo_model, init_application
    from fkp_studio.main_window import MainWindow

    app = init_application()  # noqa: F841 (kept alive for the windows)
    out = Path(args.out)

    def wait(ms: int) -> None:
        loop = QEventLoop()
        QTimer.singleShot(ms, loop.quit)
        loop.exec()

    def wait_for(signal, timeout_ms: int = 600_000) -> None:
        loop = QEventLoop()
        signal.connect(loop.quit)
        QTimer.singleShot(timeout_ms, loop.quit)
        loop.exec()

    def shot(window: MainWindow, name: str) -> None:
        wait(800)  # images decode and charts draw in the background
        window.grab().save(str(out / name))
        print(f"saved {out / name}")

    root = tmp / "shoot"
    write_photos(root, args.n)
    w = MainWindow()
    w.restore_policy = "discard"
    w.resize(1600, 1000)
    w.show()
    w.open_images(root / "Images")
    wait_for(w.datasetOpened)
    w.list_panel.go_to(0)
    shot(w, "studio-new-images.png")

    w.hard_loop.use_model_package(demo_model())
    wait_for(w.hard_loop.predictionsDone)
    w.list_panel.go_to(0)
    wait(800)
    w.activateWindow()
    w.canvas.setFocus()
    for _ in range(3):  # Enter: accept the prediction, marked reviewed, on to the next in the queue
        QTest.keyClick(w.canvas, Qt.Key_Return)
        wait(400)
    shot(w, "studio-annotate.png")
    w.undo_stack.setClean()
    w.close()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
