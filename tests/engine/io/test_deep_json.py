"""One deeply nested JSON line (`[[[[...` thousands deep) in a workspace or model file costs that
line (or names the file), never an uncaught RecursionError (issue 30, item 14)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from engine.io.journal import Edit, Journal, make_base, read_journal
from engine.io.review import ReviewLog
from engine.io.workspace import Workspace

DEEP = b"[" * 100_000 + b"]" * 100_000


def test_a_deep_line_in_the_review_log_costs_only_itself(tmp_path):
    path = tmp_path / "r.review.jsonl"
    path.write_bytes(b'{"id": "a", "state": "reviewed"}\n' + DEEP + b'\n{"id": "b", "state": "skipped"}\n')
    assert ReviewLog(path).load() == ({"a": "reviewed", "b": "skipped"}, ["line 2: nested too deeply"])


def test_a_deep_line_in_the_journal_costs_only_itself(tmp_path):
    csv = tmp_path / "train.csv"
    csv.write_text("image_id,image_category\n")
    path = tmp_path / "j.jsonl"
    Journal(path, make_base(csv)).append(Edit("a", [0], [[1, 2]], [1]))
    with open(path, "ab") as f:
        f.write(DEEP + b"\n" + json.dumps(Edit("b", [1], [[3, 4]], [0]).to_json()).encode() + b"\n")
    contents = read_journal(path)
    assert [e.image_id for e in contents.edits] == ["a", "b"]
    assert contents.bad_lines == ["line 3: not a journal record (nested too deeply)"]


@pytest.mark.parametrize("store", ["uncategorized", "holdout"])
def test_a_deep_workspace_file_is_a_value_error_naming_it(tmp_path, store):
    workspace = Workspace(tmp_path)
    csv = tmp_path / "train.csv"
    path = workspace.uncategorized_path(csv) if store == "uncategorized" else workspace.holdout_path
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(DEEP)
    load = (lambda: workspace.load_uncategorized(csv)) if store == "uncategorized" else workspace.load_holdout
    with pytest.raises(ValueError) as caught:
        load()
    assert str(caught.value).startswith(f"{path}: ") and str(caught.value).endswith("(nested too deeply)")


def test_a_deep_onnx_manifest_is_an_error_naming_it(tmp_path):
    from engine.model.onnx_export import MANIFEST_NAME, OnnxModelError
    from engine.model.onnx_runtime import read_manifest

    (tmp_path / MANIFEST_NAME).write_bytes(DEEP)
    with pytest.raises(OnnxModelError, match=rf"^{tmp_path / MANIFEST_NAME}: not an FKP ONNX model description \(nested too deeply\)$"):
        read_manifest(tmp_path)


def test_uncategorized_images_still_round_trip(tmp_path):
    workspace, csv = Workspace(tmp_path), tmp_path / "train.csv"
    coords, visibility = np.full((1, 24, 2), -1, np.float32), np.full((1, 24), -1, np.int8)
    coords[0, 3], visibility[0, 3] = (5, 6), 1
    workspace.save_uncategorized(csv, ["Images/x.jpg"], coords, visibility)
    ids, got_coords, got_vis = workspace.load_uncategorized(csv)
    assert ids == ["Images/x.jpg"] and got_coords[0, 3].tolist() == [5, 6] and got_vis[0, 3] == 1
