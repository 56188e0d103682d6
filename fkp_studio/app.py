"""Entry point: `fkp-studio [ROOT] [--annotations CSV] [--predictions CSV] [--model MODEL]`.

ROOT is a data set root in the FashionAI layout (or an annotation CSV). With no argument
the studio reopens the last data set, or — on first start — the demo workspace: a
synthetic data set generated off the main thread into the user's data folder, shown with
the demo model's predictions when the demo model is installed.
"""

from __future__ import annotations

import argparse
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from PySide6.QtCore import QStandardPaths, Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QApplication, QMessageBox, QProgressDialog

from engine.io.workspace import find_annotation_files
from fkp_studio.controllers.predict import DEMO_MODEL_DIR, demo_model  # noqa: F401 (the demo model, for callers of app)
from fkp_studio.main_window import MainWindow
from fkp_studio.models.session import last_dataset

ORGANIZATION = "fkp-studio"
APPLICATION = "FKP Studio"
DEMO_IMAGES = 300


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="fkp-studio", description="Browse, compare and correct FashionAI keypoints.")
    p.add_argument("root", nargs="?", help="data set root (Annotations/*.csv, Images/...) or an annotation CSV")
    p.add_argument("--annotations", help="annotation CSV to open (default: the root's train.csv or first CSV)")
    p.add_argument("--images", metavar="DIR",
                   help="new annotations for a folder of images (no CSV yet); ROOT with Images/ and no CSV does the same")
    p.add_argument("--predictions", help="predictions CSV (FashionAI format) to compare with")
    p.add_argument("--model", help="model package to predict with (runs in the background)")
    p.add_argument("--demo", action="store_true", help="open the demo workspace even if another data set was open last")
    return p


def resolve_annotations(root: str | None, annotations: str | None) -> Path:
    """The annotation CSV the arguments name; raises ValueError with a clear message."""
    if annotations:
        path = Path(annotations)
        if not path.is_file() and root and (Path(root) / path).is_file():
            path = Path(root) / path  # relative to the data set root
        if not path.is_file():
            raise ValueError(f"{path}: annotation file not found")
        return path
    path = Path(root)
    if path.is_file():
        return path
    if not path.is_dir():
        raise ValueError(f"{path}: no such data set folder or annotation file")
    found = find_annotation_files(path)
    if not found:
        raise ValueError(f"{path}: no annotation CSV in {path / 'Annotations'} or {path}, and no Images/ folder")
    preferred = [p for p in found if p.name == "train.csv"]
    return (preferred or found)[0]


def _images_without_annotations(root: Path) -> Path | None:
    """`root/Images` when the folder has images but no annotation file yet."""
    if root.is_dir() and (root / "Images").is_dir() and not find_annotation_files(root):
        return root / "Images"
    return None


def demo_root() -> Path:
    return Path(QStandardPaths.writableLocation(QStandardPaths.AppDataLocation)) / "demo"


def open_demo(window: MainWindow, root: Path | None = None, n: int = DEMO_IMAGES) -> None:
    """Open the demo workspace, generating it first (off the main thread, with progress)."""
    root = root or demo_root()
    csv = root / "Annotations" / "train.csv"
    model = demo_model()
    if csv.is_file():
        window.open_dataset(csv, model=model)
        return
    dialog = QProgressDialog("Generating the demo data set (synthetic garments, with hard cases)…", None, 0, n, window)
    dialog.setWindowTitle("First start")
    dialog.setWindowModality(Qt.WindowModal)
    dialog.setMinimumDuration(0)
    dialog.setValue(0)

    def job(ctx):
        from engine.synth import generate_dataset

        # generate_dataset has no progress callback: count the images it has written so far.
        stop = threading.Event()

        def watch() -> None:
            images = root / "Images"
            while not stop.wait(0.5):
                done = sum(1 for _ in images.glob("*/*.jpg")) if images.is_dir() else 0
                ctx.progress(min(done, n), n, "generating demo images")

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            # Written to a temporary name first, so an interrupted generation is never taken for a demo.
            path = generate_dataset(root, n, seed=0, split="generating", hard_fraction=0.15, overwrite=True)
        finally:
            stop.set()
        final = path.with_name("train.csv")
        path.replace(final)
        hard = path.with_name("generating_hard.csv")
        if hard.exists():
            hard.replace(path.with_name("train_hard.csv"))
        return final

    def progress(done: float, total: float, _message: str) -> None:
        dialog.setMaximum(int(total))
        dialog.setValue(int(done))

    def done(path: Path) -> None:
        dialog.close()
        window.open_dataset(path, model=model)

    def failed(message: str) -> None:
        dialog.close()
        QMessageBox.critical(window, "Cannot create the demo data set", message)

    window.io_thread.submit("generate demo", job, on_done=done, on_error=failed, on_progress=progress)


