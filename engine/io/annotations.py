"""FashionAI annotation CSV files <-> numpy arrays, losslessly.

`load_annotations` parses a file into `Annotations` (image ids, category codes, coordinates,
visibility); `save_annotations` writes it back. Loading then saving an unmodified file gives
the same bytes: the header line, the line ending (LF or CRLF), a UTF-8 BOM and a missing final
newline are kept as read, and every row that could not be parsed is kept verbatim, in place,
with a `RowProblem` saying why (line number, image id, column, reason).

Rules (a row that breaks one is kept verbatim and reported, never silently changed):

- a keypoint cell is `x_y_v` with canonical integers (`-1`, `0`, `17`; not `05`, `+5`, ` 5`),
  `v` in {-1, 0, 1}; `v = -1` iff the cell is `-1_-1_-1`;
- a keypoint the category does not have must be `-1_-1_-1`;
- an image id appears once: the first row with it loads, later ones are kept verbatim;
- the header is `image_id,image_category,<24 keypoints>` or, for a test split,
  `image_id,image_category` (such a file loads with `has_keypoints = False`).

Speed: rows are split in Python (one `str.split` per row) but every cell-level step is
vectorized: the numbers of 8,192 rows at a time are parsed by one `np.fromstring`, and the
rows are re-formatted with numpy byte tables and compared with the text read, which is what
proves them canonical. Only the rows of a chunk that fails this take the careful per-row path.
"""

from __future__ import annotations

import codecs
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from operator import itemgetter
from pathlib import Path

import numpy as np
import pandas as pd

from engine.io.files import FileVersion, atomic_write_bytes, read_versioned
from engine.schema import CATEGORIES, CATEGORY_INDEX, CATEGORY_MASK, CSV_HEADER, KEYPOINTS, NUM_KEYPOINTS

TEST_HEADER: tuple[str, ...] = CSV_HEADER[:2]
# Coordinates are float32 in memory: beyond 2**24 integers are no longer exact.
MAX_ABS_COORD = 2**24
_BOM = codecs.BOM_UTF8
_NUMS_PER_ROW = NUM_KEYPOINTS * 3
_CATEGORY_LOOKUP = pd.Index(CATEGORIES, dtype=object)


@dataclass(frozen=True)
class RowProblem:
    """One problem found in a file; `line` is 1-based (the header is line 1)."""

    line: int
    image_id: str | None
    column: str | None
    reason: str
    raw: str

    def describe(self, path: str | os.PathLike | None = None) -> str:
        """A one-line human message naming file, line, image and column."""
        where = f"{path}:" if path is not None else "line "
        parts = [f"{where}{self.line}"]
        if self.image_id:
            parts.append(f"image {self.image_id}")
        if self.column:
            parts.append(f"column {self.column}")
        return ": ".join([", ".join(parts), self.reason])


class Annotations:
    """The rows of one FashionAI annotation file as arrays, plus what is needed to rewrite it.

    Arrays (N rows): `image_ids` (object str), `categories` (int8 codes into
    `schema.CATEGORIES`), `coords` (N, 24, 2) float32 pixels (-1 where absent), `visibility`
    (N, 24) int8 in {-1, 0, 1}. The arrays may be edited in place; `save_annotations` writes
    them with the file's original layout and its unparsed rows back in their places.
    """

    def __init__(
        self,
        image_ids: np.ndarray,
        categories: np.ndarray,
        coords: np.ndarray,
        visibility: np.ndarray,
        has_keypoints: bool = True,
        problems: list[RowProblem] | None = None,
        path: Path | None = None,
        *,
        header: str | None = None,
        newline: str = "\n",
        bom: bool = False,
        final_newline: bool = True,
        verbatim: list[tuple[int, str]] | None = None,
    ) -> None:
        self.image_ids = image_ids
        self.categories = categories
        self.coords = coords
        self.visibility = visibility
        self.has_keypoints = has_keypoints
        self.problems: list[RowProblem] = list(problems or [])
        self.path = path
        # Layout of the file as read. `header` is the header line's text (None: the file had
        # no header line); `verbatim` holds (number of parsed rows before it, text) for each
        # row kept as read, in file order.
        self.header = header
        self.newline = newline
        self.bom = bom
        self.final_newline = final_newline
        self.verbatim: list[tuple[int, str]] = list(verbatim or [])
        self._index: dict[str, int] | None = None
        self._index_key: tuple[int, int] | None = None

    @classmethod
    def from_arrays(
        cls,
        image_ids: Sequence[str] | np.ndarray,
        categories: Sequence[int] | np.ndarray,
        coords: np.ndarray | None = None,
        visibility: np.ndarray | None = None,
    ) -> Annotations:
        """New file content: canonical header, LF line endings, no BOM.

        Without `coords`/`visibility` the result is a test split (`image_id,image_category`).
        """
        ids = np.empty(len(image_ids), dtype=object)
        ids[:] = [str(i) for i in image_ids]
        cats = np.asarray(categories, dtype=np.int64)
        n = len(ids)
        if cats.shape != (n,):
            raise ValueError(f"categories has shape {cats.shape}, expected ({n},)")
        if n and (cats.min() < 0 or cats.max() >= len(CATEGORIES)):
            raise ValueError(f"category codes must be in 0..{len(CATEGORIES) - 1}")
        has_kp = coords is not None or visibility is not None
        if has_kp:
            if coords is None or visibility is None:
                raise ValueError("give both coords and visibility, or neither")
            coords = np.array(coords, dtype=np.float32)
            visibility = np.array(visibility, dtype=np.int8)
            if coords.shape != (n, NUM_KEYPOINTS, 2):
                raise ValueError(f"coords has shape {coords.shape}, expected ({n}, {NUM_KEYPOINTS}, 2)")
            if visibility.shape != (n, NUM_KEYPOINTS):
                raise ValueError(f"visibility has shape {visibility.shape}, expected ({n}, {NUM_KEYPOINTS})")
        else:
            coords = np.full((n, NUM_KEYPOINTS, 2), -1, dtype=np.float32)
            visibility = np.full((n, NUM_KEYPOINTS), -1, dtype=np.int8)
        header = ",".join(CSV_HEADER if has_kp else TEST_HEADER)
        return cls(ids, cats.astype(np.int8), coords, visibility, has_kp, header=header)

    def __len__(self) -> int:
        return len(self.image_ids)

    def __repr__(self) -> str:
        kind = "keypoints" if self.has_keypoints else "test split"
        return (f"Annotations({len(self)} rows, {kind}, {len(self.verbatim)} unparsed, "
                f"{len(self.problems)} problems, path={self.path})")

    def index_of(self, image_id: str) -> int:
        """Row of `image_id`; raises KeyError if absent."""
        return self.id_index()[image_id]

    def id_index(self) -> dict[str, int]:
        """The cached image id -> row dict (do not modify it); with duplicate ids it is
        shorter than the annotations and maps each id to its last row."""
        key = (id(self.image_ids), len(self.image_ids))
        if self._index is None or self._index_key != key:
            self._index = {str(s): i for i, s in enumerate(self.image_ids)}
            self._index_key = key
        return self._index

    @property
    def unparsed_count(self) -> int:
        """Rows kept verbatim because they could not be parsed."""
        return len(self.verbatim)

    def subset(self, indices: Iterable[int] | np.ndarray) -> Annotations:
        """A new Annotations of these rows, in this order: same header, line ending and BOM,
        no unparsed rows, a final newline."""
        idx = np.asarray(indices)
        if idx.dtype == bool:
            idx = np.flatnonzero(idx)
        idx = idx.astype(np.int64, copy=False)
        return Annotations(
            self.image_ids[idx].copy(), self.categories[idx].copy(), self.coords[idx].copy(),
            self.visibility[idx].copy(), self.has_keypoints, [], self.path,
            header=self.header if self.header is not None else _canonical_header(self.has_keypoints),
            newline=self.newline, bom=self.bom, final_newline=True,
        )

    def add_keypoint_columns(self) -> None:
        """Make a test split (`image_id,image_category`) an annotation file: the 24 keypoint
        columns, every point absent until placed; written with the full FashionAI header."""
        if self.has_keypoints:
            return
        self.has_keypoints = True
        if self.header is not None:
            self.header = _canonical_header(True)

    def copy(self) -> Annotations:
        return Annotations(
            self.image_ids.copy(), self.categories.copy(), self.coords.copy(),
            self.visibility.copy(), self.has_keypoints, list(self.problems), self.path,
            header=self.header, newline=self.newline, bom=self.bom,
            final_newline=self.final_newline, verbatim=list(self.verbatim),
        )


