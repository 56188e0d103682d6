"""Loading and saving FashionAI annotation files: byte-exact round trips and bad-row reports."""

from __future__ import annotations

import codecs
import re
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.io.annotations import Annotations, RowProblem, concat_annotations, load_annotations, save_annotations
from engine.schema import CATEGORIES, CATEGORY_MASK, CSV_HEADER, KEYPOINT_INDEX

DATA = Path(__file__).resolve().parents[2] / "data" / "fashionai"
HEADER = ",".join(CSV_HEADER)
BLOUSE_ROW = (
    "Images/blouse/a.jpg,blouse,241_135_1,301_135_1,259_136_1,216_142_1,319_144_1,212_186_1,"
    "307_202_1,-1_-1_-1,-1_-1_-1,203_236_1,195_256_1,278_241_1,283_261_1,206_243_0,292_252_0,"
    "-1_-1_-1,-1_-1_-1,-1_-1_-1,-1_-1_-1,-1_-1_-1,-1_-1_-1,-1_-1_-1,-1_-1_-1,-1_-1_-1"
)
SKIRT_ROW = ("Images/skirt/b.jpg,skirt," + ",".join(["-1_-1_-1"] * 15)
             + ",100_50_1,200_52_1,90_300_1,512_310_0," + ",".join(["-1_-1_-1"] * 5))


def write(tmp_path: Path, text: str | bytes, name: str = "a.csv") -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def round_trip(path: Path, tmp_path: Path) -> bytes:
    out = tmp_path / ("saved_" + path.name)
    save_annotations(load_annotations(path), out)
    return out.read_bytes()


# --- real files -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["val.csv", "test_b.csv", "pred_blouse_test_b.csv"])
def test_real_files_round_trip_byte_for_byte(name: str, tmp_path: Path) -> None:
    path = DATA / name
    assert round_trip(path, tmp_path) == path.read_bytes()


def test_val_loads_every_row_except_exact_duplicates() -> None:
    ann = load_annotations(DATA / "val.csv")
    assert len(ann) == 6412 and ann.unparsed_count == 3
    assert [p.line for p in ann.problems] == [797, 941, 1376]
    for p in ann.problems:
        assert p.column == "image_id" and "duplicate image id" in p.reason and "exact copy" in p.reason
        # the duplicate's id is still loaded once, from its first row
        assert ann.image_ids[ann.index_of(p.image_id)] == p.image_id
    counts = np.bincount(ann.categories, minlength=5)
    assert dict(zip(CATEGORIES, counts.tolist())) == {
        "blouse": 1408, "outwear": 1173, "trousers": 1305, "skirt": 1394, "dress": 1132}
    assert ann.coords.dtype == np.float32 and ann.visibility.dtype == np.int8
    assert ann.coords.shape == (6412, 24, 2)
    # absent points are -1_-1_-1; coordinates reach the far border (x == 512)
    absent = ann.visibility == -1
    assert (ann.coords[absent] == -1).all() and (ann.coords[~absent] >= 0).all()
    assert ann.coords[~absent].max() == 512


def test_test_split_loads_without_keypoints() -> None:
    ann = load_annotations(DATA / "test_b.csv")
    assert not ann.has_keypoints and len(ann) == 9970 and not ann.problems
    assert ann.image_ids[0] == "Images/blouse/e21708ac483bc37679b26d064650bd40.jpg"
    assert CATEGORIES[ann.categories[0]] == "blouse"
    assert (ann.visibility == -1).all()


# --- layout preserved -----------------------------------------------------------------------


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
@pytest.mark.parametrize("bom", [False, True])
@pytest.mark.parametrize("final_newline", [False, True])
def test_line_endings_bom_and_final_newline_are_kept(tmp_path, newline, bom, final_newline) -> None:
    text = newline.join([HEADER, BLOUSE_ROW, SKIRT_ROW]) + (newline if final_newline else "")
    data = (codecs.BOM_UTF8 if bom else b"") + text.encode()
    path = write(tmp_path, data)
    ann = load_annotations(path)
    assert len(ann) == 2 and not ann.problems
    assert ann.image_ids[0] == "Images/blouse/a.jpg"  # the BOM is not part of any field
    assert round_trip(path, tmp_path) == data


