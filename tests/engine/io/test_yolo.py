"""YOLO-pose (Ultralytics) interop: exact round trip of the real annotations, the detector's
boxes, skipped rows named, malformed files named by line, and Ultralytics' own loader, trainer
and `save_txt` predictions (offline: the network is refused, nothing is downloaded)."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.cli import main
from engine.io.annotations import Annotations, format_annotations, load_annotations
from engine.io.images import image_size, write_jpeg
from engine.io.scores import load_scores
from engine.io.yolo import (
    DATA_YAML, LABEL_VALUES, YoloError, export_yolo, load_yolo, read_data_yaml,
)
from engine.schema import CATEGORIES, CATEGORY_MASK, FLIP_PAIRS, FLIP_PERMUTATION, KEYPOINT_INDEX

DATA = Path(__file__).resolve().parents[2] / "data" / "fashionai"
SIZES = [(513, 513), (640, 520), (520, 777), (1000, 600)]  # every real coordinate (0..512) fits


def blank_root(root: Path, ids, sizes=SIZES) -> list[tuple[int, int]]:
    """A data set root where each id is a link to a blank JPEG of one of `sizes` (in turn);
    returns each id's (width, height)."""
    (root / "blank").mkdir(parents=True)
    blanks = []
    for w, h in sizes:
        f = root / "blank" / f"{w}x{h}.jpg"
        write_jpeg(f, np.zeros((h, w, 3), np.uint8))
        blanks.append(f)
    out = []
    for i, image_id in enumerate(ids):
        p = root / image_id
        p.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(blanks[i % len(sizes)], p)
        out.append(sizes[i % len(sizes)])
    return out


def rows_by_id(ann: Annotations) -> bytes:
    """The CSV bytes of `ann`'s parsed rows, sorted by image id (canonical header)."""
    order = np.argsort(np.array([str(i) for i in ann.image_ids], dtype=object), kind="stable")
    a = ann.subset(order)
    return format_annotations(Annotations.from_arrays(a.image_ids, a.categories, a.coords, a.visibility))


def label_values(path: Path) -> np.ndarray:
    return np.array([[float(x) for x in line.split()] for line in path.read_text().splitlines()])


def test_real_annotations_round_trip_exactly(tmp_path, capsys) -> None:
    src = DATA / "val.csv"
    ann = load_annotations(src)
    sizes = np.array(blank_root(tmp_path / "root", ann.image_ids), dtype=np.float64)
    out = tmp_path / "yolo"
    assert main(["export-yolo", str(src), str(out), "--images", str(tmp_path / "root"), "--val-split", "0.2"]) == 0
    printed = capsys.readouterr()
    assert "5130 train and 1282 val images (6412 linked, 0 copied), 0 rows skipped" in printed.out
    assert "3 rows could not be parsed and are not exported" in printed.err  # the duplicate rows
    # Coordinates are written to 1e-6 of the image side: whole pixels come back exactly.
    assert main(["import-yolo", str(out), str(tmp_path / "back.csv")]) == 0
    back = load_annotations(tmp_path / "back.csv")
    assert not back.problems and len(back) == len(ann) == 6412
    assert rows_by_id(back) == rows_by_id(ann)
    assert (back.visibility == 0).sum() == (ann.visibility == 0).sum() > 1000  # occluded stays occluded

    # One label by hand: the FashionAI id is the label's path below its split.
    r = 1
    image_id = str(ann.image_ids[r])
    split = "val" if (out / "labels" / "val" / image_id).with_suffix(".txt").exists() else "train"
    assert (out / "images" / split / image_id).resolve() == (tmp_path / "root" / image_id).resolve()
    values = label_values((out / "labels" / split / image_id).with_suffix(".txt"))
    assert values.shape == (1, LABEL_VALUES) and values[0, 0] == ann.categories[r]
    kp = values[0, 5:].reshape(24, 3)
    w, h = sizes[r]
    present = ann.visibility[r] >= 0
    np.testing.assert_array_equal(kp[:, 2], ann.visibility[r] + 1)
    np.testing.assert_allclose(kp[present, :2], ann.coords[r, present] / [w, h], atol=5e-7)
    assert (kp[~present] == 0).all()
    # The split is the SHA-256 order of the ids: 20 % in val, the same on every run.
    assert len(list((out / "labels" / "val").rglob("*.txt"))) == round(0.2 * 6412)