def concat_annotations(*parts: Annotations) -> Annotations:
    """The rows of `parts`, in order, as new file content (`Annotations.from_arrays`)."""
    return Annotations.from_arrays(
        [str(i) for part in parts for i in part.image_ids],
        np.concatenate([np.asarray(part.categories, np.int64) for part in parts]),
        np.concatenate([part.coords for part in parts]), np.concatenate([part.visibility for part in parts]),
    )


def _canonical_header(has_keypoints: bool) -> str:
    return ",".join(CSV_HEADER if has_keypoints else TEST_HEADER)


# --- loading ------------------------------------------------------------------------------


def load_annotations(path: str | os.PathLike) -> Annotations:
    """Read a FashionAI CSV; bad rows are kept verbatim and listed in `.problems`."""
    path = Path(path)
    return parse_annotations(path.read_bytes(), path)


def parse_annotations(data: bytes, path: Path | None = None) -> Annotations:
    """Parse the bytes of a FashionAI CSV (see `load_annotations`)."""
    bom = data.startswith(_BOM)
    body = data[len(_BOM):] if bom else data
    try:
        text = body.decode("utf-8")
        bad_utf8 = False
    except UnicodeDecodeError:
        # Keep undecodable bytes as lone surrogates so the rows can be written back exactly.
        text = body.decode("utf-8", "surrogateescape")
        bad_utf8 = True
    first_lf = text.find("\n")
    newline = "\r\n" if first_lf > 0 and text[first_lf - 1] == "\r" else "\n"
    lines = text.split(newline)
    final_newline = lines[-1] == ""
    if final_newline:
        lines.pop()

    problems: list[RowProblem] = []
    encoding = _foreign_encoding(body)
    if encoding:
        # Read as UTF-8 every cell of it is wrong; say why once, keep every line as it is.
        problems.append(RowProblem(1, None, None, f"the file is {encoding} encoded; FashionAI CSVs are UTF-8 "
                                                  f"(convert it, e.g. iconv -f {encoding} -t UTF-8)", ""))
        header, has_kp, usable, first_data = None, True, False, 0
    else:
        header, has_kp, usable, first_data = _read_header(lines, problems)
    data_lines = lines[first_data:]
    first_lineno = first_data + 1
    ok = np.zeros(len(data_lines), dtype=bool)

    if usable:
        rows = _parse_rows(data_lines, first_lineno, has_kp, newline, bad_utf8, problems)
        ok[rows.line_index] = True
        ids, cats, coords, vis, index = rows.ids, rows.cats, rows.coords, rows.vis, rows.index
    else:
        why = f"the file is {encoding} encoded" if encoding else "the file has no usable FashionAI header"
        for j, line in enumerate(data_lines):
            problems.append(RowProblem(first_lineno + j, None if encoding else _guess_id(line), None,
                                       f"not parsed: {why}", line))
        ids = np.empty(0, dtype=object)
        cats = np.empty(0, dtype=np.int8)
        coords = np.empty((0, NUM_KEYPOINTS, 2), dtype=np.float32)
        vis = np.empty((0, NUM_KEYPOINTS), dtype=np.int8)
        index = None

    parsed_before = np.cumsum(ok) - ok
    verbatim = [(int(parsed_before[j]), data_lines[j]) for j in np.flatnonzero(~ok)]
    problems.sort(key=lambda p: p.line)
    ann = Annotations(ids, cats, coords, vis, has_kp, problems, path, header=header,
                      newline=newline, bom=bom, final_newline=final_newline, verbatim=verbatim)
    if index is not None:
        ann._index, ann._index_key = index, (id(ann.image_ids), len(ann.image_ids))
    return ann


_LEAVING_ROOT = re.compile(r"^(?:[/\\]|[A-Za-z]:|(?:.*[/\\])?\.\.(?:[/\\]|$))|\x00", re.MULTILINE)


