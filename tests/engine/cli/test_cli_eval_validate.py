"""`fkp eval` and `fkp validate` through the command-line entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from engine.cli import main
from engine.schema import CSV_HEADER

DATA = Path(__file__).resolve().parents[2] / "data" / "fashionai"
VAL = str(DATA / "val.csv")
PRED = str(DATA / "pred_blouse_test_b.csv")


def test_eval_prints_ne_and_tables(capsys) -> None:
    assert main(["eval", VAL, PRED, "--intersect"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("NE 3.979 % over 1772 visible points in 172 images")
    assert "172 of 6412 ground-truth images have predictions" in out
    table = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith(("blouse ", "armpit_left "))}
    assert table["blouse"] == ["3.979", "1772"]
    assert table["armpit_left"][1] == "73"


def test_eval_json(capsys) -> None:
    assert main(["eval", VAL, PRED, "--intersect", "--json"]) == 0
    captured = capsys.readouterr()
    doc = json.loads(captured.out)
    assert round(doc["ne"], 5) == 0.03979 and doc["n_visible"] == 1772 and doc["n_images"] == 172
    assert len(doc["per_image"]) == 172 and doc["excluded"] == [] and doc["missing"] == 0
    assert doc["per_category"]["blouse"]["n"] == 1772
    assert "val.csv: 3 problems" in captured.err  # the duplicate rows are reported, not hidden


def test_eval_missing_penalty_changes_the_score(capsys) -> None:
    main(["eval", VAL, PRED, "--json"])
    default = json.loads(capsys.readouterr().out)
    main(["eval", VAL, PRED, "--json", "--missing-penalty", "0"])
    zero = json.loads(capsys.readouterr().out)
    assert default["missing"] == zero["missing"] > 0
    assert zero["ne"] < default["ne"]
    assert len(default["excluded"]) == 40
    assert default["excluded"][0]["reason"].startswith("normalizer point")


def test_eval_of_a_missing_file_is_a_clear_error(tmp_path, capsys) -> None:
    assert main(["eval", str(tmp_path / "nope.csv"), PRED]) == 2
    assert "nope.csv" in capsys.readouterr().err


def test_validate_clean_file_exits_0(capsys) -> None:
    assert main(["validate", str(DATA / "test_b.csv")]) == 0
    assert "9970 rows loaded, 0 rows not parsed" in capsys.readouterr().out


def test_validate_lists_every_problem_and_exits_1(tmp_path, capsys) -> None:
    row = "img/a.jpg,skirt," + ",".join(["-1_-1_-1"] * 15) + ",1_2_1,3_4_1,5_6_1,7_8_1," + ",".join(["-1_-1_-1"] * 5)
    bad_v = row.replace("img/a.jpg", "img/b.jpg").replace("1_2_1", "1_2_3")
    bad_cat = row.replace("img/a.jpg", "img/c.jpg").replace(",skirt,", ",skort,")
    path = tmp_path / "bad.csv"
    path.write_text("\n".join([",".join(CSV_HEADER), row, bad_v, bad_cat]) + "\n")
    assert main(["validate", str(path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{path}:3, image img/b.jpg, column waistband_left: visibility 3 is not -1, 0 or 1"
    assert lines[1].startswith(f"{path}:4, image img/c.jpg, column image_category: unknown category 'skort'")
    assert "1 rows loaded, 2 rows not parsed" in lines[-1]


def test_validate_json(capsys) -> None:
    assert main(["validate", VAL, "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["ok"] is False and doc["rows"] == 6412 and doc["unparsed"] == 3
    assert [p["line"] for p in doc["problems"]] == [797, 941, 1376]
    assert doc["problems"][0]["raw"].startswith("Images/blouse/e44dba9cb7a9cca78fff0bdeeaf41757.jpg,blouse,")


@pytest.mark.parametrize("command", ["eval", "validate"])
def test_help_mentions_the_command(command, capsys) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert command in capsys.readouterr().out
