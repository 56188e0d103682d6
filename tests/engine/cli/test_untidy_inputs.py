"""The engine in an untidy world: data sets that exist already, empty and foreign-encoded files,
bad arguments, ids that lead out of the data root, FIFOs, decompression bombs, hostile ids,
write-protected files. Each case answers in one line naming the file, and nothing is lost."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from engine.cli import main
from engine.io.annotations import Annotations, load_annotations, save_annotations
from engine.io.images import ImageError, image_size, read_image
from engine.io.messages import describe_error, printable
from engine.schema import CSV_HEADER

DEMO_MODEL = Path(__file__).resolve().parents[3] / "resources" / "models" / "demo"


@pytest.fixture
def root(tmp_path) -> Path:
    """A 3-image synthetic data set with images (train split)."""
    assert main(["synth", str(tmp_path / "D"), "--n", "3", "--size", "96", "--workers", "1"]) == 0
    return tmp_path / "D"


def _one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith(f"fkp {command}: ") and "Traceback" not in "\n".join(err), err
    return err[-1]


def test_synth_refuses_to_replace_an_existing_split_unless_told(root, capsys):
    csv = root / "Annotations" / "train.csv"
    before = csv.read_bytes()
    assert main(["synth", str(root), "--n", "1", "--size", "96", "--workers", "1"]) == 2
    assert "train.csv: exists already (pass --overwrite" in _one_line_error(capsys, "synth")
    assert csv.read_bytes() == before
    assert main(["synth", str(root), "--n", "1", "--size", "96", "--split", "val", "--workers", "1"]) == 0
    assert csv.read_bytes() == before and len(load_annotations(root / "Annotations" / "val.csv")) == 1
    assert main(["synth", str(root), "--n", "1", "--size", "96", "--workers", "1", "--overwrite"]) == 0
    assert len(load_annotations(csv)) == 1


@pytest.mark.parametrize("content", [b"", ",".join(CSV_HEADER).encode() + b"\n"], ids=["empty", "header-only"])
def test_eval_with_no_prediction_rows_says_so(root, tmp_path, capsys, content):
    pred = tmp_path / "pred.csv"
    pred.write_bytes(content)
    assert main(["eval", str(root / "Annotations" / "train.csv"), str(pred)]) == 2
    assert "pred.csv: no prediction rows could be read" in _one_line_error(capsys, "eval")


def test_a_utf16_file_is_named_as_such_once_and_kept_byte_for_byte(root, tmp_path, capsys):
    text = (root / "Annotations" / "train.csv").read_text(encoding="utf-8")
    u16 = tmp_path / "u16.csv"
    u16.write_bytes(text.encode("utf-16"))
    ann = load_annotations(u16)
    assert len(ann) == 0 and "UTF-16 encoded" in ann.problems[0].reason
    # One problem per line at most (read as UTF-8 every cell would be one): all say why.
    assert all("UTF-16" in p.reason for p in ann.problems) and len(ann.problems) == ann.unparsed_count + 1
    out = tmp_path / "back.csv"
    save_annotations(ann, out)
    assert out.read_bytes() == u16.read_bytes()
    assert main(["eval", str(u16), str(root / "Annotations" / "train.csv")]) == 2
    assert "u16.csv: no annotation rows could be read: " in _one_line_error(capsys, "eval")


@pytest.mark.parametrize("argv", [
    ["train", "--data", "{root}", "--out", "{tmp}/m.fkpmodel", "--preset", "bogus"],
    ["train-keypoints", "--data", "{root}", "--out", "{tmp}/k.pt", "--preset", "bogus"],
    ["train-detector", "--data", "{root}", "--out", "{tmp}/d.pt", "--preset", "bogus"],
    ["model-info", "--preset", "bogus"],
    ["train-detector", "--data", "{tmp}/nosuch", "--out", "{tmp}/d.pt"],
    ["predict", "--model", str(DEMO_MODEL), "--data", "{root}", "--split", "train", "--out", "{tmp}/p.csv",
     "--device", "banana"],
    ["retrain", "--model", str(DEMO_MODEL), "--data", "{root}", "--hard", "{tmp}/nosuch.txt", "--out", "{tmp}/r"],
])
def test_bad_arguments_give_one_line_errors(root, tmp_path, capsys, argv):
    argv = [a.format(root=root, tmp=tmp_path) for a in argv]
    assert main(argv) == 2
    line = _one_line_error(capsys, argv[0])
    assert "bogus" in line or "nosuch" in line or "banana" in line


def test_train_on_a_missing_data_set_creates_nothing(tmp_path, capsys):
    out = tmp_path / "m.fkpmodel"
    assert main(["train", "--data", str(tmp_path / "nosuch"), "--out", str(out)]) == 2
    assert "nosuch/Annotations/train.csv: training annotation file not found" in _one_line_error(capsys, "train")
    assert sorted(tmp_path.iterdir()) == []  # no empty <out>.work/ left behind


@pytest.mark.parametrize("argv", [
    ["predict", "--limit", "-3"], ["predict", "--batch-size", "0"], ["predict", "--crops", "0"],
    ["predict", "--refine", "-1"], ["train", "--epochs", "0"], ["eval", "--missing-penalty", "nan"],
    ["train-detector", "--detector-steps", "0"], ["retrain", "--lr", "inf"], ["synth", "--n", "x"],
])
def test_out_of_range_numbers_are_refused_before_any_work(capsys, argv):
    base = {"predict": ["--model", "m", "--data", "d", "--out", "o"], "train": ["--data", "d", "--out", "o"],
            "eval": ["gt.csv", "pred.csv"], "train-detector": ["--data", "d", "--out", "o"],
            "retrain": ["--model", "m", "--data", "d", "--hard", "h", "--out", "o"], "synth": ["out"]}
    with pytest.raises(SystemExit) as exit_:
        main([argv[0], *base[argv[0]], *argv[1:]])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {argv[1]}: {argv[2]!r}" in err and "Traceback" not in err


def test_export_coco_of_a_header_only_file_writes_an_empty_data_set(tmp_path, capsys):
    csv = tmp_path / "empty.csv"
    csv.write_text(",".join(CSV_HEADER) + "\n", encoding="utf-8")
    assert main(["export-coco", str(csv), str(tmp_path / "out.json")]) == 0
    assert "0 images" in capsys.readouterr().out


def test_control_characters_in_ids_never_reach_the_terminal_raw(tmp_path, capsys):
    hostile = "Images/blouse/\x1b]0;owned\x07x.jpg"
    csv = tmp_path / "hostile.csv"
    csv.write_text(",".join(CSV_HEADER) + "\n" + f"{hostile},blouse,1_2_1\n", encoding="utf-8")
    assert main(["validate", str(csv)]) == 1
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "\\x1b]0;owned\\x07x.jpg" in out
    assert printable("a\tb\nc\rd\x9b") == "a\tb\nc\rd\\x9b"


def test_ids_that_leave_the_root_are_problem_rows_kept_verbatim(root, tmp_path, capsys):
    csv = root / "Annotations" / "train.csv"
    lines = csv.read_text(encoding="utf-8").splitlines()
    rest = lines[1].split(",", 1)[1]
    bad = [f"Images/../../secret.jpg,{rest}", f"/etc/passwd,{rest}", f"Images\\..\\..\\x.jpg,{rest}"]
    csv.write_text("\n".join(lines + bad) + "\n", encoding="utf-8")
    ann = load_annotations(csv)
    assert len(ann) == 3 and [p.line for p in ann.problems] == [5, 6, 7]
    assert all("outside the data root" in p.reason for p in ann.problems)
    out = tmp_path / "saved.csv"
    save_annotations(ann, out)
    assert out.read_bytes() == csv.read_bytes()
    assert main(["validate", str(csv)]) == 1
    assert "train.csv:5, image Images/../../secret.jpg, column image_id: image id leads outside" in capsys.readouterr().out


def test_readers_open_nothing_outside_the_root_and_only_regular_files(root, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    cv2.imwrite(str(outside / "x.jpg"), np.zeros((8, 8, 3), np.uint8))
    (root / "Images" / "linked").symlink_to(outside, target_is_directory=True)
    with pytest.raises(ImageError, match="outside the data root"):
        read_image(root / "Images" / "linked" / "x.jpg", root)
    with pytest.raises(ImageError, match="outside the data root"):
        image_size(root / "Images" / "linked" / "x.jpg", root)
    fifo = root / "Images" / "fifo.jpg"
    os.mkfifo(fifo)
    done = threading.Event()
    errors = []

    def read() -> None:
        try:
            read_image(fifo, root)
        except ImageError as e:
            errors.append(str(e))
        done.set()

    threading.Thread(target=read, daemon=True).start()
    assert done.wait(5), "reading a FIFO blocked"
    assert "not a regular file" in errors[0]
    with pytest.raises(ImageError, match="not a regular file"):
        read_image(root / "Images", None)


def _jpeg_claiming(width: int, height: int) -> bytes:
    """A small real JPEG whose start-of-frame header claims width x height."""
    data = bytearray(cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))[1].tobytes())
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 7] = height.to_bytes(2, "big")
    data[sof + 7:sof + 9] = width.to_bytes(2, "big")
    return bytes(data)


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path, monkeypatch):
    bomb = tmp_path / "bomb.jpg"
    bomb.write_bytes(_jpeg_claiming(30000, 30000))
    assert bomb.stat().st_size < 2000
    with pytest.raises(ImageError, match=r"30000 x 30000 pixels is over the limit of 100,000,000"):
        read_image(bomb)
    monkeypatch.setenv("FKP_MAX_IMAGE_PIXELS", "100")
    small = tmp_path / "small.jpg"
    small.write_bytes(_jpeg_claiming(16, 16))
    with pytest.raises(ImageError, match="16 x 16 pixels is over the limit of 100 "):
        read_image(small)


def test_a_write_protected_file_is_not_replaced(tmp_path):
    csv = tmp_path / "ro.csv"
    ann = Annotations.from_arrays(["Images/blouse/a.jpg"], [0], np.full((1, 24, 2), -1, np.float32),
                                  np.full((1, 24), -1, np.int8))
    save_annotations(ann, csv)
    before = csv.read_bytes()
    csv.chmod(0o444)
    with pytest.raises(PermissionError) as e:
        save_annotations(ann, csv)
    assert describe_error(e.value) == f"{csv}: the file is write-protected"
    assert csv.read_bytes() == before


def test_os_errors_read_as_one_line_naming_the_file():
    full = OSError(28, "No space left on device")
    assert describe_error(full) == "No space left on device"  # never "...: None"
    assert describe_error(OSError(28, "No space left on device", "/d/x.csv")) == "/d/x.csv: No space left on device"


def test_the_hard_set_survives_kill_9(tmp_path):
    script = f"""
