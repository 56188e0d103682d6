"""Studio test fixtures: isolated settings and data folders, a tiny data set with images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PySide6.QtCore import QSettings

from engine.io.annotations import Annotations, save_annotations
from engine.io.images import write_jpeg
from engine.schema import CATEGORY_MASK, FLIP_PAIRS, NUM_KEYPOINTS, category_code


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path_factory, monkeypatch, qapp):
    """Each test gets its own QSettings file and its own user data folder."""
    base = tmp_path_factory.mktemp("user")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(base / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(base / "data"))
    qapp.setOrganizationName("fkp-studio-test")
    qapp.setApplicationName(f"FKP Studio test {base.name}")
    QSettings.setDefaultFormat(QSettings.IniFormat)
    QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, str(base / "config"))
    yield base


def garment(category: str, shift: float = 0.0, size: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """Plausible coordinates/visibility of every keypoint of `category` (others -1)."""
    c = category_code(category)
    ks = np.flatnonzero(CATEGORY_MASK[c])
    coords = np.full((NUM_KEYPOINTS, 2), -1, np.float32)
    vis = np.full(NUM_KEYPOINTS, -1, np.int8)
    # Spread the points on a grid; left points get the smaller x.
    for i, k in enumerate(ks):
        coords[k] = (30 + (i % 4) * 40 + shift, 30 + (i // 4) * 35)
        vis[k] = 1
    for left, right in FLIP_PAIRS:
        if vis[left] >= 0:
            y = coords[left, 1]
            coords[left] = (40 + shift, y)
            coords[right] = (size - 40 + shift, y)
            coords[right, 1] = y
    return coords, vis


def _layout(categories: list[str]) -> tuple[np.ndarray, np.ndarray]:
    out = [garment(c, shift=i) for i, c in enumerate(categories)]
    coords = np.stack([o[0] for o in out])
    vis = np.stack([o[1] for o in out])
    # Make the y of twins distinct per pair so that every point is at its own place.
    for r in range(len(categories)):
        present = np.flatnonzero(vis[r] >= 0)
        coords[r, present, 1] = 20 + 8 * np.arange(len(present)) + (present % 2) * 3
    return coords, vis


@pytest.fixture
def dataset(tmp_path) -> dict:
    """root/Annotations/train.csv with 6 images (one image file missing) and a predictions CSV."""
    root = tmp_path / "ds"
    cats = ["blouse", "trousers", "skirt", "dress", "outwear", "blouse"]
    ids = [f"Images/{c}/img{i}.jpg" for i, c in enumerate(cats)]
    coords, vis = _layout(cats)
    vis[0, np.flatnonzero(vis[0] >= 0)[2]] = 0  # one occluded point
    ann = Annotations.from_arrays(ids, [category_code(c) for c in cats], coords, vis)
    csv = root / "Annotations" / "train.csv"
    csv.parent.mkdir(parents=True)
    save_annotations(ann, csv)
    rng = np.random.default_rng(0)
    for i, image_id in enumerate(ids[:-1]):  # the last image is missing on purpose
        path = root / image_id
        path.parent.mkdir(parents=True, exist_ok=True)
        write_jpeg(path, rng.integers(0, 255, (200, 200, 3), dtype=np.uint8))
    # Predictions: row i off by i pixels in x, so per-image NE grows with i.
    pred_coords = coords.copy()
    present = vis >= 0
    pred_coords[..., 0] += np.where(present, np.arange(len(ids))[:, None] * 3.0, 0)
    pred = Annotations.from_arrays(ids, [category_code(c) for c in cats], pred_coords, np.where(present, 1, -1))
    pred_csv = root / "predictions.csv"
    save_annotations(pred, pred_csv)
    return {"root": root, "csv": csv, "pred": pred_csv, "ids": ids, "categories": cats}


@pytest.fixture
def split_csv(dataset) -> Path:
    """The 6-image data set as a test split (ids and categories only: every point absent), beside it."""
    csv = dataset["csv"].with_name("test.csv")
    csv.write_text("".join(",".join(line.split(",")[:2]) + "\n" for line in dataset["csv"].read_text().splitlines()))
    return csv


@pytest.fixture
def open_window(qtbot):
    """A function that opens a data set in a fresh main window and waits until it is shown."""
    from fkp_studio.main_window import MainWindow

    def _open(csv: Path, predictions: Path | None = None, restore_policy: str = "discard"):
        window = MainWindow()
        # A desktop's size (the offscreen screen is 800 px wide): the docks at their measured
        # widths and an image of about 600 px beside them, as the drag tests' precision assumes.
        window.resize(1700, 1000)
        window.questions.restore_policy = restore_policy
        # Tear-down closes windows: never block on the "save your edits?" question.
        window.questions.unsaved = lambda name: "discard"
        qtbot.addWidget(window)
        window.show()
        signals = [window.datasetOpened] + ([window.predictionsReady] if predictions else [])
        with qtbot.waitSignals(signals, timeout=10000):
            window.open_dataset(csv, predictions)
        return window

    return _open



@pytest.fixture
def crash():
    """A function that makes a window "crash": it goes away without saving or cleaning up, except
    for what the operating system does for a dead process (its files closed, its locks freed)."""
    def _crash(window) -> None:
        window.doc.journal.close()
        if window.doc.lock is not None:
            window.doc.lock.release()
        window.undo_stack.clear()

    return _crash
