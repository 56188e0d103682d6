"""YOLO-pose (Ultralytics) data sets <-> FashionAI annotations.

Export (`export_yolo`): an Ultralytics pose data set, `OUT/data.yaml` plus
`OUT/images/<split>/<image id>` (a link to the image, a copy where links fail) and
`OUT/labels/<split>/<image id with .txt>`: the id path is mirrored under each split, so the
FashionAI id (`Images/<category>/<file>.jpg`) is the label's path below its split folder. A label
file holds one line per garment (FashionAI has one per image):
`class cx cy w h` then 24 x `x y v`, every number normalized by the image size read from the
image header and written with 6 decimals (a coordinate comes back within 0.5e-6 x the image side
in pixels: whole pixels exactly for sides under a million pixels). v is FashionAI's visibility
+ 1 (-1 absent -> 0, written `0 0 0`; 0 occluded -> 1; 1 visible -> 2). The box is the one the
detector is trained on (`boxes_from_keypoints`: the box of the points with v >= 0 grown by
`KEYPOINT_BOX_MARGIN` per side, clipped to the image). Classes are `schema.CATEGORIES`;
`flip_idx` is `schema.FLIP_PERMUTATION` (the same convention: new = old[flip_idx]).

Import (`load_yolo`): the label files of such a data set (or of a labels folder) back to
FashionAI rows, and Ultralytics *predictions* (`save_txt`: the same line, with each keypoint's
confidence in place of v, and with `save_conf` the box confidence appended) to a predictions
CSV's rows plus per-keypoint confidences (`engine.io.scores`).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from engine.io.annotations import Annotations
from engine.io.files import fsync_dir
from engine.io.image_scan import IMAGE_SUFFIXES, scan_images
from engine.io.boxes import KEYPOINT_BOX_MARGIN, boxes_from_keypoints
from engine.io.images import ImageError, check_inside, image_size
from engine.io.messages import shorten
from engine.schema import CATEGORIES, CATEGORY_MASK, FLIP_PERMUTATION, KEYPOINTS, NUM_KEYPOINTS

DECIMALS = 6
LABEL_VALUES = 5 + 3 * NUM_KEYPOINTS  # class, box, 24 x (x, y, v)
DATA_YAML = "data.yaml"
_SUFFIXES = IMAGE_SUFFIXES + tuple(s.upper() for s in IMAGE_SUFFIXES)  # where an import looks for images
# A data YAML is a few hundred bytes and a label file one line per garment (Ultralytics'
# save_txt: at most a few hundred); anything far larger is not one and is not read whole.
_MAX_YAML_BYTES = 1 << 20
_MAX_LABEL_BYTES = 16 << 20


class YoloError(ValueError):
    """A YOLO-pose file that cannot be read or written; the message names the file (and line)."""


# --- export -------------------------------------------------------------------------------


def val_rows(image_ids: Sequence[str], fraction: float) -> np.ndarray:
    """Which rows go to val: the round(fraction x N) ids first in SHA-256 order (deterministic,
    independent of row order, and an id keeps its split when other rows come and go)."""
    if not 0 <= fraction < 1:
        raise ValueError(f"val fraction {fraction:g} is not in [0, 1)")
    n_val = int(round(fraction * len(image_ids)))
    keys = [hashlib.sha256(str(i).encode("utf-8", "surrogateescape")).hexdigest() for i in image_ids]
    order = np.argsort(np.array(keys, dtype=object), kind="stable") if keys else np.zeros(0, np.int64)
    val = np.zeros(len(image_ids), dtype=bool)
    val[order[:n_val]] = True
    return val


def label_lines(categories: np.ndarray, coords: np.ndarray, visibility: np.ndarray,
                image_sizes: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
    """The YOLO-pose label line of each row (see the module docstring), given (N, 2) image
    width, height. Returns (lines, valid, clipped): a row with fewer than two annotated points
    has no box and no line (""); `clipped` (N, 24) marks points outside their image, written on
    its border."""
    vis = np.asarray(visibility, dtype=np.int64)
    wh = np.asarray(image_sizes, dtype=np.float64).reshape(-1, 1, 2)
    boxes, valid = boxes_from_keypoints(coords, vis, KEYPOINT_BOX_MARGIN, wh[:, 0, :])
    present = vis != -1
    xy = np.asarray(coords, dtype=np.float64) / wh
    clipped = present & ((xy < 0) | (xy > 1)).any(axis=2)
    xy = np.clip(xy, 0.0, 1.0)
    b = boxes.astype(np.float64).reshape(-1, 2, 2) / wh  # (N, 2 corners, xy)
    box = np.concatenate([b.mean(axis=1), b[:, 1] - b[:, 0]], axis=1)
    lines = []
    for c, ok, bx, k, v, p in zip(np.asarray(categories).tolist(), valid.tolist(), box, xy, (vis + 1).tolist(),
                                  present.tolist()):
        if not ok:
            lines.append("")
            continue
        parts = [str(c)] + [f"{x:.{DECIMALS}f}" for x in bx]
        parts += [f"{x:.{DECIMALS}f} {y:.{DECIMALS}f} {vv}" if pp else "0 0 0"
                  for (x, y), vv, pp in zip(k.tolist(), v, p)]
        lines.append(" ".join(parts))
    return lines, valid, clipped & valid[:, None]


def data_yaml_text(root: Path, val: str, source: str = "") -> str:
    """The `data.yaml` of an export at `root` (absolute `path`; `val` the val images folder)."""
    names = "\n".join(f"  {i}: {name}" for i, name in enumerate(CATEGORIES))
    kpt_names = "\n".join(f"  {i}: [{', '.join(KEYPOINTS)}]" for i in range(len(CATEGORIES)))
    return (
        "# FashionAI keypoints exported by FKP Studio (fkp export-yolo)"
        + (f" from {json.dumps(source)}" if source else "") + "\n"
        "# A label's path below labels/<split>/ is the FashionAI image id (Images/<category>/<file>).\n"
        f"path: {json.dumps(str(root))}\n"
        "train: images/train\n"
        f"val: {val}\n"
        f"kpt_shape: [{NUM_KEYPOINTS}, 3]\n"
        f"flip_idx: [{', '.join(str(int(i)) for i in FLIP_PERMUTATION)}]\n"
        f"names:\n{names}\n"
        f"kpt_names:\n{kpt_names}\n"
    )


@dataclass
class YoloExport:
    """What `export_yolo` wrote and what it left out (`skipped`: one message per row)."""

    out: Path
    train: int = 0
    val: int = 0
    copied: int = 0                 # images copied because a link could not be made
    clipped: int = 0                # keypoints outside their image, written on its border
    skipped: list[str] = field(default_factory=list)


def export_yolo(ann: Annotations, images_root: str | os.PathLike, out: str | os.PathLike,
                val_fraction: float = 0.0, source: str = "") -> YoloExport:
    """Write `ann` as an Ultralytics pose data set in the new or empty folder `out` (see the
    module docstring). Missing or unreadable images, suffixes Ultralytics does not read and rows
    without a box are skipped, one message each in `YoloExport.skipped`.

    The export is atomic as a whole: it is built in a hidden folder beside `out`, synced once,
    then renamed to `out` (one fsync per file, as `atomic_write` does, costs minutes for the
    31,000 FashionAI training images), so `out` is complete or absent after a crash."""
    if not ann.has_keypoints:
        raise YoloError(f"{source or 'annotations'}: a test split (no keypoint columns) has no labels to export")
    root, out = Path(images_root), Path(out)
    if not root.is_dir():
        raise YoloError(f"{root}: images root is not a folder")
    root = root.resolve()  # once: the links point at absolute paths
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise YoloError(f"{out}: exists and is not an empty folder; export into a new folder")
    report = YoloExport(out=out)
    ids = [str(i) for i in ann.image_ids]
    val = val_rows(ids, val_fraction)
    sizes = np.ones((len(ids), 2), dtype=np.float64)
    usable = np.zeros(len(ids), dtype=bool)
    for r, image_id in enumerate(ids):
        if not image_id.lower().endswith(IMAGE_SUFFIXES):
            report.skipped.append(f"{image_id}: not a {'/'.join(IMAGE_SUFFIXES)} file name; skipped")
            continue
        try:
            sizes[r] = image_size(root / image_id, root)
            usable[r] = True
        except ImageError as e:
            report.skipped.append(f"{e}; skipped")
    lines, valid, clipped = label_lines(ann.categories, ann.coords, ann.visibility, sizes)
    for r in np.flatnonzero(usable & ~valid):
        report.skipped.append(f"{ids[r]}: fewer than two annotated keypoints, so no garment box "
                              "(the detector's training skips it too); skipped")
    keep = usable & valid
    report.clipped = int(clipped[keep].sum())
    out.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".partial", dir=out.parent))
    made: set[Path] = set()
    writing = Path(".")  # the file being written, relative to OUT: what an error names
    try:
        for r in np.flatnonzero(keep):
            split = "val" if val[r] else "train"
            image = Path("images") / split / ids[r]
            label = (Path("labels") / split / ids[r]).with_suffix(".txt")
            for folder in (image.parent, label.parent):
                if folder not in made:
                    writing = folder
                    (stage / folder).mkdir(parents=True, exist_ok=True)
                    made.add(folder)
            writing = image
            report.copied += _link_or_copy(root / ids[r], stage / image)
            writing = label
            (stage / label).write_text(lines[r] + "\n", encoding="utf-8")
            report.val += bool(val[r])
        report.train = int(keep.sum()) - report.val
        writing = Path("images") / "train"
        (stage / writing).mkdir(parents=True, exist_ok=True)
        # Ultralytics needs a val set: without one, val is the train folder.
        val_dir = "images/val" if report.val else "images/train"
        writing = Path(DATA_YAML)
        (stage / DATA_YAML).write_text(data_yaml_text(out.resolve(), val_dir, source), encoding="utf-8")
        os.chmod(stage, 0o755)  # mkdtemp's folder is private
        writing = Path(".")
        _flush(stage)
        os.replace(stage, out)  # onto a missing or empty folder
    except OSError as e:
        shutil.rmtree(stage, ignore_errors=True)
        # A write error of the staged copy names no file (ENOSPC at close) or the hidden stage:
        # name the file as it would have been in OUT.
        raise YoloError(f"{out / writing}: cannot write ({e.strerror or e}); nothing was exported") from None
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    fsync_dir(out.parent)
    return report


def _flush(folder: Path) -> None:
    """Every file and folder written under `folder` on disk before it is renamed into place."""
    if hasattr(os, "sync"):
        os.sync()  # one flush for all of them
        return
    for path in folder.rglob("*"):  # Windows has no sync(): each written file on its own
        if path.is_file() and not path.is_symlink():
            with open(path, "rb+") as f:
                os.fsync(f.fileno())


def _link_or_copy(source: Path, dest: Path) -> int:
    """Link `dest` to `source`; copy it where the file system refuses links. 1 when copied."""
    try:
        os.symlink(source, dest)
        return 0
    except OSError:
        shutil.copyfile(source, dest)
        return 1


# --- import -------------------------------------------------------------------------------


def read_data_yaml(path: str | os.PathLike) -> dict[str, Any]:
    """A data set YAML as a dict (PyYAML when installed, else the flat subset `export_yolo`
    writes: `key: value`, flow lists, one level of `  key: value` / `  - value` blocks)."""
    path = Path(path)
    text = _read_text(path, _MAX_YAML_BYTES, "data YAML")
    try:
        import yaml
    except ImportError:
        obj = _read_simple_yaml(text, path)
    else:
        try:
            obj = yaml.safe_load(text)
        except yaml.YAMLError as e:
            raise YoloError(f"{path}: not valid YAML ({_yaml_problem(e)})") from None
        except RecursionError:
            raise YoloError(f"{path}: not valid YAML (nested too deeply)") from None
    if not isinstance(obj, dict):
        raise YoloError(f"{path}: expected a YAML mapping (path, train, val, kpt_shape, names)")
    return obj


def _yaml_problem(error: Exception) -> str:
    """Where and what PyYAML found wrong, without the snippet of the file it quotes."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or type(error).__name__
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return where + shorten(" ".join(str(problem).split()), 80)


