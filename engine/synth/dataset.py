"""Synthetic data sets on disk: `generate_dataset` renders garments (`engine.synth.garments`) into
the FashionAI layout (`Images/<category>/<id>.jpg`, `Annotations/<split>.csv`, the hard cases
in `<split>_hard.csv`), byte-identical for the same seed whatever the number of workers; a
contact sheet shows samples with their keypoints.
"""

from __future__ import annotations

import errno
import hashlib
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from engine import schema
from engine.synth.garments import (HARD_KINDS, OCCLUSION_RATES, category_code_of, garment_geometry,
                                     hard_kinds_for, render_sample)
from engine.schema import CATEGORIES, CATEGORY_MASK, NUM_KEYPOINTS


# --- data sets ---------------------------------------------------------------------------------


def _categories(categories) -> tuple[int, ...]:
    if categories is None:
        return tuple(range(len(CATEGORIES)))
    if isinstance(categories, str):
        categories = [c for c in categories.split(",") if c.strip()]
    codes = tuple(dict.fromkeys(category_code_of(c.strip() if isinstance(c, str) else c) for c in categories))
    if not codes:
        raise ValueError("no categories given")
    return codes


def load_layouts(path: str | os.PathLike) -> dict[int, np.ndarray]:
    """Real keypoint layouts per category from a FashionAI CSV: (m, 24, 2), centred, unit height.

    Only rows with every keypoint of their category present (v >= 0) and a non-degenerate
    extent are used.
    """
    from engine.io.annotations import load_annotations

    ann = load_annotations(path)
    if not ann.has_keypoints:
        raise ValueError(f"{path}: has no keypoint columns; --layouts needs an annotated FashionAI CSV")
    out: dict[int, np.ndarray] = {}
    for c in range(len(CATEGORIES)):
        m = CATEGORY_MASK[c]
        rows = (ann.categories == c) & (ann.visibility[:, m] >= 0).all(axis=1)
        K = ann.coords[rows].astype(np.float64)
        K[:, ~m] = np.nan
        lo, hi = np.nanmin(K, axis=1), np.nanmax(K, axis=1)
        ext = hi[:, 1] - lo[:, 1]
        ok = ext > 4
        K, lo, hi, ext = K[ok], lo[ok], hi[ok], ext[ok]
        out[c] = (K - ((lo + hi) / 2)[:, None, :]) / ext[:, None, None]
    return out


def _image_size(rng: np.random.Generator, size: int) -> tuple[int, int]:
    """(H, W): mostly square like FashionAI, sometimes one side shorter."""
    if rng.random() < 0.75:
        return size, size
    short = int(round(size * rng.uniform(0.7, 0.95)))
    return (size, short) if rng.random() < 0.5 else (short, size)


def _image_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(split.encode()), int(index)]))


def _image_id(seed: int, split: str, index: int, category: int) -> str:
    digest = hashlib.md5(f"fkp-synth:{seed}:{split}:{index}".encode()).hexdigest()
    return f"Images/{CATEGORIES[category]}/{digest}.jpg"


@dataclass(frozen=True)
class _Job:
    """Everything one image needs besides its index; sent once to each worker."""

    out: Path
    seed: int
    split: str
    size: int
    categories: tuple[int, ...]
    hard_fraction: float
    layouts: dict[int, np.ndarray] | None

    def __call__(self, index: int) -> tuple[str, int, np.ndarray, np.ndarray, str | None]:
        from engine.io.images import write_jpeg

        rng = _image_rng(self.seed, self.split, index)
        c = self.categories[rng.integers(len(self.categories))]
        hard = None
        if rng.random() < self.hard_fraction:
            kinds = hard_kinds_for(c)
            hard = kinds[rng.integers(len(kinds))]
        layout = None
        if self.layouts is not None:
            table = self.layouts[c]
            layout = table[rng.integers(len(table))]
        s = render_sample(rng, c, _image_size(rng, self.size), hard, layout)
        image_id = _image_id(self.seed, self.split, index, c)
        write_jpeg(self.out / image_id, s.image, quality=int(rng.integers(60, 96)))
        return image_id, c, s.coords, s.visibility, hard


_WORKER_JOB: _Job | None = None


def _init_worker(job: _Job) -> None:
    global _WORKER_JOB
    _WORKER_JOB = job
    cv2.setNumThreads(1)  # one process per core already


def _run_job(index: int):
    assert _WORKER_JOB is not None
    return _WORKER_JOB(index)