def test_edited_coordinates_are_rounded_and_unparsed_rows_stay_in_place(tmp_path) -> None:
    bad = BLOUSE_ROW.replace("Images/blouse/a.jpg", "Images/blouse/c.jpg").replace("241_135_1", "241_135")
    path = write(tmp_path, "\r\n".join([HEADER, BLOUSE_ROW, bad, SKIRT_ROW]) + "\r\n")
    ann = load_annotations(path)
    assert len(ann) == 2 and ann.unparsed_count == 1
    ann.coords[1, KEYPOINT_INDEX["waistband_left"]] = (101.6, 49.4)
    save_annotations(ann, path)
    lines = path.read_bytes().decode().split("\r\n")
    assert lines[2] == bad  # verbatim, in place, with the file's CRLF
    assert lines[3] == SKIRT_ROW.replace("100_50_1", "102_49_1")
    again = load_annotations(path)
    assert again.coords[1, KEYPOINT_INDEX["waistband_left"]].tolist() == [102.0, 49.0]


def test_from_arrays_writes_a_canonical_file_that_loads_back(tmp_path) -> None:
    src = load_annotations(write(tmp_path, "\n".join([HEADER, BLOUSE_ROW, SKIRT_ROW]) + "\n"))
    new = Annotations.from_arrays(list(src.image_ids), src.categories, src.coords, src.visibility)
    out = tmp_path / "new.csv"
    save_annotations(new, out)
    assert out.read_bytes() == ("\n".join([HEADER, BLOUSE_ROW, SKIRT_ROW]) + "\n").encode()
    test_split = Annotations.from_arrays(["x.jpg"], [CATEGORIES.index("dress")])
    save_annotations(test_split, out)
    assert out.read_bytes() == b"image_id,image_category\nx.jpg,dress\n"


def test_subset_copy_and_index_of(tmp_path) -> None:
    ann = load_annotations(DATA / "val.csv")
    sub = ann.subset([5, 2])
    assert list(sub.image_ids) == [ann.image_ids[5], ann.image_ids[2]]
    assert sub.unparsed_count == 0 and sub.index_of(ann.image_ids[2]) == 1
    sub.coords[0, 0, 0] = -5
    assert ann.coords[5, 0, 0] != -5  # a subset does not share memory
    with pytest.raises(KeyError):
        sub.index_of("Images/blouse/not-there.jpg")
    dup = ann.copy()
    out = tmp_path / "copy.csv"
    save_annotations(dup, out)
    assert out.read_bytes() == (DATA / "val.csv").read_bytes()


def test_concat_keeps_every_row_in_order_and_writes_what_each_part_would(tmp_path) -> None:
    ann = load_annotations(DATA / "val.csv")
    a, b = ann.subset([7, 3]), ann.subset([0])
    both = concat_annotations(a, b)
    assert list(both.image_ids) == [ann.image_ids[7], ann.image_ids[3], ann.image_ids[0]]
    np.testing.assert_array_equal(both.coords, ann.coords[[7, 3, 0]])
    np.testing.assert_array_equal(both.visibility, ann.visibility[[7, 3, 0]])
    np.testing.assert_array_equal(both.categories, ann.categories[[7, 3, 0]])
    save_annotations(both, tmp_path / "both.csv")
    save_annotations(ann.subset([7, 3, 0]), tmp_path / "rows.csv")
    assert (tmp_path / "both.csv").read_bytes() == (tmp_path / "rows.csv").read_bytes()


def test_save_refuses_arrays_that_would_not_load_back_and_leaves_the_file(tmp_path) -> None:
    path = write(tmp_path, "\n".join([HEADER, BLOUSE_ROW]) + "\n")
    before = path.read_bytes()
    ann = load_annotations(path)
    ann.visibility[0, KEYPOINT_INDEX["crotch"]] = 1  # a blouse has no crotch
    ann.coords[0, KEYPOINT_INDEX["crotch"]] = (10, 10)
    with pytest.raises(ValueError, match="blouse has no crotch"):
        save_annotations(ann, path)
    assert path.read_bytes() == before
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