def _describe(value: Any) -> str:
    """A YAML value, short, for a message. Containers are described by size: aliases make a
    375-byte file hold lists that format to hundreds of megabytes."""
    if isinstance(value, (list, tuple)):
        if len(value) <= 4 and all(isinstance(v, (str, int, float)) or v is None for v in value):
            return "[" + ", ".join(_describe(v) for v in value) + "]"
        return f"a list of {len(value)} items"
    if isinstance(value, dict):
        return f"a mapping of {len(value)} keys"
    if isinstance(value, str):
        return repr(shorten(value, 40))
    if isinstance(value, (bool, float)) or value is None:
        return repr(value)
    if isinstance(value, int):
        return str(value) if abs(value) < 10 ** 12 else "a very large number"
    return type(value).__name__


def _read_text(path: Path, limit: int, what: str) -> str:
    """The UTF-8 text of a regular file of at most `limit` bytes; YoloError naming the file
    (never quoting it). A FIFO or device is refused without blocking."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as e:
        raise YoloError(f"{path}: cannot read ({e.strerror or e})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise YoloError(f"{path}: not a regular file; not read")
        if st.st_size > limit:
            raise YoloError(f"{path}: {st.st_size:,} bytes is too large for a {what} (at most {limit:,}); not read")
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    except OSError as e:
        raise YoloError(f"{path}: cannot read ({e.strerror or e})") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise YoloError(f"{path}: too large for a {what} (over {limit:,} bytes); not read")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise YoloError(f"{path}: not UTF-8 text (byte {e.start + 1}); expected a {what}") from None


def _scalar(text: str) -> Any:
    text = text.strip()
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip()
        return [_scalar(x) for x in _split_flow(inner)] if inner else []
    if text.startswith('"'):
        return json.loads(text)
    if text.startswith("'") and text.endswith("'"):
        return text[1:-1].replace("''", "'")
    if re.fullmatch(r"[-+]?\d+", text):
        return int(text)
    if re.fullmatch(r"[-+]?(\d+\.\d*|\.\d+|\d+)([eE][-+]?\d+)?", text):
        return float(text)
    return None if text in ("", "~", "null") else text


def _split_flow(text: str) -> list[str]:
    """Split a flow list's items at top-level commas."""
    items, depth, start, quote = [], 0, 0, ""
    for i, ch in enumerate(text):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "," and depth == 0:
            items.append(text[start:i])
            start = i + 1
    items.append(text[start:])
    return items