def test_label_boxes_are_the_detectors_training_boxes(tmp_path) -> None:
    from engine.io.boxes import KEYPOINT_BOX_MARGIN, boxes_from_keypoints
    from engine.model.detector import DetectorConfig

    src = DATA / "val.csv"
    ann = load_annotations(src).subset(np.arange(40))
    sizes = np.array(blank_root(tmp_path / "root", ann.image_ids), dtype=np.float64)
    export_yolo(ann, tmp_path / "root", tmp_path / "yolo")
    assert DetectorConfig().box_margin == KEYPOINT_BOX_MARGIN
    boxes, valid = boxes_from_keypoints(ann.coords, ann.visibility, DetectorConfig().box_margin, sizes)
    assert valid.all()
    for r, image_id in enumerate(ann.image_ids):
        cx, cy, bw, bh = label_values((tmp_path / "yolo" / "labels" / "train" / image_id).with_suffix(".txt"))[0, 1:5]
        w, h = sizes[r]
        got = np.array([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h])
        np.testing.assert_allclose(got, boxes[r], atol=1e-5 * max(w, h) + 1e-3)
    # The box really is grown: wider than the bare keypoint box.
    x = np.where(ann.visibility[0] >= 0, ann.coords[0, :, 0], np.nan)
    assert boxes[0, 2] - boxes[0, 0] > np.nanmax(x) - np.nanmin(x)


def test_data_yaml_and_skipped_rows_are_named(tmp_path, capsys, monkeypatch) -> None:
    from engine.synth import generate_dataset

    csv = generate_dataset(tmp_path / "root", 6, seed=4, size=96, workers=1)
    ann = load_annotations(csv)
    good = [str(i) for i in ann.image_ids]
    (tmp_path / "root" / "Images" / "blouse").mkdir(parents=True, exist_ok=True)
    (tmp_path / "root" / "Images" / "blouse" / "broken.jpg").write_bytes(b"not an image at all")
    one_point = np.full((1, 24), -1, np.int8)
    one_point[0, 0] = 1
    skipped = ["Images/blouse/missing.jpg", "Images/blouse/broken.jpg", good[0].replace(".jpg", ".gif"),
               "Images/blouse/one.jpg"]
    os.symlink(tmp_path / "root" / good[1], tmp_path / "root" / "Images" / "blouse" / "one.jpg")
    rows = Annotations.from_arrays(
        good[2:] + skipped, np.concatenate([ann.categories[2:], ann.categories[:3], [0]]),
        np.concatenate([ann.coords[2:], ann.coords[:3], np.full((1, 24, 2), 10, np.float32)]),
        np.concatenate([ann.visibility[2:], ann.visibility[:3], one_point]))
    k = int(np.flatnonzero(rows.visibility[0] >= 0)[0])
    rows.coords[0, k] = [5000, 5000]  # outside the image: written on its border
    bad_csv = tmp_path / "rows.csv"
    bad_csv.write_bytes(format_annotations(rows) + b"not,a,row\n")
    out = tmp_path / "yolo"
    assert main(["export-yolo", str(bad_csv), str(out), "--images", str(tmp_path / "root")]) == 0
    printed = capsys.readouterr()
    assert "4 train and 0 val images" in printed.out and "4 rows skipped" in printed.out
    for name in ("missing.jpg", "broken.jpg", ".gif", "one.jpg: fewer than two annotated keypoints"):
        assert name in printed.err
    assert "1 rows could not be parsed" in printed.err
    assert "1 keypoints outside their image were written on its border" in printed.err
    kp = label_values((out / "labels" / "train" / good[2]).with_suffix(".txt"))[0, 5:].reshape(24, 3)
    assert kp[k, 0] == kp[k, 1] == 1.0 and kp[k, 2] == rows.visibility[0, k] + 1
    assert sorted(p.relative_to(out / "labels" / "train").as_posix() for p in out.rglob("*.txt")) == \
        sorted(i.replace(".jpg", ".txt") for i in good[2:])

    data = read_data_yaml(out / DATA_YAML)
    assert data["kpt_shape"] == [24, 3]
    assert data["flip_idx"] == FLIP_PERMUTATION.tolist()
    names = data["names"]
    assert [names[i] for i in range(5)] == list(CATEGORIES)
    assert Path(data["path"]) == out.resolve() and data["train"] == "images/train" and data["val"] == "images/train"
    # The YAML reader without PyYAML reads the same file the same way.
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "yaml", None)  # import yaml -> ImportError
        assert read_data_yaml(out / DATA_YAML) == data

    # A folder in use is refused, and so is a test split.
    assert main(["export-yolo", str(bad_csv), str(out), "--images", str(tmp_path / "root")]) == 2
    assert "exists and is not an empty folder" in capsys.readouterr().err
    assert main(["export-yolo", str(DATA / "test_b.csv"), str(tmp_path / "t"), "--images", str(tmp_path)]) == 2
    assert "no labels to export" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()  # an empty folder is fine
    assert main(["export-yolo", str(bad_csv), str(tmp_path / "empty"), "--images", str(tmp_path / "root")]) == 0
    assert (tmp_path / "empty" / DATA_YAML).is_file() and not list(tmp_path.glob(".empty.*"))