def _ids_leaving_root(ids: list[str]) -> list[int]:
    """Indices of ids that are absolute (`/x`, `\\x`, `C:x`) or climb with `..`, or hold NUL."""
    text = "\n" + "\n".join(ids)
    # The usual case costs a few substring scans (a regex over 100,000 ids took 150 ms).
    if not any(mark in text for mark in ("\n/", "\n\\", "..", ":", "\x00")):
        return []
    return [k for k, image_id in enumerate(ids) if _LEAVING_ROOT.search(image_id)]


def id_problems(ids: Sequence[str]) -> dict[int, str]:
    """Why each id (by index) could not be saved as a row and loaded back as itself: empty, a
    quote first, a comma, a line break or NUL, not UTF-8, or leading outside the data root."""
    out: dict[int, str] = {}
    text = "/".join(ids)
    # The usual case costs a few scans of one string (the rules per id only for a hit).
    if any(mark in text for mark in (",", "\n", "\r", "\x00", '"')) or not all(ids):
        for k, image_id in enumerate(ids):
            reason = _csv_id_problem(image_id)
            if reason:
                out[k] = reason
    if _has_surrogates(text):
        for k, image_id in enumerate(ids):
            if k not in out and _has_surrogates(image_id):
                out[k] = "is not valid UTF-8"
    for k in _ids_leaving_root(list(ids)):
        out.setdefault(k, "leads outside the data root")
    return out


def _csv_id_problem(image_id: str) -> str | None:
    """What keeps `image_id` from being the first field of a CSV row, or None."""
    if not image_id:
        return "is empty"
    if image_id[0] == '"':
        return "starts with a quote"
    if "," in image_id:
        return "holds a comma"
    if "\n" in image_id or "\r" in image_id:
        return "holds a line break"
    if "\x00" in image_id:
        return "holds a NUL character"
    return None


def _foreign_encoding(data: bytes) -> str | None:
    """"UTF-16" or "UTF-32" when the bytes are text in that encoding (a byte-order mark, or NUL
    bytes every other or fourth byte as ASCII text has in it), else None."""
    if data.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff")):
        return "UTF-32"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "UTF-16"
    head = data[:4096]
    if len(head) >= 8 and head.count(0) >= len(head) // 2 - 2:
        return "UTF-32" if head.count(0) >= 3 * len(head) // 4 - 4 else "UTF-16"
    return None


def _guess_id(line: str) -> str | None:
    first = line.split(",", 1)[0]
    return first or None


def _read_header(lines: list[str], problems: list[RowProblem]) -> tuple[str | None, bool, bool, int]:
    """Return (header text or None, has_keypoints, rows usable, index of first data line)."""
    if not lines:
        problems.append(RowProblem(1, None, None, "empty file: no header row", ""))
        return None, True, True, 0
    line = lines[0]
    fields = tuple(line.split(","))
    if fields == CSV_HEADER:
        return line, True, True, 1
    if fields == TEST_HEADER:
        return line, False, True, 1
    if len(fields) in (len(CSV_HEADER), len(TEST_HEADER)) and fields[1] in CATEGORY_INDEX:
        problems.append(RowProblem(1, fields[0], None, "missing header row (line 1 is a data row)", line))
        return None, len(fields) == len(CSV_HEADER), True, 0
    expected = CSV_HEADER if len(fields) > len(TEST_HEADER) else TEST_HEADER
    if len(fields) == len(expected):
        misplaced = [f for i, f in enumerate(fields) if f != expected[i] and f in expected]
        if not misplaced:
            # Only misspellings: the columns are where FashionAI puts them, so rows parse by
            # position and the header text is written back as read.
            for i, (got, want) in enumerate(zip(fields, expected)):
                if got != want:
                    problems.append(RowProblem(1, None, want, f"header column {i + 1} is {got!r}, expected {want!r}", line))
            return line, expected is CSV_HEADER, True, 1
    missing = [c for c in expected if c not in fields]
    unknown = [f for f in fields if f not in expected]
    for c in missing:
        problems.append(RowProblem(1, None, c, f"header is missing column {c!r}", line))
    for f in unknown:
        problems.append(RowProblem(1, None, f, f"header has unknown column {f!r}", line))
    if not missing and not unknown:
        problems.append(RowProblem(1, None, None, "header columns are not in FashionAI order", line))
    return line, expected is CSV_HEADER, False, 1


@dataclass
class _Rows:
    line_index: np.ndarray  # index into data_lines of each parsed row
    ids: np.ndarray
    cats: np.ndarray
    coords: np.ndarray
    vis: np.ndarray
    index: dict[str, int] | None  # image id -> row, when already built


def _parse_rows(lines: list[str], first_lineno: int, has_kp: bool, newline: str,
                bad_utf8: bool, problems: list[RowProblem]) -> _Rows:
    n_fields = len(CSV_HEADER) if has_kp else len(TEST_HEADER)
    cand, ids, cats_arr, rests, suspects = _split_rows(lines, has_kp)
    reasons: dict[int, list[tuple[str | None, str]]] = {}
    for j in suspects:
        reasons[j] = _diagnose_structure(lines[j], n_fields, newline)

    cand_arr = np.asarray(cand, dtype=np.int64)
    n = len(cand)
    if has_kp:
        nums, bad = _parse_cells(rests)
        for k in np.flatnonzero(bad):
            reasons[cand[k]] = _diagnose_cells(rests[k], newline)
        good = ~bad
        xy = nums[:, :, :2]
        v = nums[:, :, 2]
        reasons_vec = _semantic_problems(cats_arr, xy, v)
        for k, col, reason in reasons_vec:
            if good[k]:
                reasons.setdefault(cand[k], []).append((col, reason))
        good[[k for k, _, _ in reasons_vec]] = False
    else:
        good = np.ones(n, dtype=bool)
        nums = np.full((n, NUM_KEYPOINTS, 3), -1, dtype=np.int32)

    # An id with undecodable bytes could be written back, but not as text anyone can use.
    if bad_utf8:
        for k in range(n):
            if good[k] and _has_surrogates(ids[k]):
                good[k] = False
                reasons.setdefault(cand[k], []).append(("image_id", "image id is not valid UTF-8"))

    # An id is a path under the data root: one leading out is never loaded, so never opened.
    for k in _ids_leaving_root(ids):
        if good[k]:
            good[k] = False
            reasons.setdefault(cand[k], []).append(
                ("image_id", "image id leads outside the data root (an absolute path or '..'); row kept as is, not loaded"))

    # Duplicates: the first row with an id loads; later rows with it are kept verbatim. The
    # id -> row dict built to find them is also the index `Annotations.index_of` uses.
    all_good = bool(good.all())
    good_idx = np.flatnonzero(good)
    good_ids = ids if all_good else [ids[k] for k in good_idx]
    index: dict[str, int] | None = dict(zip(good_ids, range(len(good_ids))))
    if len(index) != len(good_ids):
        index = None
        dup = pd.Index(good_ids, dtype=object).duplicated(keep="first")
        first_line: dict[str, int] = {}
        for k in good_idx[~dup]:
            first_line.setdefault(ids[k], cand[k])
        for k in good_idx[dup]:
            good[k] = False
            first = first_line[ids[k]]
            same = "an exact copy of" if lines[first] == lines[cand[k]] else "first at"
            reasons.setdefault(cand[k], []).append(
                ("image_id", f"duplicate image id ({same} line {first + first_lineno}); row kept as is, not loaded"))
        all_good = False

    for j in sorted(reasons):
        line = lines[j]
        image_id = _guess_id(line)
        for col, reason in reasons[j]:
            problems.append(RowProblem(first_lineno + j, image_id, col, reason, line))

    sel = slice(None) if all_good else np.flatnonzero(good)
    ids_arr = np.empty(n, dtype=object)
    ids_arr[:] = ids
    coords = nums[sel, :, :2].astype(np.float32)
    vis = nums[sel, :, 2].astype(np.int8)
    return _Rows(cand_arr[sel], ids_arr[sel], cats_arr[sel], coords, vis, index)