def _strip_comment(line: str) -> str:
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i].rstrip()
    return line.rstrip()


def _read_simple_yaml(text: str, path: Path) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    key = None
    for n, raw in enumerate(text.splitlines(), 1):
        line = _strip_comment(raw)
        if not line.strip():
            continue
        if not line[0].isspace():
            k, sep, v = line.partition(":")
            if not sep:
                raise YoloError(f"{path}:{n}: expected 'key: value' (install PyYAML for other YAML)")
            key = k.strip()
            obj[key] = _scalar(v)
            continue
        item = line.strip()
        if key is None:
            raise YoloError(f"{path}:{n}: indented line outside a key")
        if item.startswith("- "):
            if obj[key] is None:
                obj[key] = []
            if not isinstance(obj[key], list):
                raise YoloError(f"{path}:{n}: a list item under a key that holds {_describe(obj[key])}")
            obj[key].append(_scalar(item[2:]))
        else:
            k, sep, v = item.partition(":")
            if not sep:
                raise YoloError(f"{path}:{n}: expected 'key: value' (install PyYAML for other YAML)")
            if obj[key] is None:
                obj[key] = {}
            if not isinstance(obj[key], dict):
                raise YoloError(f"{path}:{n}: a mapping entry under a key that holds {_describe(obj[key])}")
            obj[key][_scalar(k)] = _scalar(v)
    return obj