@pytest.fixture
def one_label(tmp_path):
    """A tiny exported data set (3 images) and a function writing a label file's text."""
    from engine.synth import generate_dataset

    csv = generate_dataset(tmp_path / "root", 3, seed=5, size=64, workers=1, categories="skirt")
    ann = load_annotations(csv)
    export_yolo(ann, tmp_path / "root", tmp_path / "yolo")
    labels = sorted((tmp_path / "yolo" / "labels" / "train").rglob("*.txt"))
    return tmp_path / "yolo", labels, ann


@pytest.mark.parametrize("edit, message", [
    (lambda v: v[:10], ":1: 10 values, expected 77"),
    (lambda v: ["x1"] + v[1:], ":1: value 1 is not a number"),
    (lambda v: ["7"] + v[1:], ":1: class 7 is not one of 0..4"),
    (lambda v: v[:5] + ["1.5"] + v[6:], ":1: value 1.5 (neckline_left x) is outside [0, 1]"),
    (lambda v: v[:1] + ["-0.1"] + v[2:], ":1: value -0.1 (box) is outside [0, 1]"),
    (lambda v: v[:7] + ["3"] + v[8:], ":1: neckline_left has visibility 3"),
    (lambda v: v[:5 + 3 * KEYPOINT_INDEX["crotch"]] + ["0.5", "0.5", "2"] + v[8 + 3 * KEYPOINT_INDEX["crotch"]:],
     "skirt has no crotch, but it is labelled"),
], ids=["count", "not-a-number", "class", "x", "box", "visibility", "keypoint-of-another-garment"])
def test_bad_label_lines_are_named_by_file_and_line(one_label, capsys, edit, message) -> None:
    out, labels, _ = one_label
    values = labels[0].read_text().split()
    labels[0].write_text(" ".join(edit(values)) + "\n")
    with pytest.raises(YoloError) as e:
        load_yolo(out)
    assert message in str(e.value) and str(labels[0]) in str(e.value)
    assert main(["import-yolo", str(out), str(out / "x.csv")]) == 2
    assert message in capsys.readouterr().err


def test_several_garments_keep_the_first_and_unmatched_labels_are_reported(one_label) -> None:
    out, labels, ann = one_label
    first = labels[0].read_text()
    labels[0].write_text(first + first.replace(first.split()[1], "0.5", 1))
    (out / "labels" / "train" / "Images" / "skirt" / "nobody.txt").write_text(first)
    (out / "labels" / "train" / "Images" / "skirt" / "empty.txt").write_text("\n")
    res = load_yolo(out)
    assert len(res.annotations) == 3 and not res.predictions and res.scores is None
    assert any("2 garments; kept line 1 (the first)" in w for w in res.warnings)
    assert any("nobody.txt: no image found" in w for w in res.warnings)
    assert any("empty.txt: no garment" in w for w in res.warnings)
    assert rows_by_id(res.annotations) == rows_by_id(ann)