def _split_rows(lines: list[str], has_kp: bool) -> tuple[list[int], list[str], np.ndarray, list[str], list[int]]:
    """Split each row into id, category and keypoint text; rows failing that are suspects.

    Returns (candidate line indices, ids, category codes, keypoint texts, suspect indices).
    The per-row work is one C-level `str.split`; all cell checks happen later, in bulk.
    """
    want = 3 if has_kp else 2
    split = [line.split(",", 2) for line in lines]
    lens = np.fromiter(map(len, split), dtype=np.int64, count=len(split))
    sel = np.flatnonzero(lens == want)
    if len(sel) == len(split):
        chosen = split
    else:
        chosen = [split[j] for j in sel]
    ids = list(map(itemgetter(0), chosen))
    cats = list(map(itemgetter(1), chosen))
    rests = list(map(itemgetter(2), chosen)) if has_kp else []
    codes = _CATEGORY_LOOKUP.get_indexer(pd.Index(cats, dtype=object)) if cats else np.zeros(0, np.int64)
    good = codes >= 0
    # An empty id, one starting with a quote (a quoted CSV field) or holding a NUL cannot be
    # kept as is.
    for k in [k for k, s in enumerate(ids) if not s or s[0] == '"' or "\x00" in s]:
        good[k] = False
    suspects = sorted(np.flatnonzero(lens != want).tolist() + sel[~good].tolist())
    keep = np.flatnonzero(good)
    if len(keep) != len(ids):
        ids = [ids[k] for k in keep]
        rests = [rests[k] for k in keep] if has_kp else []
    return sel[keep].tolist(), ids, codes[keep].astype(np.int8), rests, suspects