def class_categories(names: Any, path: str | os.PathLike = "<data.yaml>") -> np.ndarray:
    """FashionAI category code of each YOLO class index, from a data YAML's `names` (a list or
    an index -> name mapping; every name a FashionAI category)."""
    if isinstance(names, dict):
        if set(names) != set(range(len(names))):  # a set: keys of mixed types do not sort
            raise YoloError(f"{path}: \"names\" keys must be 0..{len(names) - 1}")
        names = [names[i] for i in range(len(names))]
    if not isinstance(names, list) or not names:
        raise YoloError(f"{path}: no \"names\" list of classes")
    unknown = [n for n in names if not isinstance(n, str) or n not in CATEGORIES]
    if unknown:
        raise YoloError(f"{path}: class {_describe(unknown[0])} is not a FashionAI category ({', '.join(CATEGORIES)})")
    return np.array([CATEGORIES.index(n) for n in names], dtype=np.int64)


@dataclass
class YoloImport:
    """What `load_yolo` read: annotation (or prediction) rows, per-keypoint confidences (N, 24)
    for predictions (-1 where the category lacks the keypoint), and one warning per skipped
    file or extra garment."""

    annotations: Annotations
    scores: np.ndarray | None
    predictions: bool
    warnings: list[str]


@dataclass
class _LabelFile:
    path: Path
    rel: Path                       # below its labels folder, without the suffix
    images: list[Path]              # folders its image may be in (mirrored path)