@pytest.mark.parametrize("edit, message", [
    (lambda a: a.visibility.__setitem__((0, 0), 2), "visibility 2 is not -1, 0 or 1"),
    (lambda a: a.coords.__setitem__((0, 0), (np.nan, 3)), "missing or out of range"),
    (lambda a: a.coords.__setitem__((0, 0), (-1.2, -0.9)), "present at (-1, -1)"),
    (lambda a: a.image_ids.__setitem__(0, "a,b.jpg"), "cannot be written"),
])
def test_save_refuses_each_kind_of_inconsistent_array(tmp_path, edit, message) -> None:
    path = write(tmp_path, "\n".join([HEADER, BLOUSE_ROW]) + "\n")
    ann = load_annotations(path)
    edit(ann)
    with pytest.raises(ValueError, match=re.escape(message)):
        save_annotations(ann, tmp_path / "out.csv")
    assert not (tmp_path / "out.csv").exists()


def test_absent_points_are_written_as_minus_ones_whatever_their_coordinates(tmp_path) -> None:
    ann = load_annotations(write(tmp_path, "\n".join([HEADER, BLOUSE_ROW]) + "\n"))
    k = KEYPOINT_INDEX["center_front"]
    ann.visibility[0, k] = -1
    out = tmp_path / "out.csv"
    save_annotations(ann, out)
    assert load_annotations(out).coords[0, k].tolist() == [-1, -1]


# --- bad rows: one test per kind --------------------------------------------------------------


def load_with_bad_row(tmp_path: Path, bad: str) -> tuple[Annotations, Path]:
    """A file with a good row, the bad row (line 3), a good row; checks nothing is lost."""
    text = "\n".join([HEADER, BLOUSE_ROW, bad, SKIRT_ROW]) + "\n"
    path = write(tmp_path, text)
    ann = load_annotations(path)
    assert list(ann.image_ids) == ["Images/blouse/a.jpg", "Images/skirt/b.jpg"]
    assert ann.unparsed_count == 1
    assert round_trip(path, tmp_path) == text.encode()
    return ann, path


def only_problem(ann: Annotations) -> RowProblem:
    assert len(ann.problems) >= 1
    assert {p.line for p in ann.problems} == {3}
    return ann.problems[0]


def other(row: str) -> str:
    return row.replace("/a.jpg", "/c.jpg")


def test_wrong_number_of_fields(tmp_path) -> None:
    ann, _ = load_with_bad_row(tmp_path, other(BLOUSE_ROW).rsplit(",", 1)[0])
    p = only_problem(ann)
    assert p.image_id == "Images/blouse/c.jpg" and "25 fields, expected 26" in p.reason
    assert p.raw == other(BLOUSE_ROW).rsplit(",", 1)[0]


@pytest.mark.parametrize("cell", ["241_135", "241_135_1_0", "a_135_1", "241.5_135_1", "", "241__1"])
def test_cell_not_int_int_int(tmp_path, cell) -> None:
    ann, _ = load_with_bad_row(tmp_path, other(BLOUSE_ROW).replace("241_135_1", cell))
    p = only_problem(ann)
    assert p.column == "neckline_left" and "not x_y_v" in p.reason and p.image_id == "Images/blouse/c.jpg"


@pytest.mark.parametrize("cell", ["0241_135_1", "+241_135_1", " 241_135_1", "241_135_01", "241_-0_1", "241_135_1 "])
def test_non_canonical_integers_are_kept_verbatim_not_rewritten(tmp_path, cell) -> None:
    ann, _ = load_with_bad_row(tmp_path, other(BLOUSE_ROW).replace("241_135_1", cell))
    assert only_problem(ann).column == "neckline_left"