def apply_theme(app: QApplication) -> None:
    """A dark Fusion theme: images and coloured markers read best on a neutral dark frame."""
    app.setStyle("Fusion")
    pal = QPalette()
    base, window, text = QColor(36, 38, 42), QColor(48, 50, 55), QColor(222, 222, 222)
    for role, colour in ((QPalette.Window, window), (QPalette.WindowText, text), (QPalette.Base, base),
                         (QPalette.AlternateBase, QColor(44, 46, 51)), (QPalette.Text, text),
                         (QPalette.Button, window), (QPalette.ButtonText, text), (QPalette.ToolTipBase, QColor(60, 62, 68)),
                         (QPalette.ToolTipText, text), (QPalette.Highlight, QColor(52, 110, 180)),
                         (QPalette.HighlightedText, QColor(255, 255, 255)), (QPalette.PlaceholderText, QColor(140, 140, 140))):
        pal.setColor(role, colour)
    pal.setColor(QPalette.Disabled, QPalette.Text, QColor(120, 120, 120))
    pal.setColor(QPalette.Disabled, QPalette.ButtonText, QColor(120, 120, 120))
    app.setPalette(pal)


def init_application(argv: Sequence[str] | None = None) -> QApplication:
    """The QApplication with the studio's names (QSettings and data folders follow them) and theme."""
    app = QApplication.instance() or QApplication(list(argv or sys.argv[:1]))
    app.setOrganizationName(ORGANIZATION)
    app.setApplicationName(APPLICATION)
    apply_theme(app)
    return app


def start(window: MainWindow, args: argparse.Namespace) -> None:
    """Open what the arguments ask for (after the window is shown)."""
    images = args.images or (args.root and not args.annotations and _images_without_annotations(Path(args.root)))
    if images:
        window.open_images(images, args.model, args.predictions)
        return
    if args.root or args.annotations:
        try:
            csv = resolve_annotations(args.root, args.annotations)
        except ValueError as e:
            QMessageBox.critical(window, "Cannot open", str(e))
            return
        window.open_dataset(csv, args.predictions, args.model)
        return
    last, last_pred = (None, None) if args.demo else last_dataset()
    demo_csv = demo_root() / "Annotations" / "train.csv"
    if last and Path(last).resolve() != demo_csv.resolve():
        window.open_dataset(last, args.predictions or last_pred, args.model)
    else:
        open_demo(window)


# (PySide6 version, Python below which it is broken, why): README "Known bad versions".
KNOWN_BAD_BINDINGS = (("6.12.0", (3, 12), "it drops a reference to None on every Qt call that returns nothing, "
                       "and the studio aborts with 'Fatal Python error: none_dealloc' within minutes"),)


def binding_problem(pyside_version: str, python: tuple[int, int]) -> str | None:
    """Why this PySide6 cannot run the studio under this Python, or None."""
    for version, below, why in KNOWN_BAD_BINDINGS:
        if pyside_version == version and python < below:
            return (f"PySide6 {version} cannot run FKP Studio on Python {python[0]}.{python[1]}: {why}. "
                    f"Install another version, e.g. pip install 'PySide6-Essentials!={version}'.")
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import PySide6

    problem = binding_problem(PySide6.__version__, sys.version_info[:2])
    if problem:
        print(f"fkp-studio: {problem}", file=sys.stderr)
        return 2
    app = init_application()
    window = MainWindow()
    window.firstFrameShown.connect(lambda: start(window, args))
    window.show()
    return app.exec()


if __name__ == "__main__":
    sys.exit(main())