import os, signal
from engine.io.workspace import Workspace
from engine.training.hard_set import HardSet
hard = HardSet(workspace=Workspace({str(tmp_path)!r}))
hard.add(["Images/blouse/a.jpg", "Images/skirt/b.jpg"], "manual")
os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[3])
    assert proc.returncode == -signal.SIGKILL
    from engine.io.workspace import Workspace
    from engine.training.hard_set import HardSet

    assert HardSet.load(Workspace(tmp_path)).members() == ["Images/blouse/a.jpg", "Images/skirt/b.jpg"]


def test_predict_checks_its_output_before_the_work(root, tmp_path, capsys):
    common = ["predict", "--model", str(DEMO_MODEL), "--data", str(root), "--split", "train"]
    assert main([*common, "--out", str(tmp_path / "nosuch" / "p.csv")]) == 2
    assert "nosuch: output folder not found" in _one_line_error(capsys, "predict")
    protected = tmp_path / "protected.csv"
    protected.write_text("keep me\n")
    protected.chmod(0o444)
    assert main([*common, "--out", str(protected)]) == 2
    assert "protected.csv: the file is write-protected" in _one_line_error(capsys, "predict")
    assert protected.read_text() == "keep me\n"


def test_a_retrain_that_breaks_the_model_writes_nothing(root, tmp_path, capsys):
    hard = tmp_path / "hard.txt"
    hard.write_text(load_annotations(root / "Annotations" / "train.csv").image_ids[0] + "\n")
    out, holdout = tmp_path / "r.fkpmodel", tmp_path / "holdout.txt"
    common = ["retrain", "--model", str(DEMO_MODEL), "--data", str(root), "--hard", str(hard), "--out", str(out),
              "--steps", "1", "--detector-steps", "0"]
    assert main([*common, "--lr", "1e6", "--holdout", str(holdout)]) == 1
    assert "try a lower learning rate (nothing was written)" in _one_line_error(capsys, "retrain")
    assert not out.exists() and not holdout.exists()  # the hold-out choice is kept only by a run that succeeded
    utf16 = tmp_path / "utf16.txt"
    utf16.write_text("image_id\n", encoding="utf-16")
    assert main([*common, "--holdout", str(utf16)]) == 2
    assert "utf16.txt: not a UTF-8 text file" in _one_line_error(capsys, "retrain")
    assert main([*common, "--holdout", str(tmp_path / "nosuch" / "h.txt")]) == 2
    assert "folder for the hold-out file not found" in _one_line_error(capsys, "retrain")


