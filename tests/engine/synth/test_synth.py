"""The synthetic data generator: valid FashionAI files, keypoints on the garment, occlusion, determinism."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from engine import schema, synth
from engine.io.annotations import load_annotations
from engine.cli import main
from engine.io.images import read_image

REAL = Path(__file__).resolve().parents[2] / "data" / "fashionai" / "val.csv"


def _samples(seed: int, size=(256, 256), per_kind: int = 2) -> list[synth.Sample]:
    """Every category with no hard case and with each hard kind it can have."""
    rng = np.random.default_rng(seed)
    out = []
    for c in range(len(schema.CATEGORIES)):
        for kind in (None, *synth.hard_kinds_for(c)):
            for _ in range(per_kind if kind else 3 * per_kind):
                out.append(synth.render_sample(rng, c, size, kind))
    return out


@pytest.fixture(scope="module")
def samples() -> list[synth.Sample]:
    return _samples(7)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    synth.generate_dataset(out, 24, seed=5, size=256, hard_fraction=0.4, workers=1)
    return out


def _hard_rows(root: Path, split: str = "train") -> list[dict]:
    with open(root / "Annotations" / f"{split}_hard.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_every_row_valid_and_inside_its_image(dataset: Path) -> None:
    ann = load_annotations(dataset / "Annotations" / "train.csv")
    assert ann.problems == []
    assert len(ann) == 24
    cut = {r["image_id"] for r in _hard_rows(dataset) if r["hard_kind"] == "cut"}
    for i, image_id in enumerate(ann.image_ids):
        c = int(ann.categories[i])
        assert image_id.startswith(f"Images/{schema.CATEGORIES[c]}/") and image_id.endswith(".jpg")
        h, w = read_image(dataset / image_id).shape[:2]
        assert max(h, w) == 256 and min(h, w) >= 0.7 * 256
        present = ann.visibility[i] >= 0
        # exactly the category's points; a garment cut by the frame loses only out-of-frame ones
        assert not (present & ~schema.CATEGORY_MASK[c]).any()
        if image_id not in cut:
            assert (present == schema.CATEGORY_MASK[c]).all()
        a, b = schema.NORMALIZER_PAIRS[c]
        assert present[a] and present[b], "the normalizer pair is always in the frame"
        xy = ann.coords[i][present]
        assert (xy[:, 0] >= 0).all() and (xy[:, 0] <= w - 1).all()
        assert (xy[:, 1] >= 0).all() and (xy[:, 1] <= h - 1).all()
        assert (ann.coords[i][~present] == -1).all()


def test_points_lie_on_the_garment_and_occlusion_is_real(samples: list[synth.Sample]) -> None:
    for s in samples:
        present = s.visibility >= 0
        x, y = s.coords[present, 0].astype(int), s.coords[present, 1].astype(int)
        assert np.array_equal(s.coords[present], np.rint(s.coords[present])), "integer pixels, as written"
        v = s.visibility[present]
        assert s.garment_mask[y, x].all(), "every keypoint lies on the rendered garment"
        assert not s.occluder_mask[y[v == 1], x[v == 1]].any(), "visible points are not covered"
        assert s.occluder_mask[y[v == 0], x[v == 0]].all(), "occluded points are covered"
        assert s.image.dtype == np.uint8 and s.image.shape == (*s.garment_mask.shape, 3)


def test_occlusion_rates_resemble_the_real_data(samples: list[synth.Sample]) -> None:
    more = samples + _samples(8)
    present = np.concatenate([s.visibility >= 0 for s in more])
    occluded = np.concatenate([s.visibility == 0 for s in more])
    rate = occluded.sum() / present.sum()
    assert 0.08 < rate < 0.25, rate  # real val.csv: 15 %
    norm = [s.visibility[list(schema.NORMALIZER_PAIRS[s.category])] for s in more]
    share = np.mean([(n == 0).any() for n in norm])
    assert 0.3 < share < 0.75, share  # real: 48 % of rows


def test_left_is_image_left_for_upright_garments(samples: list[synth.Sample]) -> None:
    upright = [s for s in samples if s.hard_kind is None]
    checked = 0
    for s in upright:
        for a, b in schema.FLIP_PAIRS:
            if s.visibility[a] >= 0 and s.visibility[b] >= 0:
                assert s.coords[a, 0] < s.coords[b, 0], (schema.CATEGORIES[s.category], schema.KEYPOINTS[a])
                checked += 1
    assert checked > 100


def test_crossed_garments_swap_sides() -> None:
    rng = np.random.default_rng(3)
    for c, (a, b) in ((0, ("cuff_left_out", "cuff_right_out")), (2, ("bottom_left_out", "bottom_right_out"))):
        s = synth.render_sample(rng, c, (256, 256), "crossed")
        ka, kb = schema.KEYPOINT_INDEX[a], schema.KEYPOINT_INDEX[b]
        assert s.coords[ka, 0] > s.coords[kb, 0]
    with pytest.raises(ValueError, match="skirt"):
        synth.render_sample(rng, "skirt", (256, 256), "crossed")


def test_same_seed_is_byte_identical_whatever_the_workers(dataset: Path, tmp_path: Path) -> None:
    # a parent that already ran OpenCV's thread pool on a large image must not deadlock its workers
    synth.render_sample(np.random.default_rng(0), "dress", (512, 512))
    again = tmp_path / "again"
    synth.generate_dataset(again, 24, seed=5, size=256, hard_fraction=0.4, workers=2)
    files = sorted(p.relative_to(dataset) for p in dataset.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert (dataset / rel).read_bytes() == (again / rel).read_bytes(), rel
    other = tmp_path / "other"
    synth.generate_dataset(other, 24, seed=6, size=256, hard_fraction=0.4, workers=1)
    a, b = load_annotations(dataset / "Annotations" / "train.csv"), load_annotations(other / "Annotations" / "train.csv")
    assert set(a.image_ids).isdisjoint(b.image_ids)
    assert not np.array_equal(a.coords, b.coords)


def test_hard_case_file_matches_the_images(dataset: Path) -> None:
    ann = load_annotations(dataset / "Annotations" / "train.csv")
    rows = _hard_rows(dataset)
    assert 0 < len(rows) < len(ann)
    ids = set(ann.image_ids)
    for r in rows:
        assert r["image_id"] in ids and (dataset / r["image_id"]).is_file()
        cat = ann.categories[ann.index_of(r["image_id"])]
        assert r["hard_kind"] in synth.hard_kinds_for(int(cat))
    assert synth.load_hard_kinds(dataset, "train") == {r["image_id"]: r["hard_kind"] for r in rows}


def test_hard_fraction_extremes(tmp_path: Path) -> None:
    synth.generate_dataset(tmp_path / "all", 12, seed=1, size=128, hard_fraction=1.0, workers=1)
    synth.generate_dataset(tmp_path / "none", 12, seed=1, size=128, hard_fraction=0.0, workers=1)
    assert len(_hard_rows(tmp_path / "all")) == 12
    assert _hard_rows(tmp_path / "none") == []
    with pytest.raises(ValueError, match="hard_fraction"):
        synth.generate_dataset(tmp_path / "bad", 1, hard_fraction=1.5)


def test_cut_garments_lose_out_of_frame_points() -> None:
    rng = np.random.default_rng(11)
    lost = 0
    for i in range(10):
        c = i % len(schema.CATEGORIES)
        s = synth.render_sample(rng, c, (256, 256), "cut")
        lost += int((schema.CATEGORY_MASK[c] & (s.visibility < 0)).sum())
        # the garment reaches the frame edge
        m = s.garment_mask
        assert m[0].any() or m[-1].any() or m[:, 0].any() or m[:, -1].any()
    assert lost > 0


def test_annotations_only_is_valid_and_varied(tmp_path: Path) -> None:
    csv_path = synth.generate_dataset(tmp_path, 3000, seed=2, size=512, annotations_only=True)
    assert not (tmp_path / "Images").exists()
    ann = load_annotations(csv_path)
    assert ann.problems == [] and len(ann) == 3000
    assert set(np.unique(ann.categories)) == set(range(len(schema.CATEGORIES)))
    present = ann.visibility >= 0
    rate = (ann.visibility == 0).sum() / present.sum()
    assert 0.1 < rate < 0.2, rate
    y = np.where(present, ann.coords[..., 1], np.nan)
    height = (np.nanmax(y, axis=1) - np.nanmin(y, axis=1)) / 512
    assert height.min() < 0.3 and height.max() > 0.9  # scale 25-95 % of the image height
    cx = np.nanmean(np.where(present, ann.coords[..., 0], np.nan), axis=1)
    assert cx.min() < 150 and cx.max() > 360  # anywhere in the frame


def test_layouts_follow_the_real_geometry() -> None:
    table = synth.load_layouts(REAL)
    assert all(len(table[c]) > 100 for c in range(len(schema.CATEGORIES)))
    rng = np.random.default_rng(4)
    for c in range(len(schema.CATEGORIES)):
        layout = table[c][5]
        s = synth.render_sample(rng, c, (256, 256), None, layout)
        m = schema.CATEGORY_MASK[c]
        src = layout[m]
        dst = s.coords[m].astype(np.float64)
        # a least-squares affine map from the layout explains the rendered points up to jitter
        A = np.c_[src, np.ones(len(src))]
        fit, *_ = np.linalg.lstsq(A, dst, rcond=None)
        resid = np.abs(A @ fit - dst).max()
        height = dst[:, 1].max() - dst[:, 1].min()
        assert resid < 0.12 * height, (schema.CATEGORIES[c], resid, height)


def test_generate_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="jumpsuit"):
        synth.generate_dataset(tmp_path, 1, categories="blouse,jumpsuit")
    with pytest.raises(ValueError, match="no keypoint columns"):
        synth.generate_dataset(tmp_path, 1, layouts=REAL.parent / "test_b.csv")


def test_cli_synth(tmp_path: Path, capsys) -> None:
    out = tmp_path / "data"
    assert main(["synth", str(out), "--n", "6", "--size", "128", "--seed", "3", "--workers", "1",
                 "--categories", "skirt,trousers", "--layouts", str(REAL)]) == 0
    ann = load_annotations(out / "Annotations" / "train.csv")
    assert ann.problems == [] and len(ann) == 6
    assert {schema.CATEGORIES[c] for c in ann.categories} <= {"skirt", "trousers"}
    sheet = tmp_path / "sheet.png"
    assert main(["synth", "--contact-sheet", str(sheet)]) == 0
    assert read_image(sheet).shape[1] == 5 * 256
    assert main(["synth", str(tmp_path / "x")]) == 2
    assert "--n" in capsys.readouterr().err


def test_render_sample_rejects_bad_input() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="layout"):
        synth.render_sample(rng, "skirt", (128, 128), None, np.zeros((4, 2)))
    with pytest.raises(ValueError, match="too small"):
        synth.render_sample(rng, "skirt", (16, 128))
    with pytest.raises(ValueError, match="hard kind"):
        synth.render_sample(rng, "blouse", (128, 128), "upside_down")
