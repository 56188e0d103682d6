"""COCO keypoints JSON <-> FashionAI annotations, losslessly for files this module wrote.

Export (`to_coco`): one COCO category per garment category (ids 1..5 in `schema.CATEGORIES`
order), each listing all 24 FashionAI keypoint names in CSV slot order and its skeleton
(1-based indices into those 24 slots, from `schema.SKELETONS`); one image and one annotation
per row (ids 1..N in row order, or taken from another COCO file by file name); visibility
FashionAI -1 / 0 / 1 -> COCO 0 / 1 / 2, an absent point written `0, 0, 0`; bbox and area
from the present keypoints; image width and height read from the image files' headers when
they exist (left out otherwise).

The CSV layout that COCO cannot hold (header text, line ending, BOM, final newline, and the
rows the loader kept verbatim, e.g. duplicate image ids) travels in an extra top-level key,
`"fashionai_csv"`, which COCO tools ignore; `from_coco` restores it, so CSV -> COCO -> CSV
gives the same bytes.

Import (`from_coco`) also reads COCO files from other tools (CVAT, FiftyOne, mmpose, ...):
categories are matched by name (one of the five garments), keypoints by name (any subset, in
any order); images without an annotation are skipped and reported. Predictions export as
COCO *results* (`to_coco_results`): `{image_id, category_id, keypoints, score}` per image.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine.io.annotations import Annotations
from engine.io.files import atomic_write_text
from engine.io.images import ImageError, image_size
from engine.schema import CATEGORIES, CATEGORY_MASK, KEYPOINT_INDEX, KEYPOINTS, NUM_KEYPOINTS, SKELETONS

EXTENSION_KEY = "fashionai_csv"
EXTENSION_VERSION = 1
# FashionAI visibility -1, 0, 1 -> COCO 0, 1, 2 (and back).
_TO_COCO_V = np.array([0, 1, 2], dtype=np.int64)  # indexed by FashionAI v + 1


class CocoError(ValueError):
    """A COCO file that cannot be read as FashionAI annotations; the message names the file."""


def coco_categories() -> list[dict[str, Any]]:
    """The five garment categories with their 24 keypoint names and 1-based skeletons."""
    return [
        {"id": c + 1, "name": name, "supercategory": "garment", "keypoints": list(KEYPOINTS),
         "skeleton": [[a + 1, b + 1] for a, b in SKELETONS[c]]}
        for c, name in enumerate(CATEGORIES)
    ]


def image_sizes(image_ids: Sequence[str], root: str | os.PathLike) -> list[tuple[int, int] | None]:
    """(width, height) of `root / image_id` (`engine.io.images.image_size`: a JPEG's or PNG's
    header); None where the file is missing or not an image."""
    root = Path(root)
    sizes: list[tuple[int, int] | None] = []
    for image_id in image_ids:
        try:
            sizes.append(image_size(root / image_id, root))
        except ImageError:
            sizes.append(None)
    return sizes


def _coco_keypoints(coords: np.ndarray, visibility: np.ndarray) -> np.ndarray:
    """(N, 72) COCO keypoint triplets; absent points are 0, 0, 0."""
    coords = np.asarray(coords, dtype=np.float64)
    vis = np.asarray(visibility, dtype=np.int64)
    present = vis != -1
    xy = np.where(present[:, :, None], coords, 0.0)
    if np.array_equal(xy, np.rint(xy)):
        xy = xy.astype(np.int64)  # FashionAI coordinates are integers: keep them so
    else:
        xy = np.round(xy, 3)
    out = np.empty((len(vis), NUM_KEYPOINTS, 3), dtype=xy.dtype)
    out[:, :, :2] = xy
    out[:, :, 2] = _TO_COCO_V[vis + 1]
    return out.reshape(len(vis), 3 * NUM_KEYPOINTS)


def _boxes(coords: np.ndarray, visibility: np.ndarray) -> np.ndarray:
    """(N, 4) [x, y, w, h] around the present keypoints; zeros where there are none."""
    present = np.asarray(visibility) != -1
    c = np.asarray(coords, dtype=np.float64)
    lo = np.where(present[:, :, None], c, np.inf).min(axis=1)
    hi = np.where(present[:, :, None], c, -np.inf).max(axis=1)
    box = np.concatenate([lo, hi - lo], axis=1)
    box[~present.any(axis=1)] = 0.0
    return box


def _numbers(a: np.ndarray) -> np.ndarray:
    """Integers when every value is one (FashionAI's are), else floats rounded to 3 decimals."""
    a = np.asarray(a, dtype=np.float64)
    r = np.rint(a)
    return r.astype(np.int64) if np.array_equal(a, r) else np.round(a, 3)


def _image_ids(ann: Annotations, id_map: dict[str, int] | None, what: str) -> list[int]:
    if id_map is None:
        return list(range(1, len(ann) + 1))
    missing = [str(i) for i in ann.image_ids if str(i) not in id_map]
    if missing:
        raise CocoError(f"{len(missing)} {what} images are not in the COCO image list given, e.g. {missing[0]}")
    return [id_map[str(i)] for i in ann.image_ids]


def to_coco(ann: Annotations, images_root: str | os.PathLike | None = None,
            id_map: dict[str, int] | None = None) -> dict[str, Any]:
    """The COCO keypoints object of an annotation file (see the module docstring).

    `images_root`: where `image_id` paths resolve, for image sizes. `id_map`: file name ->
    COCO image id to use (default: 1..N in row order).
    """
    ids = _image_ids(ann, id_map, "annotated")
    sizes = image_sizes(ann.image_ids.tolist(), images_root) if images_root is not None else [None] * len(ann)
    images = []
    for image_id, name, size in zip(ids, ann.image_ids.tolist(), sizes):
        entry: dict[str, Any] = {"id": image_id, "file_name": str(name)}
        if size is not None:
            entry["width"], entry["height"] = size
        images.append(entry)
    kps = _coco_keypoints(ann.coords, ann.visibility).tolist()
    box = _boxes(ann.coords, ann.visibility)
    boxes = _numbers(box).tolist()
    areas = _numbers(box[:, 2] * box[:, 3]).tolist()
    counts = np.count_nonzero(np.asarray(ann.visibility) != -1, axis=1).tolist()
    cats = (np.asarray(ann.categories, dtype=np.int64) + 1).tolist()
    annotations = [
        {"id": image_id, "image_id": image_id, "category_id": cat, "keypoints": kp, "num_keypoints": n,
         "bbox": b, "area": area, "iscrowd": 0}
        for image_id, cat, kp, n, b, area in zip(ids, cats, kps, counts, boxes, areas)
    ]
    return {
        "info": {"description": "FashionAI keypoints exported by FKP Studio (fkp export-coco)"},
        "images": images,
        "annotations": annotations,
        "categories": coco_categories(),
        EXTENSION_KEY: {
            "version": EXTENSION_VERSION,
            "has_keypoints": bool(ann.has_keypoints),
            "header": ann.header,
            "newline": ann.newline,
            "bom": bool(ann.bom),
            "final_newline": bool(ann.final_newline),
            "verbatim": [[int(pos), text] for pos, text in ann.verbatim],
        },
    }


def to_coco_results(pred: Annotations, scores: np.ndarray | None = None,
                    id_map: dict[str, int] | None = None) -> list[dict[str, Any]]:
    """COCO keypoint *results* of a prediction file: one `{image_id, category_id, keypoints,
    score}` per row. The score is the mean confidence of the row's keypoints (`scores`
    (N, 24), -1 or NaN where none; 0 for a row with none); 1.0 for every row when `scores` is
    None (no scores file)."""
    ids = _image_ids(pred, id_map, "predicted")
    if scores is None:
        row_scores = np.ones(len(pred))
    else:
        s = np.asarray(scores, dtype=np.float64)
        if s.shape != (len(pred), NUM_KEYPOINTS):
            raise ValueError(f"scores have shape {s.shape}, expected ({len(pred)}, {NUM_KEYPOINTS})")
        valid = np.isfinite(s) & (s >= 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            row_scores = np.where(valid, s, 0.0).sum(axis=1) / valid.sum(axis=1)
        row_scores = np.where(np.isfinite(row_scores), row_scores, 0.0)
    kps = _coco_keypoints(pred.coords, pred.visibility).tolist()
    cats = (np.asarray(pred.categories, dtype=np.int64) + 1).tolist()
    return [{"image_id": i, "category_id": c, "keypoints": kp, "score": round(float(sc), 4)}
            for i, c, kp, sc in zip(ids, cats, kps, row_scores)]


def image_id_map(coco: dict[str, Any], path: str | os.PathLike = "<coco>") -> dict[str, int]:
    """file name -> image id of a COCO object's image list."""
    images = coco.get("images") if isinstance(coco, dict) else None
    if not isinstance(images, list):
        raise CocoError(f"{path}: no \"images\" list")
    out: dict[str, int] = {}
    for i, im in enumerate(images):
        if not isinstance(im, dict) or not isinstance(im.get("file_name"), str) or not isinstance(im.get("id"), int):
            raise CocoError(f"{path}: images[{i}] needs an integer \"id\" and a string \"file_name\"")
        if im["file_name"] in out:
            raise CocoError(f"{path}: images[{i}]: file name {im['file_name']!r} is listed twice")
        out[im["file_name"]] = im["id"]
    if len(set(out.values())) != len(out):
        raise CocoError(f"{path}: two images share an id")
    return out


def save_coco(obj: dict[str, Any] | list[Any], path: str | os.PathLike) -> None:
    """Write a COCO object atomically (compact JSON, non-ASCII escaped)."""
    atomic_write_text(path, json.dumps(obj, separators=(",", ":")) + "\n")


def read_coco(path: str | os.PathLike) -> dict[str, Any]:
    """Parse a COCO JSON file; CocoError naming the file when it is not a JSON object."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
        obj = json.loads(text)
    except UnicodeDecodeError as e:
        raise CocoError(f"{path}: not UTF-8 text ({e})") from None
    except json.JSONDecodeError as e:
        raise CocoError(f"{path}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    if not isinstance(obj, dict):
        raise CocoError(f"{path}: expected a COCO keypoints object, found a JSON {type(obj).__name__}"
                        + (" (a results list cannot be imported as annotations)" if isinstance(obj, list) else ""))
    return obj


def _category_slots(coco: dict[str, Any], path: str | os.PathLike) -> dict[int, tuple[int, np.ndarray]]:
    """COCO category id -> (FashionAI category code, FashionAI slot of each of its keypoints)."""
    cats = coco.get("categories")
    if not isinstance(cats, list) or not cats:
        raise CocoError(f"{path}: no \"categories\" list")
    out: dict[int, tuple[int, np.ndarray]] = {}
    for i, cat in enumerate(cats):
        where = f"{path}: categories[{i}]"
        if not isinstance(cat, dict) or not isinstance(cat.get("id"), int):
            raise CocoError(f"{where}: needs an integer \"id\"")
        name = cat.get("name")
        if name not in CATEGORIES:
            raise CocoError(f"{where}: name {name!r} is not a FashionAI category ({', '.join(CATEGORIES)})")
        names = cat.get("keypoints")
        if not isinstance(names, list) or not names:
            raise CocoError(f"{where} ({name}): no \"keypoints\" name list")
        unknown = [k for k in names if k not in KEYPOINT_INDEX]
        if unknown:
            raise CocoError(f"{where} ({name}): unknown keypoint name {unknown[0]!r}")
        if len(set(names)) != len(names):
            raise CocoError(f"{where} ({name}): a keypoint name appears twice")
        out[cat["id"]] = (CATEGORIES.index(name), np.array([KEYPOINT_INDEX[k] for k in names], dtype=np.int64))
    return out


def from_coco(coco: dict[str, Any], path: str | os.PathLike = "<coco>") -> tuple[Annotations, list[str]]:
    """FashionAI annotations of a COCO keypoints object, and warnings (skipped images).

    Rows follow the COCO image list. Raises CocoError naming the file and the annotation at
    fault (wrong keypoint count, visibility not 0/1/2, a keypoint the garment does not have,
    two annotations of one image, an unknown image or category).
    """
    slots = _category_slots(coco, path)
    id_map = image_id_map(coco, path)
    names_by_id = {v: k for k, v in id_map.items()}
    anns = coco.get("annotations")
    if not isinstance(anns, list):
        raise CocoError(f"{path}: no \"annotations\" list")
    by_image: dict[int, int] = {}
    for i, a in enumerate(anns):
        where = f"{path}: annotations[{i}]" + (f" (id {a.get('id')})" if isinstance(a, dict) and "id" in a else "")
        if not isinstance(a, dict):
            raise CocoError(f"{where}: not an object")
        if a.get("image_id") not in names_by_id:
            raise CocoError(f"{where}: image_id {a.get('image_id')!r} is not in the image list")
        if a.get("category_id") not in slots:
            raise CocoError(f"{where}: category_id {a.get('category_id')!r} is not in the category list")
        if a["image_id"] in by_image:
            raise CocoError(f"{where}: image {names_by_id[a['image_id']]} already has annotations[{by_image[a['image_id']]}]; "
                            "a FashionAI row holds one garment per image")
        by_image[a["image_id"]] = i

    rows = [im_id for im_id in id_map.values() if im_id in by_image]
    skipped = [f"{path}: image {name} has no annotation (skipped)" for name, im_id in id_map.items()
               if im_id not in by_image]
    order = [by_image[im_id] for im_id in rows]  # annotation index of each row

    def where(r: int) -> str:
        i = order[r]
        label = f"id {anns[i]['id']}, " if "id" in anns[i] else ""
        return f"{path}: annotations[{i}] ({label}image {names_by_id[rows[r]]})"

    n = len(rows)
    coords = np.full((n, NUM_KEYPOINTS, 2), -1, dtype=np.float32)
    vis = np.full((n, NUM_KEYPOINTS), -1, dtype=np.int8)
    cats = np.zeros(n, dtype=np.int64)
    members: dict[int, list[int]] = {}
    for r, i in enumerate(order):
        members.setdefault(anns[i]["category_id"], []).append(r)
    # One array per category: the checks and the copy into the 24 slots are vectorized.
    for cat_id, rs in members.items():
        code, idx = slots[cat_id]
        rs_arr = np.array(rs, dtype=np.int64)
        cats[rs_arr] = code
        arr = _keypoint_array([anns[order[r]].get("keypoints") for r in rs], idx, code, lambda j: where(rs[j]))
        c, v = _check_keypoints(arr, idx, code, lambda j: where(rs[j]))
        coords[rs_arr[:, None], idx[None, :]] = c
        vis[rs_arr[:, None], idx[None, :]] = v

    ann = Annotations.from_arrays([names_by_id[i] for i in rows], cats, coords, vis)
    ext = coco.get(EXTENSION_KEY)
    if ext is not None:
        _apply_layout(ann, ext, path)
    return ann, skipped


def _keypoint_array(kps: list[Any], idx: np.ndarray, code: int, where) -> np.ndarray:
    """(m, len(idx), 3) float64 of the annotations' "keypoints" lists, checked for length and type."""
    want = 3 * len(idx)
    for j, kp in enumerate(kps):
        if not isinstance(kp, list) or len(kp) != want:
            got = len(kp) if isinstance(kp, list) else type(kp).__name__
            raise CocoError(f"{where(j)}: \"keypoints\" has {got} numbers, expected {want} "
                            f"({len(idx)} keypoints of {CATEGORIES[code]})")
    # Without a dtype numpy keeps strings as strings (with one it would parse "8" as 8).
    raw = np.array(kps) if kps else np.zeros((0, want))
    if raw.dtype.kind not in "iuf" or raw.shape != (len(kps), want):
        for j, kp in enumerate(kps):  # find the culprit (only on failure)
            if not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in kp):
                raise CocoError(f"{where(j)}: \"keypoints\" holds something that is not a number")
        raise CocoError(f"{where(0)}: \"keypoints\" cannot be read as numbers")
    return raw.astype(np.float64, copy=False).reshape(len(kps), len(idx), 3)


def _check_keypoints(arr: np.ndarray, idx: np.ndarray, code: int, where) -> tuple[np.ndarray, np.ndarray]:
    """FashionAI coordinates and visibility (m, len(idx), ...) of COCO triplets; CocoError
    naming the first annotation and keypoint at fault."""
    def fail(bad: np.ndarray, message: str) -> None:
        j, s = (int(x) for x in np.argwhere(bad)[0])
        raise CocoError(f"{where(j)}: " + message.format(k=KEYPOINTS[idx[s]], v=arr[j, s, 2]))

    finite = np.isfinite(arr).all(axis=2)
    if not finite.all():
        fail(~finite, "{k} holds a non-finite number")
    v = arr[:, :, 2]
    known = (v == 0) | (v == 1) | (v == 2)
    if not known.all():
        fail(~known, "{k} has visibility {v:g}; COCO uses 0, 1 or 2")
    present = v > 0
    extra = present & ~CATEGORY_MASK[code, idx][None, :]
    if extra.any():
        fail(extra, f"{CATEGORIES[code]} has no {{k}}, but it is labelled (v > 0)")
    at_absent = present & (arr[:, :, 0] == -1) & (arr[:, :, 1] == -1)
    if at_absent.any():
        fail(at_absent, "{k} is labelled at (-1, -1), which FashionAI reads as absent")
    coords = np.where(present[:, :, None], arr[:, :, :2], -1.0).astype(np.float32)
    vis = np.where(present, v - 1, -1).astype(np.int8)  # COCO 1, 2 -> FashionAI 0, 1
    return coords, vis


def _apply_layout(ann: Annotations, ext: Any, path: str | os.PathLike) -> None:
    """Restore the CSV layout kept under `EXTENSION_KEY`."""
    where = f"{path}: \"{EXTENSION_KEY}\""
    if not isinstance(ext, dict) or ext.get("version") != EXTENSION_VERSION:
        raise CocoError(f"{where}: expected an object with \"version\": {EXTENSION_VERSION}")
    header, newline, verbatim = ext.get("header"), ext.get("newline"), ext.get("verbatim", [])
    if header is not None and not isinstance(header, str):
        raise CocoError(f"{where}: \"header\" must be a string or null")
    if newline not in ("\n", "\r\n"):
        raise CocoError(f"{where}: \"newline\" must be \"\\n\" or \"\\r\\n\"")
    if not isinstance(verbatim, list) or not all(
            isinstance(v, list) and len(v) == 2 and isinstance(v[0], int) and isinstance(v[1], str) for v in verbatim):
        raise CocoError(f"{where}: \"verbatim\" must be a list of [row position, text] pairs")
    has_kp = bool(ext.get("has_keypoints", True))
    if not has_kp and (ann.visibility != -1).any():
        raise CocoError(f"{where}: the CSV had no keypoint columns, but annotations hold keypoints")
    ann.has_keypoints = has_kp
    ann.header = header
    ann.newline = newline
    ann.bom = bool(ext.get("bom", False))
    ann.final_newline = bool(ext.get("final_newline", True))
    ann.verbatim = [(int(pos), text) for pos, text in verbatim]


def load_coco(path: str | os.PathLike) -> tuple[Annotations, list[str]]:
    """Read a COCO keypoints file as FashionAI annotations (see `from_coco`)."""
    return from_coco(read_coco(path), path)