SECRET = "root:*:19000:0:99999:7:::"


def test_import_reads_nothing_outside_the_data_set_and_never_quotes_a_file(one_label, tmp_path, capsys) -> None:
    out, labels, _ = one_label
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "shadow.txt").write_text(SECRET + "\n")
    # A label file linked out of the data set is not opened: the other two are imported.
    labels[0].unlink()
    os.symlink(tmp_path / "secret" / "shadow.txt", labels[0])
    assert main(["import-yolo", str(out), str(tmp_path / "a.csv")]) == 0
    printed = capsys.readouterr()
    assert "wrote" in printed.out and "2 rows" in printed.out
    assert f"{labels[0]}: leads outside the data set folder" in printed.err
    assert "root:" not in printed.out + printed.err
    # A data.yaml whose `path` leaves its folder reads its own folder, not the one it names.
    yaml_text = (out / DATA_YAML).read_text()
    for path_line in ('path: ".."', 'path: "/"'):
        (out / DATA_YAML).write_text(yaml_text.replace(f"path: {json.dumps(str(out.resolve()))}", path_line)
                                     .replace("train: images/train", "train: ."))
        main(["import-yolo", str(out), str(tmp_path / "b.csv")])
        printed = capsys.readouterr()
        assert "lies outside the data set folder" in printed.err and "shadow.txt" not in printed.err
        assert "root:" not in printed.out + printed.err
    # A split that leaves the folder is refused by name.
    (out / DATA_YAML).write_text(yaml_text.replace("train: images/train", "train: ../secret"))
    assert main(["import-yolo", str(out), str(tmp_path / "c.csv")]) == 2
    err = capsys.readouterr().err
    assert '"train" \'../secret\' leads outside the data set folder' in err and "root:" not in err
    # A label line that is not numbers is named by file, line and value, never quoted.
    labels[1].write_text(SECRET + "\n")
    assert main(["import-yolo", str(out / "labels" / "train"), str(tmp_path / "d.csv")]) == 2
    err = capsys.readouterr().err
    assert f"{labels[1]}:1: value 1 is not a number" in err and "root:" not in err