def _is_inside(root: Path, path: Path) -> bool:
    """Whether `path` is `root` or below it once symbolic links are followed."""
    real_root, real = os.path.realpath(root), os.path.realpath(path)
    return os.path.commonpath([real_root, real]) == real_root


def _data_root(yaml_path: Path, data: dict[str, Any], warnings: list[str]) -> Path:
    """The folder a data YAML's splits resolve against: its `path` when that lies inside the
    YAML's own folder, else that folder (a moved or copied export still names its old place;
    `path: /` must not make every file on the system a label)."""
    home = yaml_path.parent.resolve()
    base = data.get("path")
    if not isinstance(base, str) or not base:
        return home
    root = Path(base) if Path(base).is_absolute() else home / base
    if not root.is_dir():
        return home
    if not _is_inside(home, root):
        warnings.append(f"{yaml_path}: \"path\" {_describe(base)} lies outside the data set folder {home}; "
                        "read the splits from that folder instead")
        return home
    return root.resolve()


def _split_dirs(yaml_path: Path, data: dict[str, Any], root: Path) -> list[Path]:
    """The image folders of a data YAML's splits (as Ultralytics resolves them), each inside
    the data set folder `root`."""
    dirs: list[Path] = []
    for key in ("train", "val", "test"):
        value = data.get(key)
        for v in (value if isinstance(value, list) else [value] if value else []):
            if not isinstance(v, str):
                raise YoloError(f"{yaml_path}: \"{key}\" must be a folder or a list of folders")
            d = (root / v).resolve()
            if not _is_inside(root, d):
                raise YoloError(f"{yaml_path}: \"{key}\" {_describe(v)} leads outside the data set folder {root}; "
                                "not read")
            if d.suffix == ".txt":
                raise YoloError(f"{yaml_path}: \"{key}\": image list files ({_describe(v)}) are not supported; "
                                "give folders")
            if d not in dirs:
                dirs.append(d)
    if not dirs:
        raise YoloError(f"{yaml_path}: no train/val/test image folders")
    return dirs


def _labels_dir(images_dir: Path) -> Path:
    """Ultralytics' label folder of an image folder: the last `images` component -> `labels`."""
    parts = list(images_dir.parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts)
    return images_dir


def _images_dir(labels_dir: Path) -> Path | None:
    parts = list(labels_dir.resolve().parts)
    for i in range(len(parts) - 1, -1, -1):
        if parts[i] == "labels":
            parts[i] = "images"
            return Path(*parts)
    return None


@dataclass
class _LabelSet:
    """The label files of an import, the data set folder they must lie in, the class ->
    category map (None without a data YAML) and what was skipped on the way."""

    files: list[_LabelFile]
    root: Path
    categories: np.ndarray | None
    warnings: list[str]


def _label_files(path: Path) -> _LabelSet:
    """The label files under a data set folder / data YAML / labels folder. Only files inside
    the data set (the YAML's folder, or the folder above a labels folder) are listed."""
    yaml_path = path if path.is_file() else path / DATA_YAML
    if path.is_file() and path.suffix not in (".yaml", ".yml"):
        raise YoloError(f"{path}: expected a data set folder, its data.yaml or a labels folder")
    if not path.exists():
        raise YoloError(f"{path}: not found")
    warnings: list[str] = []
    if yaml_path.is_file():
        data = read_data_yaml(yaml_path)
        _check_kpt_shape(data.get("kpt_shape"), yaml_path)
        cats = class_categories(data.get("names"), yaml_path)
        root = _data_root(yaml_path, data, warnings)
        files: list[_LabelFile] = []
        for images in _split_dirs(yaml_path, data, root):
            labels = _labels_dir(images)
            if not _is_inside(root, labels):
                raise YoloError(f"{yaml_path}: the labels of {images} would be in {labels}, outside the data set "
                                f"folder {root}; not read")
            files += [_LabelFile(f, f.relative_to(labels).with_suffix(""), [images])
                      for f in _inside_files(root, labels, warnings)]
        return _LabelSet(files, root, cats, warnings)
    if not path.is_dir():
        raise YoloError(f"{path}: not a folder")
    images = _images_dir(path)
    root = _labels_root(path)
    files = [_LabelFile(f, f.relative_to(path).with_suffix(""), [images] if images else [])
             for f in _inside_files(root, path, warnings)]
    return _LabelSet(files, root, None, warnings)