def test_a_failed_write_leaves_the_file_as_it_was(tmp_path):
    from engine.io.files import atomic_write, atomic_write_text

    path = tmp_path / "a.csv"
    atomic_write_text(path, "first\n")

    def half_then_full_disk(f) -> None:
        f.write(b"sec")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError):
        atomic_write(path, half_then_full_disk)
    assert path.read_text() == "first\n" and sorted(p.name for p in tmp_path.iterdir()) == ["a.csv"]


def test_a_failed_write_names_its_target_in_one_plain_line(tmp_path, capsys):
    from engine.io.files import atomic_write
    from engine.jobs.runner import JobRunner

    path = tmp_path / "a.csv"

    def full_disk(f) -> None:
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError) as e:
        atomic_write(path, full_disk)
    assert describe_error(e.value) == f"{path}: No space left on device"  # the target, not no file
    ann = Annotations.from_arrays(["Images/blouse/a.jpg"], [0])
    save_annotations(ann, path)
    folder = tmp_path / "out.csv"
    folder.mkdir()
    save_annotations(Annotations.from_arrays(["Images/blouse/b.jpg"], [0]), tmp_path / "b.csv")
    assert main(["merge", str(path), str(tmp_path / "b.csv"), "--out", str(folder)]) == 2
    assert _one_line_error(capsys, "merge") == f"fkp merge: {folder}: Is a directory"  # not .out.csv.x1y2.tmp
    # The studio's jobs: "path: reason", never "PermissionError: ... (at files.py:53)".
    path.chmod(0o444)
    runner = JobRunner()
    try:
        job = runner.submit("save", lambda ctx: save_annotations(ann, path))
        assert job.wait(5)
    finally:
        runner.shutdown(timeout=5)
        path.chmod(0o644)
    assert job.error == f"{path}: the file is write-protected"


def test_an_opencv_error_is_the_images_own_error(tmp_path, monkeypatch):
    # With the limit raised, a PNG claiming 40000 x 40000 reaches OpenCV, which refuses it
    # (over its own 2^30 pixels): an ImageError naming the file, not a cv2.error traceback.
    monkeypatch.setenv("FKP_MAX_IMAGE_PIXELS", str(10**10))
    data = bytearray(cv2.imencode(".png", np.zeros((16, 16, 3), np.uint8))[1].tobytes())
    data[16:24] = (40000).to_bytes(4, "big") + (40000).to_bytes(4, "big")
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")  # a valid header chunk
    path = tmp_path / "huge.png"
    path.write_bytes(bytes(data))
    with pytest.raises(ImageError, match="huge.png: cannot decode image"):
        read_image(path)