def _alias_bomb(levels: int) -> str:
    """A YAML document whose last anchor is a list nested `levels` deep, 9 wide at each level."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("key", ["kpt_shape", "names"])
def test_a_yaml_alias_bomb_gives_a_short_error(one_label, tmp_path, capsys, key) -> None:
    out, _, _ = one_label
    text = (out / DATA_YAML).read_text()
    bomb = _alias_bomb(6)  # 9^6 = 531,441 strings: 3.7 MB once formatted (the probe's 9 levels: 226 MB)
    assert len(bomb) < 400
    other = "kpt_shape" if key == "names" else "names"
    kept = text[text.index(f"{other}:"):] if other == "names" else "kpt_shape: [24, 3]\n"
    kept = kept.split("kpt_names:")[0] if other == "names" else kept
    (out / DATA_YAML).write_text(bomb + f"path: .\ntrain: images/train\n{key}: *a5\n" + kept)
    assert main(["import-yolo", str(out), str(tmp_path / "x.csv")]) == 2
    err = capsys.readouterr().err
    assert len(err) < 400 and len(err.strip().splitlines()) == 1, len(err)
    assert str(out / DATA_YAML) in err and "a list of 9 items" in err


def test_one_odd_label_file_is_named_and_does_not_switch_the_import_to_predictions(one_label, capsys) -> None:
    out, labels, _ = one_label
    odd = labels[-1]
    odd.write_text(odd.read_text().rstrip("\n") + " 0.9\n")  # a confidence column on one file only
    with pytest.raises(YoloError) as e:
        load_yolo(out)
    message = str(e.value)
    assert message.startswith(f"{odd}:1: {LABEL_VALUES + 1} values (a confidence column), but 2 other files hold labels")
    assert str(labels[0]) not in message
    assert main(["import-yolo", str(out), str(out / "x.csv")]) == 2
    assert f"{odd}:1:" in capsys.readouterr().err
    # Once the odd file is fixed, the three are labels again.
    odd.write_text(odd.read_text().rsplit(" ", 1)[0] + "\n")
    assert not load_yolo(out).predictions


def test_export_on_a_full_disk_names_the_file_it_could_not_write(one_label, tmp_path, capsys) -> None:
    import resource
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        pytest.skip("SIGXFSZ can only be ignored from the main thread")
    _, _, ann = one_label
    csv = tmp_path / "root" / "Annotations" / "train.csv"
    target = tmp_path / "again"
    # A file-size limit below one label line: each label write fails as on a full disk, with
    # an OSError that names no file.
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (200, hard))
    try:
        code = main(["export-yolo", str(csv), str(target)])
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
        signal.signal(signal.SIGXFSZ, handler)
    err = capsys.readouterr().err
    assert code == 2
    first = sorted(str(i) for i in ann.image_ids)[0]
    assert f"{target / 'labels' / 'train' / first[:-4]}.txt: cannot write (File too large)" in err, err
    assert not target.exists() and not list(tmp_path.glob(".again.*"))


# --- Ultralytics, the real client ----------------------------------------------------------


@pytest.fixture(scope="module")
def ultralytics(tmp_path_factory):
    """Ultralytics imported offline with its settings in a temporary folder; every network
    connection is refused while the tests run (so nothing can be downloaded)."""
    config = tmp_path_factory.mktemp("ultralytics_config")
    saved_env = {k: os.environ.get(k) for k in ("YOLO_OFFLINE", "YOLO_CONFIG_DIR")}
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_CONFIG_DIR"] = str(config)
    connect, getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def refuse(*args, **kwargs):
        raise OSError("the network is refused in this test")

    socket.socket.connect, socket.getaddrinfo = refuse, refuse
    try:
        module = pytest.importorskip("ultralytics")
        yield module, config
    finally:
        socket.socket.connect, socket.getaddrinfo = connect, getaddrinfo
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    downloaded = [p.name for p in config.rglob("*") if p.suffix in (".ttf", ".pt", ".zip")]
    assert not downloaded


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    from engine.synth import generate_dataset

    base = tmp_path_factory.mktemp("yolo_export")
    csv = generate_dataset(base / "root", 10, seed=7, size=96, workers=1)
    ann = load_annotations(csv)
    export_yolo(ann, base / "root", base / "yolo", val_fraction=0.3)
    return base, ann


def test_ultralytics_loads_the_export(ultralytics, exported) -> None:
    from ultralytics.cfg import get_cfg
    from ultralytics.data.augment import RandomFlip
    from ultralytics.data.build import build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset
    from ultralytics.utils import DEFAULT_CFG
    from ultralytics.utils.instance import Instances

    base, ann = exported
    data = check_det_dataset(str(base / "yolo" / DATA_YAML))
    assert data["nc"] == 5 and data["kpt_shape"] == [24, 3] and list(data["names"].values()) == list(CATEGORIES)
    # mode="train" builds the augmentations, whose checks read flip_idx and kpt_shape.
    cfg = get_cfg(DEFAULT_CFG, dict(task="pose", imgsz=64, fliplr=0.5))
    seen = 0
    for split in ("train", "val"):
        ds = build_yolo_dataset(cfg, data[split], 4, data, mode="train" if split == "train" else "val")
        for lb in ds.labels:
            image_id = Path(lb["im_file"]).relative_to(base / "yolo" / "images" / split).as_posix()
            r = ann.index_of(image_id)
            h, w = lb["shape"]
            assert lb["keypoints"].shape == (1, 24, 3)
            assert int(lb["cls"][0, 0]) == ann.categories[r]
            ours = label_values((base / "yolo" / "labels" / split / image_id).with_suffix(".txt"))[0]
            np.testing.assert_allclose(lb["bboxes"][0], ours[1:5], atol=1e-6)
            np.testing.assert_allclose(lb["keypoints"][0], ours[5:].reshape(24, 3), atol=1e-6)
            present = ann.visibility[r] >= 0
            np.testing.assert_allclose(lb["keypoints"][0, present, :2] * [w, h], ann.coords[r, present], atol=1e-3)
            seen += 1
    assert seen == len(ann)

    # Ultralytics' horizontal flip with our flip_idx keeps FashionAI's rule: `_left` is the
    # point with the smaller x (image sides), as in the original.
    lb = ds.labels[0]
    h, w = lb["shape"]
    kp = lb["keypoints"] * [w, h, 1]
    labels = {"img": np.zeros((h, w, 3), np.uint8),
              "instances": Instances(lb["bboxes"] * [w, h, w, h], np.zeros((1, 0, 2), np.float32), kp.copy(),
                                     bbox_format="xywh", normalized=False)}
    flipped = RandomFlip(p=1.0, direction="horizontal", flip_idx=data["flip_idx"])(labels)["instances"].keypoints
    expected = kp[:, FLIP_PERMUTATION].copy()
    expected[..., 0] = w - expected[..., 0]
    np.testing.assert_allclose(flipped, expected, atol=1e-4)
    both = [(a, b) for a, b in FLIP_PAIRS if kp[0, a, 2] > 0 and kp[0, b, 2] > 0 and kp[0, a, 0] < kp[0, b, 0]]
    assert both and all(flipped[0, a, 0] < flipped[0, b, 0] for a, b in both)


def test_ultralytics_trains_on_the_export_and_its_predictions_come_back(ultralytics, exported, tmp_path,
                                                                     capsys) -> None:
    import torch
    from ultralytics import YOLO

    base, ann = exported
    deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        model = YOLO("yolov8n-pose.yaml")  # built from its YAML: no weights
        model.train(data=str(base / "yolo" / DATA_YAML), epochs=1, imgsz=64, batch=4, workers=0, plots=False,
                    amp=False, device="cpu", project=str(tmp_path / "runs"), name="train", exist_ok=True,
                    verbose=False, val=False, seed=0)
        assert model.model.kpt_shape == [24, 3] and model.model.nc == 5
        images = sorted((base / "root" / "Images").rglob("*.jpg"))[:3]
        # Ultralytics' own save_txt (with save_conf): flat predict/labels/<file name>.txt.
        model.predict([str(p) for p in images], imgsz=64, conf=1e-6, max_det=2, save_txt=True, save_conf=True,
                      device="cpu", project=str(tmp_path / "runs"), name="predict", exist_ok=True, verbose=False)
    finally:
        torch.use_deterministic_algorithms(deterministic)
    labels = tmp_path / "runs" / "predict" / "labels"
    files = sorted(labels.glob("*.txt"))
    assert files and len(label_values(files[0])[0]) == LABEL_VALUES + 1  # + the box confidence
    out = tmp_path / "pred.csv"
    capsys.readouterr()
    assert main(["import-yolo", str(labels), str(out), "--images", str(base / "root")]) == 0
    err = capsys.readouterr().err
    assert all(len(label_values(f)) == 2 for f in files)  # max_det=2: the importer keeps one
    assert err.count("2 garments; kept line") == len(files) and "(the most confident)" in err
    pred = load_annotations(out)
    ids, scores = load_scores(tmp_path / "pred.scores.csv")
    assert ids == [str(i) for i in pred.image_ids] and len(pred) == len(files)
    assert set(ids) <= {p.relative_to(base / "root").as_posix() for p in images}
    mask = CATEGORY_MASK[pred.categories]
    assert ((pred.visibility == 1) == mask).all() and ((scores >= 0) == mask).all()
    assert (scores <= 1).all()
    # The most confident of the lines is kept, at whole pixels inside the image.
    first = label_values(labels / (Path(ids[0]).stem + ".txt"))
    best = first[np.argmax(first[:, LABEL_VALUES])]
    kp = best[5:LABEL_VALUES].reshape(24, 3)
    w, h = image_size(base / "root" / ids[0])
    r = 0
    k = np.flatnonzero(mask[r])
    np.testing.assert_array_equal(pred.coords[r, k], np.rint(kp[k, :2] * [w, h]))
    np.testing.assert_allclose(scores[r, k], kp[k, 2], atol=5e-4)