def _render_all(job: _Job, n: int, workers: int, progress: Callable[[int, int], None] | None) -> list:
    """Render images 0..n-1 (in order), in `workers` processes when that pays."""
    def collect(results) -> list:
        out = []
        for r in results:
            out.append(r)
            if progress is not None:
                progress(len(out), n)
        return out

    if workers <= 1 or n < 4 * workers:
        return collect(job(i) for i in range(n))
    import multiprocessing as mp

    # never plain fork: a parent that already used OpenCV's thread pool deadlocks its children
    method = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    with mp.get_context(method).Pool(workers, initializer=_init_worker, initargs=(job,)) as pool:
        return collect(pool.imap(_run_job, range(n), chunksize=max(1, min(16, n // (workers * 8)))))


def _annotation_rows(n: int, seed: int, split: str, size: int, categories: tuple[int, ...],
                     hard_fraction: float, layouts: dict[int, np.ndarray] | None):
    """Rows without images, vectorized per category; visibility drawn at the real rates."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(split.encode()), 2**31]))
    cats = np.asarray(categories)[rng.integers(len(categories), size=n)]
    hard = np.full(n, "", dtype=object)
    is_hard = rng.random(n) < hard_fraction
    coords = np.full((n, NUM_KEYPOINTS, 2), -1, np.float32)
    vis = np.full((n, NUM_KEYPOINTS), -1, np.int8)
    square = rng.random(n) < 0.75
    short = np.rint(size * rng.uniform(0.7, 0.95, n)).astype(int)
    tall = rng.random(n) < 0.5
    H = np.where(square | tall, size, short)
    W = np.where(square | ~tall, size, short)
    for c in categories:
        rows = np.flatnonzero(cats == c)
        kinds = np.array(hard_kinds_for(c), dtype=object)
        h = rows[is_hard[rows]]
        hard[h] = kinds[rng.integers(len(kinds), size=len(h))]
        P, present = garment_geometry(rng, int(c), len(rows), H[rows], W[rows], hard[rows],
                               None if layouts is None else layouts[int(c)])
        occluded = rng.random(present.shape) < OCCLUSION_RATES[c]
        coords[rows] = np.where(present[..., None], P, -1)
        vis[rows] = np.where(present, np.where(occluded, 0, 1), -1)
    digests = [hashlib.md5(f"fkp-synth:{seed}:{split}:{i}".encode()).hexdigest() for i in range(n)]
    ids = [f"Images/{CATEGORIES[c]}/{d}.jpg" for c, d in zip(cats, digests)]
    kinds_out = [k or None for k in hard]
    return ids, cats, coords, vis, kinds_out


def generate_dataset(out: str | os.PathLike, n: int, seed: int = 0, split: str = "train", size: int = 512,
                     categories=None, hard_fraction: float = 0.1, annotations_only: bool = False,
                     layouts: str | os.PathLike | None = None, workers: int | None = None,
                     progress: Callable[[int, int], None] | None = None, overwrite: bool = False) -> Path:
    """Write a synthetic FashionAI split under `out`; returns the path of `Annotations/<split>.csv`.

    An existing `Annotations/<split>.csv` (or its `_hard.csv`) is replaced only with `overwrite`:
    otherwise FileExistsError, before anything is written. Other splits in `out` are left alone
    (image ids depend on the seed and split, so they never collide).

    Images go to `out/Images/<category>/<id>.jpg`, the hard cases' ids and kinds to
    `Annotations/<split>_hard.csv`. With `annotations_only` no image is rendered: geometry comes
    from the same model, visibility is drawn at the real per-keypoint rates. `progress(done, n)`
    is called after each image.
    """
    from engine.io.annotations import Annotations, save_annotations
    from engine.io.files import atomic_write_text

    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    if not 0.0 <= hard_fraction <= 1.0:
        raise ValueError(f"hard_fraction must be in [0, 1], got {hard_fraction}")
    if size < 64:
        raise ValueError(f"size must be at least 64 pixels, got {size}")
    if not split or any(ch in split for ch in "/\\") or split.startswith("."):
        raise ValueError(f"split {split!r} is not a plain file name")
    out = Path(out)
    csv_path = out / "Annotations" / f"{split}.csv"
    hard_path = out / "Annotations" / f"{split}_hard.csv"
    existing = [p for p in (csv_path, hard_path) if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(errno.EEXIST, "exists already (pass --overwrite to replace it)", str(existing[0]))
    cats = _categories(categories)
    table = load_layouts(layouts) if layouts is not None else None
    if table is not None:
        empty = [CATEGORIES[c] for c in cats if len(table[c]) == 0]
        if empty:
            raise ValueError(f"{layouts}: no complete {', '.join(empty)} layout in the file")
    (out / "Annotations").mkdir(parents=True, exist_ok=True)
    if annotations_only:
        ids, cat_arr, coords, vis, kinds = _annotation_rows(n, seed, split, size, cats, hard_fraction, table)
    else:
        for c in cats:
            (out / "Images" / CATEGORIES[c]).mkdir(parents=True, exist_ok=True)
        job = _Job(out, int(seed), split, int(size), cats, float(hard_fraction), table)
        results = _render_all(job, n, workers if workers is not None else (os.cpu_count() or 1), progress)
        ids = [r[0] for r in results]
        cat_arr = np.array([r[1] for r in results], dtype=np.int64)
        coords = np.stack([r[2] for r in results]) if results else np.zeros((0, NUM_KEYPOINTS, 2), np.float32)
        vis = np.stack([r[3] for r in results]) if results else np.zeros((0, NUM_KEYPOINTS), np.int8)
        kinds = [r[4] for r in results]
    save_annotations(Annotations.from_arrays(ids, cat_arr, coords, vis), csv_path)
    hard_lines = ["image_id,hard_kind"] + [f"{i},{k}" for i, k in zip(ids, kinds) if k]
    atomic_write_text(hard_path, "\n".join(hard_lines) + "\n")
    return csv_path


def load_hard_kinds(root: str | os.PathLike, split: str) -> dict[str, str]:
    """Image id -> hard kind, from the `Annotations/<split>_hard.csv` that `generate_dataset` wrote."""
    lines = (Path(root) / "Annotations" / f"{split}_hard.csv").read_text(encoding="utf-8").splitlines()[1:]
    return dict(line.rsplit(",", 1) for line in lines if line.strip())


# --- contact sheet -----------------------------------------------------------------------------

_PALETTE = np.array([cv2.cvtColor(np.uint8([[[int(180 * k / NUM_KEYPOINTS), 230, 255]]]), cv2.COLOR_HSV2RGB)[0, 0]
                     for k in range(NUM_KEYPOINTS)])


def draw_keypoints(image: np.ndarray, category: int, coords: np.ndarray, visibility: np.ndarray) -> np.ndarray:
    """A copy of `image` with the skeleton, visible points (filled) and occluded points (rings)."""
    img = image.copy()
    r = max(2, int(min(img.shape[:2]) / 100))
    for a, b in schema.SKELETONS[category]:
        if visibility[a] >= 0 and visibility[b] >= 0:
            cv2.line(img, tuple(int(v) for v in coords[a]), tuple(int(v) for v in coords[b]),
                     (255, 255, 255), 1, cv2.LINE_AA)
    for k in np.flatnonzero(visibility >= 0):
        p = (int(coords[k, 0]), int(coords[k, 1]))
        col = tuple(int(v) for v in _PALETTE[k])
        if visibility[k] == 1:
            cv2.circle(img, p, r + 1, (0, 0, 0), -1, cv2.LINE_AA)
            cv2.circle(img, p, r, col, -1, cv2.LINE_AA)
        else:
            cv2.circle(img, p, r + 1, (255, 0, 0), 2, cv2.LINE_AA)
    return img


def contact_sheet(path: str | os.PathLike, seed: int = 0, tile: int = 256, cols: int = 5, rows: int = 4,
                  layouts: str | os.PathLike | None = None) -> None:
    """Write a PNG grid of rendered samples with their keypoints (filled: visible, red ring: occluded)."""
    from engine.io.files import atomic_write_bytes

    table = load_layouts(layouts) if layouts is not None else None
    sheet = np.full((rows * (tile + 18), cols * tile, 3), 255, np.uint8)
    for i in range(rows * cols):
        rng = _image_rng(seed, "contact-sheet", i)
        c = i % len(CATEGORIES)
        kinds = hard_kinds_for(c)
        # the last row shows one hard case per category, each kind at least once
        want = HARD_KINDS[c % len(HARD_KINDS)]
        hard = (want if want in kinds else kinds[-1]) if i >= (rows - 1) * cols else None
        layout = None if table is None else table[c][rng.integers(len(table[c]))]
        s = render_sample(rng, c, _image_size(rng, 512), hard, layout)
        img = draw_keypoints(s.image, c, s.coords, s.visibility)
        H, W = img.shape[:2]
        f = tile / max(H, W)
        small = cv2.resize(img, (int(round(W * f)), int(round(H * f))), interpolation=cv2.INTER_AREA)
        y0, x0 = (i // cols) * (tile + 18), (i % cols) * tile
        sheet[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small
        label = CATEGORIES[c] + (f" [{hard}]" if hard else "") + f"  occl {int((s.visibility == 0).sum())}"
        cv2.putText(sheet, label, (x0 + 4, y0 + tile + 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f"{path}: PNG encoding failed")
    atomic_write_bytes(path, buf.tobytes())