def _has_surrogates(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


_TO_COMMAS = bytes.maketrans(b"_\n", b",,")


# Rows are parsed and formatted in chunks: the buffers stay small and cache-friendly, and a
# bad row only sends its own chunk down the careful path.
_CHUNK_ROWS = 8192


def _parse_cells(rests: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Numbers (n, 24, 3) of each row's keypoint text, and a mask of rows not canonical.

    A row is canonical iff formatting its numbers gives back its text exactly; this catches
    `05`, `+5`, ` 5`, misplaced separators and every other spelling np.fromstring accepts.
    """
    n = len(rests)
    # int32 halves the memory touched; a number beyond it comes back different from the text
    # and so is caught as not canonical.
    nums = np.empty((n, NUM_KEYPOINTS, 3), dtype=np.int32)
    bad = np.zeros(n, dtype=bool)
    for lo in range(0, n, _CHUNK_ROWS):
        hi = min(n, lo + _CHUNK_ROWS)
        if _parse_chunk(rests, lo, hi, nums, bad):
            continue
        nums[lo:hi] = -1
        _fill_numbers(rests, lo, hi, nums, bad)
        idx = lo + np.flatnonzero(~bad[lo:hi])
        if len(idx):
            _mark_non_canonical(rests, idx, _format_cells(nums[idx, :, :2], nums[idx, :, 2], b"\n"), bad)
    return nums, bad


def _parse_chunk(rests: list[str], lo: int, hi: int, nums: np.ndarray, bad: np.ndarray) -> bool:
    """Fast path: rows lo..hi in one parse and one comparison; False if it cannot be used."""
    try:
        joined = "\n".join(rests[lo:hi]).encode("ascii")
        values = np.fromstring(joined.translate(_TO_COMMAS), dtype=np.int32, sep=",")
    except (UnicodeEncodeError, ValueError):
        return False
    if values.size != (hi - lo) * _NUMS_PER_ROW:
        return False
    block = values.reshape(hi - lo, NUM_KEYPOINTS, 3)
    nums[lo:hi] = block
    formatted = _format_cells(block[:, :, :2], block[:, :, 2], b"\n")
    if formatted[:-1] != joined:
        _mark_non_canonical(rests, np.arange(lo, hi), formatted, bad)
    return True


def _mark_non_canonical(rests: list[str], idx: np.ndarray, formatted: bytes, bad: np.ndarray) -> None:
    for k, g in zip(idx, formatted.split(b"\n")):
        if g.decode("ascii") != rests[k]:
            bad[k] = True


def _fill_numbers(rests: list[str], lo: int, hi: int, nums: np.ndarray, bad: np.ndarray) -> None:
    """Parse rests[lo:hi] in one call; on failure bisect down to the rows that break it."""
    text = ",".join(rests[lo:hi]).replace("_", ",")
    try:
        values = np.fromstring(text, dtype=np.int32, sep=",")
    except (ValueError, UnicodeError):  # UnicodeError: undecodable bytes kept as surrogates
        values = None
    if values is not None and values.size == (hi - lo) * _NUMS_PER_ROW:
        nums[lo:hi] = values.reshape(hi - lo, NUM_KEYPOINTS, 3)
        return
    if hi - lo == 1:
        bad[lo] = True
        return
    mid = (lo + hi) // 2
    _fill_numbers(rests, lo, mid, nums, bad)
    _fill_numbers(rests, mid, hi, nums, bad)


def _semantic_problems(cats: np.ndarray, xy: np.ndarray, v: np.ndarray) -> list[tuple[int, str, str]]:
    """(row, column, reason) for well-formed cells whose values break the FashionAI rules."""
    vis_ok = (v >= -1) & (v <= 1)
    absent_xy = (xy[:, :, 0] == -1) & (xy[:, :, 1] == -1)
    has = CATEGORY_MASK[cats.astype(np.int64)]
    # Valid cells: absent (-1_-1_-1) or, for a keypoint the category has, present.
    fine = vis_ok & ((v == -1) == absent_xy) & (has | (v == -1))
    if fine.all() and np.abs(xy).max(initial=0) <= MAX_ABS_COORD:
        return []
    out: list[tuple[int, str, str]] = []
    bad_v = (v < -1) | (v > 1)
    absent_xy = (xy[:, :, 0] == -1) & (xy[:, :, 1] == -1)
    mismatch = ~bad_v & ((v == -1) != absent_xy)
    extra = ~bad_v & ~mismatch & (v != -1) & ~CATEGORY_MASK[cats.astype(np.int64)]
    huge = (np.abs(xy) > MAX_ABS_COORD).any(axis=2) & ~bad_v & ~mismatch
    for r, k in zip(*np.nonzero(bad_v)):
        out.append((int(r), KEYPOINTS[k], f"visibility {int(v[r, k])} is not -1, 0 or 1"))
    for r, k in zip(*np.nonzero(mismatch)):
        x, y, vv = int(xy[r, k, 0]), int(xy[r, k, 1]), int(v[r, k])
        if vv == -1:
            why = f"visibility -1 (absent) with coordinates {x}_{y}; expected -1_-1_-1"
        else:
            why = f"coordinates -1_-1 (absent) with visibility {vv}; expected -1_-1_-1"
        out.append((int(r), KEYPOINTS[k], why))
    for r, k in zip(*np.nonzero(extra)):
        out.append((int(r), KEYPOINTS[k],
                    f"{CATEGORIES[cats[r]]} has no {KEYPOINTS[k]}, but it is marked present (v={int(v[r, k])})"))
    for r, k in zip(*np.nonzero(huge)):
        out.append((int(r), KEYPOINTS[k], f"coordinate out of range (|value| > {MAX_ABS_COORD})"))
    return out


def _diagnose_structure(line: str, n_fields: int, newline: str) -> list[tuple[str | None, str]]:
    """Reasons a row failed the fast structural check (field count, id, category)."""
    if line == "":
        return [(None, "empty line")]
    if newline == "\n" and line.endswith("\r"):
        return [(None, "line ends with CRLF in a file whose lines end with LF (mixed line endings)")]
    if newline == "\r\n" and "\n" in line:
        return [(None, "line break LF inside a file whose lines end with CRLF (mixed line endings)")]
    fields = line.split(",")
    if line.startswith('"') or ',"' in line:
        return [(None, "quoted fields are not supported in FashionAI files")]
    if len(fields) != n_fields:
        return [(None, f"has {len(fields)} fields, expected {n_fields}")]
    out: list[tuple[str | None, str]] = []
    if not fields[0]:
        out.append(("image_id", "empty image id"))
    elif "\x00" in fields[0]:
        out.append(("image_id", "image id contains a NUL character"))
    if fields[1] not in CATEGORY_INDEX:
        out.append(("image_category", f"unknown category {fields[1]!r}; expected one of {', '.join(CATEGORIES)}"))
    if n_fields > 2:
        out.extend(_diagnose_cells(",".join(fields[2:]), newline, fallback=False))
    return out or [(None, "row could not be parsed")]


def _canonical_int(s: str) -> bool:
    if s == "0":
        return True
    digits = s[1:] if s.startswith("-") else s
    return digits.isascii() and digits.isdigit() and digits[0] != "0"


def _diagnose_cells(rest: str, newline: str, fallback: bool = True) -> list[tuple[str | None, str]]:
    """Cell-level reasons for the keypoint part of a row (the slow, careful path)."""
    if newline == "\n" and rest.endswith("\r"):
        return [(None, "line ends with CRLF in a file whose lines end with LF (mixed line endings)")]
    if newline == "\r\n" and "\n" in rest:
        return [(None, "line break LF inside a file whose lines end with CRLF (mixed line endings)")]
    cells = rest.split(",")
    if len(cells) != NUM_KEYPOINTS:
        return [(None, f"has {len(cells) + 2} fields, expected {len(CSV_HEADER)}")]
    out: list[tuple[str | None, str]] = []
    for name, cell in zip(KEYPOINTS, cells):
        parts = cell.split("_")
        if len(parts) != 3 or not all(_canonical_int(p) for p in parts):
            out.append((name, f"cell {cell!r} is not x_y_v with plain integers"))
        elif any(abs(int(p)) > MAX_ABS_COORD for p in parts):
            out.append((name, f"cell {cell!r}: number out of range (|value| > {MAX_ABS_COORD})"))
    if not out and fallback:
        out.append((None, "keypoint cells could not be parsed"))
    return out


# --- saving -------------------------------------------------------------------------------


def save_annotations(annotations: Annotations, path: str | os.PathLike) -> None:
    """Write atomically; coordinates are rounded to the nearest integer (half to even)."""
    atomic_write_bytes(path, format_annotations(annotations))


def dataset_root_of(annotations_path: str | os.PathLike) -> Path:
    """The data set root an annotation file belongs to: image ids are relative to it.

    FashionAI keeps annotation files in `<root>/Annotations/`; a CSV elsewhere is taken to
    sit in its own root.
    """
    parent = Path(annotations_path).resolve().parent
    return parent.parent if parent.name.lower() == "annotations" else parent


def row_line_numbers(annotations: Annotations) -> np.ndarray:
    """The 1-based line of the file each parsed row was read from (the header is line 1)."""
    n = len(annotations)
    first = 2 if annotations.header is not None else 1
    # Each unparsed line kept verbatim after `pos` parsed rows pushes the rows from `pos` on down.
    before = np.array([pos for pos, _ in annotations.verbatim], np.int64)
    return first + np.arange(n) + np.searchsorted(np.sort(before), np.arange(n), side="right")


@dataclass
class AppendPlan:
    """What appending rows to an annotation file does, worked out before anything is written:
    the rows it adds, the ids it skips (in the file already with the same values) and the
    conflicts (in the file with other values, or in a row of it that does not load), which are
    left as they are: never overwritten, never added twice."""

    path: Path
    added: Annotations
    skipped: list[str]
    conflicts: list[str]
    data: bytes  # the file's bytes with the added rows after them
    version: FileVersion  # the file as read: a change made since is never written over

    def summary(self) -> str:
        """One line: how many rows it adds and skips, and the conflicts (the first few named)."""
        text = (f"{self.path.name}: adds {len(self.added)} image{'s' if len(self.added) != 1 else ''}, "
                f"skips {len(self.skipped)} already there with the same points")
        if self.conflicts:
            more = f" and {len(self.conflicts) - 3} more" if len(self.conflicts) > 3 else ""
            text += (f"; {len(self.conflicts)} there with other points left as they are (conflicts: "
                     f"{', '.join(self.conflicts[:3])}{more})")
        return text

    def write(self) -> int:
        """Append the new rows (atomically; nothing when there are none); FileChangedError when
        the file changed since it was read. Returns how many rows were added."""
        if len(self.added):
            atomic_write_bytes(self.path, self.data, unchanged=self.version)
        return len(self.added)


def plan_append(path: str | os.PathLike, rows: Annotations,
                images_root: str | os.PathLike | None = None) -> AppendPlan:
    """How appending `rows` to the FashionAI file at `path` (created when missing or empty) goes:
    ids not in it yet are added after its bytes; an id there with the same values is skipped, one
    there with other values is a conflict (`AppendPlan`). Refused with ValueError naming the
    file, before anything is written: an id twice in `rows`, rows of the other kind (keypoint
    rows into a test split or the reverse), rows that would not load back, and, with
    `images_root` (the data root the rows' ids are relative to), a file in another data root
    that does not hold the images of the rows to add."""
    path = Path(path)
    data, version = read_versioned(path, missing_ok=True)
    target = parse_annotations(data, path)
    ids = [str(i) for i in rows.image_ids]
    twice = sorted(_duplicated(ids))
    if twice:
        more = f" and {len(twice) - 5} more" if len(twice) > 5 else ""
        raise ValueError(f"{path}: {len(twice)} image ids are given twice, nothing appended: "
                         f"{', '.join(twice[:5])}{more}")
    if target.header is not None or len(target) or target.verbatim:
        _check_kind(target, rows, path)
    skipped, conflicts = _already_there(target, rows)
    kept = set(skipped) | set(conflicts)
    added = rows.subset([j for j, i in enumerate(ids) if i not in kept])
    if images_root is not None:
        _check_images_held(path, added, Path(images_root))
    return AppendPlan(path, added, skipped, conflicts, _appended(data, target, added, path) if len(added) else data,
                      version)


def append_annotations(path: str | os.PathLike, rows: Annotations,
                       images_root: str | os.PathLike | None = None) -> int:
    """Append to the FashionAI file at `path` the `rows` whose ids it does not hold yet (its bytes
    stay as they are, the new rows follow in its line ending); ids there with the same values are
    skipped. Refused as `plan_append` refuses, and when an id is there with other values (named;
    a caller that shows `plan_append`'s summary first may write the others: `AppendPlan.write`).
    FileChangedError when the file changed between reading and replacing it. Returns how many
    rows were appended."""
    plan = plan_append(path, rows, images_root)
    if plan.conflicts:
        # Told, not dropped: this caller did not see the plan, so nothing is written.
        more = f" and {len(plan.conflicts) - 5} more" if len(plan.conflicts) > 5 else ""
        raise ValueError(f"{plan.path}: {len(plan.conflicts)} image ids are in the file already with other points "
                         f"(left as they are): {', '.join(plan.conflicts[:5])}{more}: nothing appended")
    return plan.write()


def _already_there(target: Annotations, rows: Annotations) -> tuple[list[str], list[str]]:
    """Of the ids of `rows`, (those `target` holds with the same values, those it holds
    otherwise: other values, or an unparsed row naming it), in the order of `rows`."""
    index = target.id_index()
    unparsed = {p.image_id for p in target.problems if p.image_id}
    ids = [str(i) for i in rows.image_ids]
    there = [(j, index[i]) for j, i in enumerate(ids) if i in index]
    differs: set[int] = {j for j, i in enumerate(ids) if i in unparsed and i not in index}
    if there:
        # A row's text as the file would hold it is its value: compare the canonical lines.
        mine = _row_texts(rows.subset([j for j, _ in there]))
        theirs = _row_texts(target.subset([k for _, k in there]))
        differs |= {j for (j, _), a, b in zip(there, mine, theirs) if a != b}
    same = {j for j, _ in there} - differs
    return [ids[j] for j in sorted(same)], [ids[j] for j in sorted(differs)]


def _row_texts(a: Annotations) -> list[bytes]:
    """Each row of `a` as the bytes of its line."""
    body, offsets = _format_rows(a, b"\n")
    return [body[offsets[i]:offsets[i + 1]] for i in range(len(a))]


def _check_images_held(path: Path, rows: Annotations, images_root: Path) -> None:
    """ValueError naming `path` when it lies in another data root than `images_root` and that
    root has no file for some of the rows' images: its rows would name images it does not hold."""
    root = dataset_root_of(path)
    if root == images_root.resolve():
        return
    missing = [str(i) for i in rows.image_ids if not (root / str(i)).is_file()]
    if missing:
        raise ValueError(f"{path}: its data root {root} does not hold {len(missing)} of the {len(rows)} images "
                         f"to add (e.g. {missing[0]}): its rows would name images that are not there; copy the "
                         f"images into {root} first: nothing appended")


def merge_annotation_files(base: str | os.PathLike, more: Sequence[str | os.PathLike],
                           out: str | os.PathLike) -> tuple[int, int]:
    """Write `out`: the bytes of `base` as they are, then the rows of each `more` file, in order.
    Everything is checked before the one write (a MORE file with problems, an id twice, rows of
    another kind, rows that would not load back): on a refusal (ValueError) nothing is written.
    `out` may be `base` (append in place) or a MORE file; a file read that changed before the
    rename is not replaced (FileChangedError). Returns (rows of `base`, rows appended)."""
    base, out = Path(base), Path(out)
    versions: dict[Path, FileVersion] = {}
    parts = []
    for p in map(Path, more):
        data, versions[p.resolve()] = read_versioned(p)
        ann = parse_annotations(data, p)
        if ann.problems:
            raise ValueError(f"{ann.problems[0].describe(p)} ({len(ann.problems)} problems: "
                             f"fix them first, `fkp validate {p}`)")
        parts.append(ann)
    if len({ann.has_keypoints for ann in parts}) > 1:
        raise ValueError("the files to append mix test splits (image_id,image_category only) and annotation "
                         "files with keypoints: nothing written")
    data, versions[base.resolve()] = read_versioned(base)
    target = parse_annotations(data, base)
    merged = _appended(data, target, _joined(parts), base)
    atomic_write_bytes(out, merged, unchanged=versions.get(out.resolve()))
    return len(target) + target.unparsed_count, sum(map(len, parts))


def _joined(parts: list[Annotations]) -> Annotations:
    """The rows of `parts` (all of one kind) as one Annotations, checked together."""
    if parts[0].has_keypoints:
        return concat_annotations(*parts)
    return Annotations.from_arrays([str(i) for a in parts for i in a.image_ids],
                                   np.concatenate([np.asarray(a.categories, np.int64) for a in parts]))


def _appended(data: bytes, target: Annotations, rows: Annotations, path: Path) -> bytes:
    """The bytes of the FashionAI file `data` (parsed: `target`, read from `path`) with `rows`
    after them; ValueError naming `path`, "nothing appended", when they cannot go there."""
    new = rows.subset(np.arange(len(rows)))
    if target.header is None and not len(target) and not target.verbatim:
        return format_annotations(new)  # an empty file: the rows make it, header first
    _check_kind(target, rows, path)
    ids = [str(i) for i in rows.image_ids]
    present = set(map(str, target.image_ids)) | {p.image_id for p in target.problems if p.image_id}
    clash = sorted({i for i in ids if i in present} | _duplicated(ids))
    if clash:
        more = f" and {len(clash) - 5} more" if len(clash) > 5 else ""
        raise ValueError(f"{path}: {len(clash)} image ids are in the file already or given twice, nothing "
                         f"appended: {', '.join(clash[:5])}{more}")
    new.header, new.bom, new.newline, new.final_newline = None, False, target.newline, True
    tail = format_annotations(new)
    _check_rows_load_back(target, tail, len(rows), path)
    nl = target.newline.encode("ascii")
    joint = b"" if not data or data.endswith(nl) else nl
    return data + joint + tail


def _check_kind(target: Annotations, rows: Annotations, path: Path) -> None:
    """ValueError naming `path` unless the file (with a header) can take rows of `rows`' kind."""
    if target.header is None:
        raise ValueError(f"{path}: line 1 is not a FashionAI header: nothing appended (`fkp validate {path}`)")
    if rows.has_keypoints and not target.has_keypoints:
        raise ValueError(f"{path}: a test split (no keypoint columns) cannot take annotated rows: nothing appended")
    if not rows.has_keypoints and target.has_keypoints:
        raise ValueError(f"{path}: has keypoint columns; rows of a test split (image_id,image_category only) "
                         f"cannot go into it: nothing appended")


def _check_rows_load_back(target: Annotations, tail: bytes, n: int, path: Path) -> None:
    """ValueError unless the formatted rows `tail`, under the file's header, load as `n` rows."""
    header = target.header.encode("utf-8", "surrogateescape") + target.newline.encode("ascii")
    check = parse_annotations(header + tail)
    problems = [p for p in check.problems if p.line > 1]  # a misspelt header column is the file's own
    if problems or len(check) != n:
        why = problems[0].reason if problems else "its header is not a FashionAI header"
        raise ValueError(f"{path}: the new rows would not load back from it ({why}): nothing appended")


def _duplicated(ids: list[str]) -> set[str]:
    seen, twice = set(), set()
    for i in ids:
        (twice if i in seen else seen).add(i)
    return twice


def format_annotations(annotations: Annotations) -> bytes:
    """The file bytes `save_annotations` writes."""
    a = annotations
    nl = a.newline.encode("ascii")
    body, offsets = _format_rows(a, nl)
    pieces: list[bytes] = [_BOM] if a.bom else []
    if a.header is not None:
        pieces.append(a.header.encode("utf-8", "surrogateescape") + nl)
    prev = 0
    n = len(a)
    for pos, text in a.verbatim:
        pos = min(pos, n)
        pieces.append(body[offsets[prev]:offsets[pos]])
        pieces.append(text.encode("utf-8", "surrogateescape") + nl)
        prev = pos
    pieces.append(body[offsets[prev]:])
    out = b"".join(pieces)
    if not a.final_newline and out.endswith(nl) and (n or a.verbatim or a.header is not None):
        out = out[: -len(nl)]
    return out


def _format_rows(a: Annotations, nl: bytes) -> tuple[bytes, np.ndarray]:
    """All parsed rows as bytes (each ending with `nl`) and the N+1 row start offsets."""
    n = len(a)
    ids = [str(s) for s in a.image_ids]
    bad = [i for i, s in enumerate(ids)
           if not s or s[0] == '"' or "," in s or "\n" in s or "\r" in s or "\x00" in s]
    if bad:
        raise ValueError(f"row {bad[0]}: image id {ids[bad[0]]!r} cannot be written to a CSV row")
    cats = np.asarray(a.categories, dtype=np.int64)
    if n and (cats.min() < 0 or cats.max() >= len(CATEGORIES)):
        raise ValueError(f"category codes must be in 0..{len(CATEGORIES) - 1}")
    if a.has_keypoints:
        xy, v = _checked_cells(ids, cats, np.asarray(a.coords), np.asarray(a.visibility))
    cat_tab = _bytes_matrix([b"," + c.encode("ascii") + (b"," if a.has_keypoints else b"") for c in CATEGORIES])
    pieces: list[bytes] = []
    lengths = np.zeros(n + 1, dtype=np.int64)
    for lo in range(0, n, _CHUNK_ROWS):
        hi = min(n, lo + _CHUNK_ROWS)
        id_mat = _bytes_matrix([s.encode("utf-8", "surrogateescape") for s in ids[lo:hi]])
        if a.has_keypoints:
            cells = _format_cells(xy[lo:hi], v[lo:hi], nl, as_matrix=True)
        else:
            cells = np.tile(_bytes_matrix([nl]), (hi - lo, 1))
        w0, w1 = id_mat.shape[1], cat_tab.shape[1]
        mat = np.empty((hi - lo, w0 + w1 + cells.shape[1]), dtype=np.uint8)
        mat[:, :w0] = id_mat
        mat[:, w0: w0 + w1] = cat_tab[cats[lo:hi]]
        mat[:, w0 + w1:] = cells
        keep = mat != 0  # the zero padding of every field goes; no field holds a NUL
        lengths[lo + 1: hi + 1] = np.count_nonzero(keep, axis=1)
        pieces.append(mat[keep].tobytes())
    return b"".join(pieces), np.cumsum(lengths)


def _checked_cells(ids: list[str], cats: np.ndarray, coords: np.ndarray,
                   vis: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Integer coordinates and visibility to write; raise ValueError on what would not reload."""
    v = vis if vis.dtype == np.int8 else vis.astype(np.int64)
    present = v != -1
    rounded = np.rint(coords)
    # NaN and infinity fail this comparison too.
    in_range = (np.abs(rounded) <= MAX_ABS_COORD).all(axis=2)
    xy = np.where(present[:, :, None], np.where(in_range[:, :, None], rounded, 0), -1).astype(np.int32)
    ok = (v >= -1) & (v <= 1) & (~present | in_range)
    ok &= ~present | (xy[:, :, 0] != -1) | (xy[:, :, 1] != -1)
    ok &= ~present | CATEGORY_MASK[cats]
    if ok.all():
        return xy, v
    r, k = (int(i) for i in np.argwhere(~ok)[0])
    where = f"row {r} ({ids[r]}), {KEYPOINTS[k]}"
    if not -1 <= v[r, k] <= 1:
        raise ValueError(f"{where}: visibility {v[r, k]} is not -1, 0 or 1")
    if not in_range[r, k]:
        raise ValueError(f"{where}: coordinates {coords[r, k].tolist()} are missing or out of range")
    if not CATEGORY_MASK[cats[r], k]:
        raise ValueError(f"{where}: {CATEGORIES[cats[r]]} has no {KEYPOINTS[k]}")
    raise ValueError(f"{where}: present at (-1, -1), which FashionAI reads as absent")


def _bytes_matrix(items: list[bytes]) -> np.ndarray:
    """(len, width) uint8 matrix of the byte strings, zero-padded on the right."""
    arr = np.array(items, dtype=bytes)
    width = max(arr.dtype.itemsize, 1)
    arr = arr.astype(f"S{width}")
    return arr.view(np.uint8).reshape(len(items), width)


def _word_table(strings: list[bytes], itemsize: int) -> np.ndarray:
    """Each byte string zero-padded to `itemsize` bytes and viewed as one unsigned integer.

    Gathering whole words (one element per cell part) is much faster than gathering rows of
    bytes; the zero padding is dropped when the rows are joined.
    """
    return np.array(strings, dtype=f"S{itemsize}").view(np.uint32 if itemsize == 4 else np.uint64)


@lru_cache(maxsize=64)
def _range_table(lo: int, hi: int, suffix: bytes, itemsize: int) -> np.ndarray:
    table = _word_table([b"%d%s" % (i, suffix) for i in range(lo, hi + 1)], itemsize)
    table.setflags(write=False)
    return table


def _int_words(values: np.ndarray, suffix: bytes, itemsize: int) -> np.ndarray:
    """`str(value) + suffix` of every value as padded words (see `_word_table`)."""
    lo, hi = int(values.min()), int(values.max())
    if hi - lo <= 65536:
        # Tables for the usual ranges are cached: every chunk of every file reuses them.
        lo, hi = min(lo, -1), max(hi, 1023)
        return _range_table(lo, hi, suffix, itemsize)[values - lo]
    uniq, inverse = np.unique(values, return_inverse=True)
    table = _word_table([b"%d%s" % (int(i), suffix) for i in uniq], itemsize)
    return table[inverse.reshape(values.shape)]


def _format_cells(xy: np.ndarray, v: np.ndarray, end: bytes, as_matrix: bool = False) -> bytes | np.ndarray:
    """Format the keypoint cells `x_y_v,...,x_y_v<end>` of each row.

    Returns the rows joined as bytes, or with `as_matrix` the zero-padded (n, width) matrix.
    """
    n = xy.shape[0]
    if n == 0:
        return np.zeros((0, 0), dtype=np.uint8) if as_matrix else b""
    longest = max(len(b"%d" % int(xy.min())), len(b"%d" % int(xy.max())),
                  len(b"%d" % int(v.min())), len(b"%d" % int(v.max()))) + len(end)
    itemsize = 4 if longest <= 4 else 8 if longest <= 8 else 0
    if itemsize == 0:
        raise ValueError("a coordinate has too many digits to write")
    words = np.empty((n, NUM_KEYPOINTS, 3), dtype=np.uint32 if itemsize == 4 else np.uint64)
    words[:, :, 0] = _int_words(xy[:, :, 0], b"_", itemsize)
    words[:, :, 1] = _int_words(xy[:, :, 1], b"_", itemsize)
    if int(v.min()) >= -1 and int(v.max()) <= 1:
        words[:, :-1, 2] = _range_table(-1, 1, b",", itemsize)[v[:, :-1] + 1]
        words[:, -1, 2] = _range_table(-1, 1, end, itemsize)[v[:, -1] + 1]
    else:  # only when checking rows read with a bad visibility
        words[:, :-1, 2] = _int_words(v[:, :-1], b",", itemsize)
        words[:, -1, 2] = _int_words(v[:, -1], end, itemsize)
    cells = words.view(np.uint8).reshape(n, -1)
    if as_matrix:
        return cells
    return cells[cells != 0].tobytes()
