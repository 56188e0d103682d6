"""Work off the main thread: first-start demo generation, model predictions, image decoding."""

from __future__ import annotations

import numpy as np
import pytest
from PySide6.QtGui import QImage

from engine.io.images import write_jpeg
from fkp_studio.app import open_demo, resolve_annotations
from fkp_studio.models.image_loader import ImageLoader
from fkp_studio.main_window import MainWindow

pytestmark = pytest.mark.float_paths  # its figures depend on the CPU's kernels: make test-kernels


def test_first_start_generates_and_opens_the_demo(qtbot, tmp_path):
    window = MainWindow()
    qtbot.addWidget(window)
    root = tmp_path / "demo"
    with qtbot.waitSignal(window.datasetOpened, timeout=60000):
        open_demo(window, root=root, n=6)
    assert window.list_model.rowCount() == 6
    assert (root / "Annotations" / "train.csv").is_file()
    assert (root / "Annotations" / "train_hard.csv").is_file()
    assert not list((root / "Annotations").glob("generating*")), "no half-made demo is left behind"
    assert len(list((root / "Images").glob("*/*.jpg"))) == 6
    assert resolve_annotations(str(root), None) == root / "Annotations" / "train.csv"
    assert resolve_annotations(str(root), "Annotations/train_hard.csv") == root / "Annotations" / "train_hard.csv"
    with pytest.raises(ValueError, match="annotation file not found"):
        resolve_annotations(str(root), "nope.csv")
    with pytest.raises(ValueError, match="no such data set folder"):
        resolve_annotations(str(root / "missing"), None)
    # A second start opens it without generating again.
    again = MainWindow()
    qtbot.addWidget(again)
    with qtbot.waitSignal(again.datasetOpened, timeout=10000):
        open_demo(again, root=root, n=6)
    assert again.list_model.rowCount() == 6


def test_model_predictions_arrive_in_the_background(qtbot, loop_model):
    data, model = loop_model
    window = MainWindow()
    qtbot.addWidget(window)
    with qtbot.waitSignal(window.datasetOpened, timeout=10000):
        window.open_dataset(data / "Annotations" / "train.csv")
    assert window.doc.predictions is None
    with qtbot.waitSignal(window.predictionsReady, timeout=300000):
        window.predict.use_model_package(model)
    doc = window.doc
    assert doc.predictions.present.all()
    assert np.isfinite(doc.ne).sum() > 0
    ne = doc.ne[window.list_model.order]
    finite = ne[np.isfinite(ne)]
    assert np.all(np.diff(finite) <= 0), "the list shows the worst images first"
    assert window.current_row == window.list_model.order[0]


def test_image_loader_decodes_off_thread_with_a_bounded_cache(qtbot, tmp_path):
    paths = []
    for i in range(4):
        p = tmp_path / f"{i}.jpg"
        write_jpeg(p, np.full((100, 100, 3), 40 * i, np.uint8))
        paths.append(p)
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    one_image = 100 * 100 * 3
    loader = ImageLoader(max_bytes=2 * one_image + 100)
    for p in paths:
        assert loader.request(p) is None  # never decoded on the caller's thread
        with qtbot.waitSignal(loader.loaded, timeout=5000):
            pass
    assert [loader.cached(p) is not None for p in paths] == [False, False, True, True]
    image = loader.request(paths[-1])
    assert isinstance(image, QImage) and image.width() == 100
    with qtbot.waitSignal(loader.failed, timeout=5000) as failed:
        loader.request(tmp_path / "bad.jpg")
    assert "bad.jpg" in failed.args[1] and "decodable" in failed.args[1]
    assert loader.error(tmp_path / "bad.jpg") == failed.args[1]
