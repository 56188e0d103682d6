"""`fkp train-hints`: a package's keypoint net taught to take hints, written as a format-2
package the refinement after a correction uses (issue 32 (b)); its runtime arguments are the
shared ones (`add_runtime_arguments`)."""

from __future__ import annotations

import json
from pathlib import Path

from engine.cli import main

DEMO = Path(__file__).resolve().parents[3] / "resources" / "models" / "demo" / "model.fkpmodel"


def test_train_hints_writes_a_hint_taking_package_and_reports_its_curves(tmp_path, capsys):
    from engine.model.hint_refine import takes_hints
    from engine.model.package import load_model

    for split, n, seed in (("train", 4, 0), ("val", 2, 5)):
        assert main(["synth", str(tmp_path / "data"), "--n", str(n), "--split", split, "--seed", str(seed),
                     "--size", "128"]) == 0
    capsys.readouterr()
    out = tmp_path / "hints.fkpmodel"
    assert main(["train-hints", "--model", str(DEMO), "--data", str(tmp_path / "data"), "--out", str(out),
                 "--steps", "2", "--val-limit", "2", "--skip-before", "--threads", "1", "--seed", "3"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["steps"] == 2 and len(report["gt_crop_after"]["hinted"]) == 6
    assert 0 < report["two_stage_val_ne_after"] < 1
    assert takes_hints(load_model(out)) and not takes_hints(load_model(DEMO))