def test_visibility_outside_minus_one_zero_one(tmp_path) -> None:
    ann, _ = load_with_bad_row(tmp_path, other(BLOUSE_ROW).replace("259_136_1", "259_136_2"))
    p = only_problem(ann)
    assert p.column == "center_front" and "visibility 2" in p.reason


def test_unknown_category(tmp_path) -> None:
    ann, _ = load_with_bad_row(tmp_path, other(BLOUSE_ROW).replace(",blouse,", ",jumpsuit,"))
    p = only_problem(ann)
    assert len(ann.problems) == 1
    assert p.column == "image_category" and "unknown category 'jumpsuit'" in p.reason


def test_absent_visibility_with_real_coordinates(tmp_path) -> None:
    row = other(BLOUSE_ROW).replace("241_135_1", "241_135_-1")
    ann, _ = load_with_bad_row(tmp_path, row)
    p = only_problem(ann)
    assert p.column == "neckline_left" and "visibility -1 (absent) with coordinates 241_135" in p.reason


def test_absent_coordinates_with_a_visibility(tmp_path) -> None:
    ann, _ = load_with_bad_row(tmp_path, other(BLOUSE_ROW).replace("241_135_1", "-1_-1_0"))
    p = only_problem(ann)
    assert p.column == "neckline_left" and "coordinates -1_-1 (absent) with visibility 0" in p.reason


def test_keypoint_present_that_the_category_does_not_have(tmp_path) -> None:
    cells = other(BLOUSE_ROW).split(",")
    cells[2 + KEYPOINT_INDEX["crotch"]] = "250_400_1"
    ann, _ = load_with_bad_row(tmp_path, ",".join(cells))
    p = only_problem(ann)
    assert p.column == "crotch" and "blouse has no crotch" in p.reason


def test_duplicate_image_id(tmp_path) -> None:
    dup = BLOUSE_ROW.replace("241_135_1", "240_135_1")
    ann, _ = load_with_bad_row(tmp_path, dup)
    p = only_problem(ann)
    assert p.column == "image_id" and "duplicate image id (first at line 2)" in p.reason
    assert ann.coords[0, 0, 0] == 241  # the first row wins


def test_missing_header_column(tmp_path) -> None:
    header = HEADER.replace(",crotch", "")
    text = "\n".join([header, BLOUSE_ROW, SKIRT_ROW]) + "\n"
    path = write(tmp_path, text)
    ann = load_annotations(path)
    assert ann.problems[0].line == 1 and ann.problems[0].column == "crotch"
    assert "missing column 'crotch'" in ann.problems[0].reason
    # the rows cannot be trusted column by column: none load, all are kept
    assert len(ann) == 0 and ann.unparsed_count == 2
    assert round_trip(path, tmp_path) == text.encode()


def test_misspelled_header_column(tmp_path) -> None:
    header = HEADER.replace("armpit_left", "armpitt_left")
    text = "\n".join([header, BLOUSE_ROW, SKIRT_ROW]) + "\n"
    path = write(tmp_path, text)
    ann = load_annotations(path)
    [p] = ann.problems
    assert (p.line, p.column) == (1, "armpit_left") and "'armpitt_left'" in p.reason
    assert len(ann) == 2  # columns are where FashionAI puts them, so the rows still load
    assert round_trip(path, tmp_path) == text.encode()


# --- other malformed input ----------------------------------------------------------------------


def test_mixed_line_endings_empty_lines_and_quotes_are_reported_and_kept(tmp_path) -> None:
    text = "\n".join([HEADER, BLOUSE_ROW, other(BLOUSE_ROW) + "\r", "", '"q.jpg",skirt,' + SKIRT_ROW.split(",", 2)[2],
                      SKIRT_ROW]) + "\n"
    path = write(tmp_path, text)
    ann = load_annotations(path)
    reasons = {p.line: p.reason for p in ann.problems}
    assert "mixed line endings" in reasons[3] and reasons[4] == "empty line" and "quoted" in reasons[5]
    assert len(ann) == 2
    assert round_trip(path, tmp_path) == text.encode()