def _check_kpt_shape(kpt_shape: Any, yaml_path: Path) -> None:
    """YoloError unless a data YAML's `kpt_shape` is absent or [24, 3]."""
    if kpt_shape is None:
        return
    ok = (isinstance(kpt_shape, list) and len(kpt_shape) == 2
          and all(isinstance(x, int) and not isinstance(x, bool) for x in kpt_shape))
    if not ok or kpt_shape != [NUM_KEYPOINTS, 3]:
        raise YoloError(f"{yaml_path}: kpt_shape {_describe(kpt_shape)} is not [{NUM_KEYPOINTS}, 3] "
                        "(the 24 FashionAI keypoints with visibility)")


def _labels_root(labels: Path) -> Path:
    """The data set folder of a labels folder: the one above its last `labels` component
    (where the mirrored `images` folder is), else the labels folder itself."""
    real = labels.resolve()
    parts = real.parts
    for i in range(len(parts) - 1, 0, -1):
        if parts[i] == "labels":
            return Path(*parts[:i])
    return real


def _inside_files(root: Path, folder: Path, warnings: list[str]) -> list[Path]:
    """The `*.txt` files under `folder`, sorted; a link leading outside `root` is skipped
    with a warning (it is never opened: a label linked to /etc/shadow would be quoted)."""
    found = []
    for f in sorted(folder.rglob("*.txt")):
        if not _is_inside(root, f):
            warnings.append(f"{f}: leads outside the data set folder {root}; not read; skipped")
        elif f.is_file():
            found.append(f)
    return found


def _fashionai_id(rel: Path) -> str:
    """The image id part of a label path: from its `Images` folder on when it has one."""
    parts = rel.parts
    return "/".join(parts[parts.index("Images"):] if "Images" in parts else parts)


def _find_image(lf: _LabelFile, images_root: Path | None,
                by_stem: dict[str, list[tuple[str, Path]]] | None) -> tuple[str, Path] | None:
    """(image id, image file) of a label file: the mirrored image beside the labels, else under
    `images_root` at the id's path, else the only image there with the label's file name."""
    base = _fashionai_id(lf.rel)
    for folder in lf.images:
        for suffix in _SUFFIXES:
            f = folder / lf.rel.with_name(lf.rel.name + suffix)
            if f.is_file():
                return base + suffix, f
    if images_root is not None:
        for suffix in _SUFFIXES:
            f = images_root / (base + suffix)
            if f.is_file():
                return base + suffix, f
        found = (by_stem or {}).get(lf.rel.name, [])
        if len(found) > 1:
            raise YoloError(f"{lf.path}: {len(found)} images under {images_root} are named "
                            f"{lf.rel.name}.* ({found[0][0]}, {found[1][0]}); give the labels their id paths")
        if found:
            return found[0]
    return None


