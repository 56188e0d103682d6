"""Take the screenshots of the hard-example loop: the retrain dialog with its live loss curve and
before/after NE, and the main window with the hard set.

    xvfb-run -s "-screen 0 1600x1000x24" .venv/bin/python docs/screenshots/take_retrain.py [--model M]

Generates a small synthetic data set rich in hard cases (fixed seed) in a temporary folder,
predicts it with the model (the demo model by default), adds the worst images by NE to the
hard set, retrains on them and saves `retrain-dialog.png` and `hard-set.png` here. Settings
and data folders are temporary, so the user's own studio state is untouched.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(REPO / "resources" / "models" / "demo"))
    ap.add_argument("--n", type=int, default=60)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--categories", default=None)
    ap.add_argument("--worst", type=int, default=15)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--detector-steps", type=int, default=40)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="fkp-shots-"))
    os.environ["XDG_CONFIG_HOME"] = str(tmp / "config")
    os.environ["XDG_DATA_HOME"] = str(tmp / "data")
    import torch
    from PySide6.QtCore import QCoreApplication, QSettings

    from engine.synth import generate_dataset
    from fkp_studio.app import init_application
    from fkp_studio.main_window import MainWindow

    if args.threads:
        torch.set_num_threads(args.threads)
    app = init_application()
    QCoreApplication.setOrganizationName("fkp-studio-shots")
    QSettings.setDefaultFormat(QSettings.IniFormat)
    QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, str(tmp / "config"))
    csv = generate_dataset(tmp / "ds", args.n, seed=11, size=args.size, categories=args.categories,
                           hard_fraction=0.6, workers=1)

    def wait(cond, timeout=1800):
        t0 = time.monotonic()
        while not cond():
            app.processEvents()
            time.sleep(0.01)
            if time.monotonic() - t0 > timeout:
                raise SystemExit("timed out")

    window = MainWindow()
    window.questions.restore_policy = "discard"
    window.resize(1500, 920)
    window.show()
    opened = []
    window.datasetOpened.connect(lambda: opened.append(1))
    window.open_dataset(csv)
    wait(lambda: opened)
    done = []
    window.predict.predictionsDone.connect(done.append)
    window.predict.use_model_package(args.model)
    wait(lambda: done)
    window.list_panel.worst_first()
    window.hard_set.add_worst(args.worst)
    window.hard_set_dock.raise_()
    dialog = window.open_retrain_dialog()
    dialog.steps.setValue(args.steps)
    dialog.detector_steps.setValue(args.detector_steps)
    dialog.move(window.x() + 420, window.y() + 80)
    finished = []
    window.retrain.retrainFinished.connect(finished.append)
    window.retrain.retrainFailed.connect(finished.append)
    dialog.start()
    wait(lambda: finished)
    if isinstance(finished[-1], str):
        raise SystemExit(f"retrain failed: {finished[-1]}")
    wait(lambda: dialog.canvas.pixmap() is not None and not dialog.canvas.pixmap().isNull(), 30)
    for _ in range(30):  # let the last loss picture and the table paint
        app.processEvents()
        time.sleep(0.02)
    dialog.grab().save(str(HERE / "retrain-dialog.png"))
    window.grab().save(str(HERE / "hard-set.png"))
    print(f"wrote {HERE / 'retrain-dialog.png'} and {HERE / 'hard-set.png'}: {dialog.table_values()}")
    dialog.discard_result()
    window.undo_stack.setClean()
    window.close()
    import shutil

    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