def test_missing_header_row_and_empty_file(tmp_path) -> None:
    path = write(tmp_path, BLOUSE_ROW + "\n" + SKIRT_ROW + "\n")
    ann = load_annotations(path)
    assert len(ann) == 2 and "missing header row" in ann.problems[0].reason
    assert round_trip(path, tmp_path) == path.read_bytes()
    empty = write(tmp_path, b"", "empty.csv")
    ann = load_annotations(empty)
    assert len(ann) == 0 and "empty file" in ann.problems[0].reason
    assert round_trip(empty, tmp_path) == b""


def test_invalid_utf8_is_kept_byte_for_byte(tmp_path) -> None:
    data = (HEADER + "\n" + BLOUSE_ROW + "\n").encode() + b"Images/\xff.jpg,skirt," + SKIRT_ROW.split(",", 2)[2].encode() + b"\n"
    path = write(tmp_path, data)
    ann = load_annotations(path)
    assert len(ann) == 1 and ann.problems[0].line == 3 and "UTF-8" in ann.problems[0].reason
    assert round_trip(path, tmp_path) == data


def test_problem_message_names_file_line_image_and_column(tmp_path) -> None:
    ann, path = load_with_bad_row(tmp_path, other(BLOUSE_ROW).replace("259_136_1", "259_136_7"))
    msg = ann.problems[0].describe(path)
    assert msg.startswith(f"{path}:3") and "Images/blouse/c.jpg" in msg and "center_front" in msg


# --- property: random valid annotations round-trip ------------------------------------------------


@st.composite
def annotation_files(draw):
    n = draw(st.integers(0, 12))
    # Valid ids: paths under the root (an absolute one or a `..` step is a problem row).
    ids = draw(st.lists(st.text(st.sampled_from("abcXYZ019_-./ é"), min_size=1, max_size=12)
                        .filter(lambda s: s[0] not in '"/' and ".." not in s.split("/")),
                        min_size=n, max_size=n, unique=True))
    cats = np.array(draw(st.lists(st.integers(0, 4), min_size=n, max_size=n)), dtype=np.int8)
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    vis = rng.integers(-1, 2, size=(n, 24)).astype(np.int8)
    vis[~CATEGORY_MASK[cats.astype(int)]] = -1
    coords = rng.integers(0, 5000, size=(n, 24, 2)).astype(np.float32)
    coords[vis == -1] = -1
    layout = (draw(st.sampled_from(["\n", "\r\n"])), draw(st.booleans()), draw(st.booleans()))
    return ids, cats, coords, vis, layout


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(annotation_files())
def test_random_valid_annotations_round_trip(tmp_path, case) -> None:
    ids, cats, coords, vis, (newline, bom, final_newline) = case
    ann = Annotations.from_arrays(ids, cats, coords, vis)
    ann.newline, ann.bom, ann.final_newline = newline, bom, final_newline
    path = tmp_path / "random.csv"
    save_annotations(ann, path)
    first = path.read_bytes()
    back = load_annotations(path)
    assert not back.problems
    assert list(back.image_ids) == ids
    np.testing.assert_array_equal(back.categories, cats)
    np.testing.assert_array_equal(back.coords, coords)
    np.testing.assert_array_equal(back.visibility, vis)
    save_annotations(back, path)
    assert path.read_bytes() == first


def test_undecodable_bytes_in_cells_and_nul_in_ids_are_kept_verbatim(tmp_path) -> None:
    rest = SKIRT_ROW.split(",", 2)[2].encode()
    data = (HEADER + "\n" + BLOUSE_ROW + "\n").encode() + b"Images/d.jpg,skirt," + rest.replace(b"100_50_1", b"1\xfe0_50_1") \
        + b"\nImages/e\x00.jpg,skirt," + rest + b"\n"
    path = write(tmp_path, data)
    ann = load_annotations(path)
    assert list(ann.image_ids) == ["Images/blouse/a.jpg"]
    reasons = {p.line: (p.column, p.reason) for p in ann.problems}
    assert reasons[3][0] == "waistband_left" and "NUL" in reasons[4][1]
    assert round_trip(path, tmp_path) == data