def _parse_label_file(path: Path) -> tuple[np.ndarray, list[int]]:
    """The numbers of a label file's lines ((n, m) float64; every line the same count) and the
    line numbers; YoloError naming the file, line and value (never quoting the file)."""
    text = _read_text(path, _MAX_LABEL_BYTES, "label file")
    rows, numbers = [], []
    for n, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        try:
            values = [float(x) for x in fields]
        except ValueError:
            bad = next(i for i, x in enumerate(fields, 1) if not _is_number(x))
            raise YoloError(f"{path}:{n}: value {bad} is not a number (a label line holds numbers only)") from None
        if rows and len(values) != len(rows[0]):
            raise YoloError(f"{path}:{n}: {len(values)} values, but line {numbers[0]} has {len(rows[0])}")
        rows.append(values)
        numbers.append(n)
    return (np.array(rows, dtype=np.float64) if rows else np.zeros((0, 0))), numbers


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _check_lines(path: Path, lines: list[int], values: np.ndarray, n_classes: int, predictions: bool) -> None:
    """YoloError naming the file and the first line with a class out of range, a value outside
    [0, 1] or (labels) a visibility other than 0, 1, 2 (all lines checked at once)."""
    def fail(bad: np.ndarray, message) -> None:
        r, i = (int(x) for x in np.argwhere(bad)[0])
        raise YoloError(f"{path}:{lines[r]}: " + message(values[r], i))

    finite = np.isfinite(values)
    if not finite.all():
        fail(~finite, lambda row, i: "holds a non-finite number")
    c = values[:, :1]
    bad_class = (c != np.floor(c)) | (c < 0) | (c >= n_classes)
    if bad_class.any():
        fail(bad_class, lambda row, i: f"class {row[0]:g} is not one of 0..{n_classes - 1}")
    # Box, x, y and confidences lie in [0, 1] (labels' v is checked below); a tracker's id may
    # follow the confidence.
    checked = np.ones(values.shape[1], dtype=bool)
    checked[0] = False
    checked[LABEL_VALUES + 1:] = False
    if not predictions:
        checked[7:LABEL_VALUES:3] = False
    outside = checked & ((values < 0) | (values > 1))
    if outside.any():
        def what(i: int) -> str:
            if i < 5:
                return "box"
            return f"{KEYPOINTS[(i - 5) // 3]} {'xyv'[(i - 5) % 3]}" if i < LABEL_VALUES else "confidence"
        fail(outside, lambda row, i: f"value {row[i]:g} ({what(i)}) is outside [0, 1]")
    if not predictions:
        v = values[:, 7:LABEL_VALUES:3]
        bad = (v != 0) & (v != 1) & (v != 2)
        if bad.any():
            fail(bad, lambda row, k: f"{KEYPOINTS[k]} has visibility {row[7 + 3 * k]:g}; YOLO-pose labels use 0, 1 or 2 "
                                     "(predictions? import them with predictions=True / --predictions)")


def load_yolo(path: str | os.PathLike, images_root: str | os.PathLike | None = None,
              predictions: bool | None = None) -> YoloImport:
    """Read YOLO-pose labels or predictions back to FashionAI rows (see the module docstring).

    `path`: a data set folder with `data.yaml` (or the YAML itself), or a folder of label files
    (class indices are then `schema.CATEGORIES` order). An image's id and size come from the
    image mirrored beside the labels (`labels/` -> `images/`), else from `images_root` (a
    FashionAI data set root: the id's path, else the only image with the label's file name, as
    in Ultralytics' flat `predict/labels/`). `predictions`: None decides from the files (lines
    with a confidence column, 78 or 79 values, are predictions). Label files whose image cannot
    be found are skipped with a warning; more than one line per image keeps the most confident
    (predictions) or the first (labels) with a warning.
    """
    path = Path(path)
    label_set = _label_files(path)
    cats = label_set.categories
    root = Path(images_root) if images_root is not None else None
    if root is not None and not root.is_dir():
        raise YoloError(f"{root}: images root is not a folder")
    n_classes = len(cats) if cats is not None else len(CATEGORIES)
    if cats is None:
        cats = np.arange(len(CATEGORIES), dtype=np.int64)
    parsed = []
    for lf in label_set.files:
        values, lines = _parse_label_file(lf.path)
        if len(values) and values.shape[1] not in (LABEL_VALUES, LABEL_VALUES + 1, LABEL_VALUES + 2):
            raise YoloError(f"{lf.path}:{lines[0]}: {values.shape[1]} values, expected {LABEL_VALUES} "
                            f"(class, box, {NUM_KEYPOINTS} keypoints x 3), or {LABEL_VALUES + 1} with a confidence")
        parsed.append((lf, values, lines))
    if predictions is None:
        predictions = _decide_predictions(parsed)
    warnings: list[str] = list(label_set.warnings)
    by_stem = None
    ids, categories, kps, seen = [], [], [], {}
    for lf, values, lines in parsed:
        if not len(values):
            warnings.append(f"{lf.path}: no garment (empty label file); skipped")
            continue
        if not predictions and values.shape[1] > LABEL_VALUES:
            raise YoloError(f"{lf.path}:{lines[0]}: {values.shape[1]} values, expected {LABEL_VALUES} "
                            "(a confidence column: predictions? import them with predictions=True / --predictions)")
        _check_lines(lf.path, lines, values, n_classes, predictions)
        pick = 0
        if len(values) > 1:
            has_conf = values.shape[1] > LABEL_VALUES
            pick = int(np.argmax(values[:, LABEL_VALUES])) if has_conf else 0
            warnings.append(f"{lf.path}: {len(values)} garments; kept line {lines[pick]} "
                            f"({'the most confident' if has_conf else 'the first'}): FashionAI has one per image")
        if by_stem is None and root is not None and not any(d.is_dir() for d in lf.images):
            by_stem = _stems(root)
        found = _find_image(lf, root, by_stem)
        if found is None:
            where = " or ".join(str(d) for d in lf.images) or "(no images folder beside the labels)"
            warnings.append(f"{lf.path}: no image found for it in {where}"
                            + ("" if root is not None else "; give the images root") + "; skipped")
            continue
        image_id, image_file = found
        if image_id in seen:
            raise YoloError(f"{lf.path}: image {image_id} also has labels in {seen[image_id]}")
        seen[image_id] = lf.path
        # An image found under the images root must not lead out of it (`read_image`'s rule); a
        # mirrored image beside the labels may: the export links each to its data set.
        inside = root if root is not None and _is_inside(root, image_file.parent) else None
        try:
            w, h = image_size(image_file, inside)
        except ImageError as e:
            warnings.append(f"{lf.path}: {e}; skipped")
            continue
        ids.append(image_id)
        categories.append(int(cats[int(values[pick, 0])]))
        kp = values[pick, 5:LABEL_VALUES].reshape(NUM_KEYPOINTS, 3) * np.array([w, h, 1.0])
        kps.append(kp)
    n = len(ids)
    kp = np.array(kps, dtype=np.float64).reshape(n, NUM_KEYPOINTS, 3)
    code = np.array(categories, dtype=np.int64)
    mask = CATEGORY_MASK[code] if n else np.zeros((0, NUM_KEYPOINTS), dtype=bool)
    xy = np.rint(kp[:, :, :2])  # the CSV holds whole pixels
    if predictions:
        vis = np.where(mask, 1, -1)
        scores = np.where(mask, kp[:, :, 2], -1.0)
    else:
        present = kp[:, :, 2] > 0
        extra = present & ~mask
        if extra.any():
            r, k = (int(x) for x in np.argwhere(extra)[0])
            raise YoloError(f"{seen[ids[r]]}: {CATEGORIES[code[r]]} has no {KEYPOINTS[k]}, but it is labelled (v > 0)")
        vis = np.where(present, kp[:, :, 2] - 1, -1)  # YOLO 1, 2 -> FashionAI 0, 1
        scores = None
    coords = np.where(vis[:, :, None] >= 0, xy, -1.0)
    ann = Annotations.from_arrays(ids, code, coords.astype(np.float32), vis.astype(np.int8))
    return YoloImport(ann, scores, bool(predictions), warnings)


def _decide_predictions(parsed: list[tuple[_LabelFile, np.ndarray, list[int]]]) -> bool:
    """Whether the files are predictions (a confidence column: 78 or 79 values) or labels (77),
    decided by most files; a file of the other kind is named as the odd one (YoloError)."""
    kinds = [(lf, lines[0], values.shape[1]) for lf, values, lines in parsed if len(values)]
    n_pred = sum(cols > LABEL_VALUES for _, _, cols in kinds)
    n_labels = len(kinds) - n_pred
    if not n_pred or not n_labels:
        return bool(n_pred)
    # The majority decides; on a tie, the first file's kind.
    predictions = n_pred > n_labels or (n_pred == n_labels and kinds[0][2] > LABEL_VALUES)
    lf, line, cols = next(k for k in kinds if (k[2] > LABEL_VALUES) != predictions)
    if predictions:
        raise YoloError(f"{lf.path}:{line}: {cols} values (no confidence column), but {n_pred} other files hold "
                        f"predictions ({LABEL_VALUES + 1} or {LABEL_VALUES + 2} values); fix this file, or import "
                        "them all as predictions with predictions=True / --predictions")
    raise YoloError(f"{lf.path}:{line}: {cols} values (a confidence column), but {n_labels} other files hold "
                    f"labels ({LABEL_VALUES} values: class, box, {NUM_KEYPOINTS} keypoints x 3); fix this file, "
                    "or import predictions with predictions=True / --predictions")


def _stems(root: Path) -> dict[str, list[tuple[str, Path]]]:
    """file name without suffix -> (FashionAI id, file) of each image under `root`."""
    found: dict[str, list[tuple[str, Path]]] = {}
    scanned = scan_images(root)
    for image_id in scanned.image_ids:
        stem = image_id.rsplit("/", 1)[-1].rsplit(".", 1)[0]
        found.setdefault(stem, []).append((image_id, scanned.root / image_id))
    return found
