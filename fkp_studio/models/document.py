"""The open data set: annotations, predictions, per-image error, edit journal, saving.

Everything the studio shows is read from this object's numpy arrays; every edit goes
through `apply`, which changes the arrays, appends the edit to the journal (durable before
it returns) and updates what depends on the row: visible count, edited flag and NE.

An image without a category (a photo outside the category folders, not predicted) is a row
like the others, flagged in `uncategorized` and carrying `NO_CATEGORY_PLACEHOLDER` as its code
until the user chooses one (one undo step, journaled). No FashionAI row can hold it: a save
writes every other row and keeps these, with their points, in the workspace
(`Workspace.save_uncategorized`), where the next opening finds them.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, Signal

from engine.analysis.label_errors import align_scores
from engine.io.predictions import MISSING_SCORE, Predictions
from engine.analysis.ne import align_predictions, normalized_errors, per_image_ne
from engine.analysis.review_queue import expected_review_seconds
from engine.io.annotations import Annotations, load_annotations, save_annotations
from engine.io.files import atomic_write_bytes
from engine.io.journal import NO_CATEGORY, Edit, Journal, JournalContents, JournalError, make_base, read_journal
from engine.io.lock import AnnotationLock
from engine.io.review import REVIEW_STATES, ReviewLog
from engine.io.merge import MergeResult, PointChanges, merge_changes
from engine.io.messages import describe_error
from engine.schema import NUM_KEYPOINTS
from engine.io.workspace import Workspace
from fkp_studio.models.error_index import ErrorTypeIndex

# The code an image without a category carries in the arrays, so that everything indexing by
# category still works; `AnnotationDocument.uncategorized` says it is not a choice, and its edits
# carry `NO_CATEGORY` (so the journal tells "none" from the placeholder's category).
NO_CATEGORY_PLACEHOLDER = 0


def align_to_annotations(gt: Annotations, pred: Annotations, source: str,
                         scores: tuple[list[str], np.ndarray] | None = None) -> Predictions:
    """Prediction rows (and their `scores`, (ids, (M, 24)) as read from a scores file) reordered
    to the annotation rows by image id; rows the file lacks are not `present`. Each row's category
    is the one the file predicted with (the annotation's where the file lacks the image)."""
    coords, vis, matched = align_predictions(gt, pred)
    index = pred.id_index()
    categories = np.array([pred.categories[index[i]] if i in index else c
                           for i, c in zip(gt.image_ids.tolist(), gt.categories.tolist())], np.int64)
    aligned = Predictions.unpredicted(gt.image_ids, categories, source=source)
    aligned.coords[:] = np.where(np.isfinite(coords), coords, -1)
    aligned.visibility[:], aligned.present[:] = vis, matched
    if scores is not None:
        aligned.scores[:] = np.nan_to_num(align_scores(gt, *scores), nan=MISSING_SCORE)
    return aligned


def compute_errors(gt: Annotations, pred: Predictions, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-image NE (R,) and per-keypoint normalized errors (R, 24) for `rows` (default: all).

    NaN where the image has no prediction or no scored point (images without a prediction
    row are not charged the missing penalty: they simply have not been predicted yet).
    """
    rows = np.arange(len(gt)) if rows is None else np.asarray(rows, dtype=np.int64)
    errors = normalized_errors(gt.coords[rows], gt.visibility[rows], gt.categories[rows].astype(np.int64),
                               pred.coords[rows], pred.visibility[rows]).errors
    errors[~pred.present[rows]] = np.nan
    return per_image_ne(errors), errors


class AnnotationDocument(QObject):
    """One annotation file being viewed and edited."""

    rowsChanged = Signal(object)  # np.ndarray of data rows whose values changed
    predictionsChanged = Signal()
    predictionsFilled = Signal(object)  # np.ndarray of data rows whose predictions and NE just arrived
    journalFailed = Signal(str)  # an edit could not be journaled (it is still in memory)

    def __init__(self, annotations: Annotations, csv_path: str | Path, workspace: Workspace,
                 predictions: Predictions | None = None, errors: tuple[np.ndarray, np.ndarray] | None = None,
                 uncategorized: np.ndarray | None = None):
        super().__init__()
        self.ann = annotations
        self.csv_path = Path(csv_path).resolve()
        self.workspace = workspace
        n = len(annotations)
        # Per image: it has no category yet (its code is the placeholder); never written to the CSV.
        self.uncategorized = (np.zeros(n, bool) if uncategorized is None
                              else np.asarray(uncategorized, bool).copy())
        self._baseline_uncategorized = self.uncategorized.copy()
        self.categories = annotations.categories.astype(np.int64)
        self._baseline_coords = annotations.coords.copy()
        self._baseline_vis = annotations.visibility.copy()
        self._baseline_categories = annotations.categories.copy()
        self.had_points = (self._baseline_vis >= 0).any(axis=1)  # per image: annotated when read
        self.edited = np.zeros(n, bool)         # per image: changed since read (points or category)
        self.points_edited = np.zeros(n, bool)  # per image: its points changed since read
        self.visible_count = (annotations.visibility == 1).sum(axis=1).astype(np.int64)
        self.predictions: Predictions | None = None
        self.ne = np.full(n, np.nan)
        self.errors = np.full((n, NUM_KEYPOINTS), np.nan)
        self.disk_base = make_base(self.csv_path)  # the version of the file that was read
        self.review = np.zeros(n, np.int8)          # per image: index into REVIEW_STATES
        self.review_log = ReviewLog(workspace.review_path(self.csv_path))
        self.review_problems = self._load_review()
        self.lock: AnnotationLock | None = None     # the editing lock, held while open
        self.read_only: str | None = None           # why this document cannot be edited, if it cannot
        self.journal = Journal(workspace.journal_path(self.csv_path), self.disk_base)
        # Error types and suspected label errors: updated by this document before it emits.
        self.error_index = ErrorTypeIndex(self)
        if predictions is not None:
            self.set_predictions(predictions, errors)

    def __len__(self) -> int:
        return len(self.ann)

    # --- reading ------------------------------------------------------------------------

    def image_path(self, row: int) -> Path:
        return self.workspace.image_path(str(self.ann.image_ids[row]))

    def set_predictions(self, predictions: Predictions, errors: tuple[np.ndarray, np.ndarray] | None = None) -> None:
        """Show these predictions; `errors` (ne, per-keypoint) if already computed off the main thread."""
        self.predictions = predictions
        self.ne, self.errors = errors if errors is not None else compute_errors(self.ann, predictions)
        self.error_index.recompute()
        self.predictionsChanged.emit()

    def start_predictions(self, source: str) -> None:
        """A prediction run begins: no image predicted yet (`fill_predictions` brings them)."""
        self.set_predictions(Predictions.unpredicted(self.ann.image_ids, self.categories, source=source))

    def fill_predictions(self, part: Predictions) -> None:
        """Predictions of rows `part.rows` arrived (a run's batch, as saved): store them, score them
        against the annotations as they are now (edits made meanwhile count), emit `predictionsFilled`."""
        self.predictions.put(part)
        rows = part.rows
        self.ne[rows], self.errors[rows] = compute_errors(self.ann, self.predictions, rows)
        # The error types wait for the end of the run (`set_predictions`): a pass over every point.
        self.predictionsFilled.emit(rows)

    def clear_predictions(self, rows: np.ndarray) -> None:
        """These rows have no prediction any more (one made for another category is not theirs)."""
        rows = np.asarray(rows, np.int64)
        self.predictions.clear(rows)
        self.ne[rows], self.errors[rows] = np.nan, np.nan
        self.error_index.update_rows(rows)
        self.predictionsFilled.emit(rows)

    def ids(self, rows) -> list[str]:
        """The image ids of these data rows."""
        return [str(self.ann.image_ids[r]) for r in np.asarray(rows, np.int64).tolist()]

    # --- editing ------------------------------------------------------------------------

    def edit_of(self, row: int, keypoints, coords, visibility, category: int | None = None) -> Edit:
        """The edit setting these keypoints (and with `category`, the category) of image `row`."""
        return Edit(str(self.ann.image_ids[row]), keypoints, coords, visibility, category)

    def current(self, row: int, keypoints, with_category: bool = False) -> Edit:
        """The edit that would put these keypoints (and the category) of image `row` back as they are now."""
        ks = np.asarray(keypoints, dtype=np.int64)
        category = (NO_CATEGORY if self.uncategorized[row] else int(self.categories[row])) if with_category else None
        return self.edit_of(row, ks, self.ann.coords[row, ks], self.ann.visibility[row, ks], category)

    def apply(self, edit: Edit) -> None:
        """Set keypoints of one image, journal the edit, update what depends on the row."""
        row = self.ann.index_of(edit.image_id)
        self.ann.add_keypoint_columns()  # a test split's first point makes it an annotation file
        before = self.current(row, edit.keypoints, with_category=edit.category is not None)
        if edit.category is not None:
            none = edit.category == NO_CATEGORY
            self.ann.categories[row] = self.categories[row] = NO_CATEGORY_PLACEHOLDER if none else edit.category
            self.uncategorized[row] = none
        self.ann.coords[row, edit.keypoints] = edit.coords
        self.ann.visibility[row, edit.keypoints] = edit.visibility
        try:
            self.journal.append(edit, before)
        except OSError as e:
            self.journalFailed.emit(f"{self.journal.path}: cannot write the edit journal ({describe_error(e)}); "
                                    "edits are kept in memory — save to keep them")
        self._refresh_rows(np.array([row]))

    def _refresh_rows(self, rows: np.ndarray) -> None:
        a = self.ann
        self.visible_count[rows] = (a.visibility[rows] == 1).sum(axis=1)
        self.points_edited[rows] = ((a.visibility[rows] != self._baseline_vis[rows]).any(axis=1)
                                    | (a.coords[rows] != self._baseline_coords[rows]).any(axis=(1, 2)))
        self.edited[rows] = (self.points_edited[rows] | (a.categories[rows] != self._baseline_categories[rows])
                             | (self.uncategorized[rows] != self._baseline_uncategorized[rows]))
        if self.predictions is not None:
            self.ne[rows], self.errors[rows] = compute_errors(a, self.predictions, rows)
        self.error_index.update_rows(rows)
        self.rowsChanged.emit(rows)

    # --- review state -----------------------------------------------------------------

    def _load_review(self) -> list[str]:
        """The review states saved with the file; those set since the last save wait in
        `pending_review` (row -> state) for the restore question, as unsaved edits do."""
        self.pending_review: dict[int, str] = {}
        try:
            saved, pending, bad = self.review_log.load_parts()
        except OSError as e:
            return [f"{self.review_log.path}: {describe_error(e)}"]
        index = self.ann.id_index()
        for image_id, state in saved.items():
            row = index.get(image_id)
            if row is not None:
                self.review[row] = REVIEW_STATES.index(state)
        for image_id, state in pending.items():
            row = index.get(image_id)
            if row is not None and REVIEW_STATES.index(state) != self.review[row]:
                self.pending_review[row] = state
        return [f"{self.review_log.path}, {line}" for line in bad]

    def show_pending_review(self) -> None:
        """Show the review states set since the last save as they are (a read-only document: they
        are the live session's that holds the lock)."""
        for row, state in self.pending_review.items():
            self.review[row] = REVIEW_STATES.index(state)
        self.pending_review = {}

    def discard_review_marks(self) -> np.ndarray:
        """Review states set since the last save go back to the saved ones, in the log and here
        (their edits were discarded). Returns the rows changed."""
        self.pending_review = {}
        index = self.ann.id_index()
        reverted = self.review_log.discard_pending()
        rows = np.array(sorted(index[i] for i in reverted if i in index), np.int64)
        for row in rows.tolist():
            self.review[row] = REVIEW_STATES.index(reverted[str(self.ann.image_ids[row])])
        if len(rows):
            self.rowsChanged.emit(rows)
        return rows

    def set_review(self, rows, state: str) -> None:
        """Mark images reviewed, skipped or unreviewed; durable before it returns."""
        rows = np.atleast_1d(np.asarray(rows, dtype=np.int64))
        if self.read_only or not len(rows):
            return
        self.review[rows] = REVIEW_STATES.index(state)
        try:
            self.review_log.append({str(self.ann.image_ids[r]): state for r in rows.tolist()})
        except OSError as e:
            self.journalFailed.emit(f"{self.review_log.path}: cannot record the review state ({describe_error(e)})")
        self.rowsChanged.emit(rows)

    def review_state(self, row: int) -> str:
        return REVIEW_STATES[int(self.review[row])]

    def review_queue(self) -> np.ndarray:
        """Unreviewed images, the most expected correction seconds first (`engine.analysis.review_queue`),
        then those without a prediction, in file order."""
        rows = np.flatnonzero(self.review == 0)
        p = self.predictions
        if p is None:
            return rows
        seconds = expected_review_seconds(p.scores[rows], p.visibility[rows])
        seconds[~p.present[rows]] = -np.inf
        return rows[np.argsort(-seconds, kind="stable")]

    # --- journal: restoring unsaved edits ----------------------------------------------

    def pending_edits(self) -> JournalContents | None:
        """Unsaved edits a previous session left in the journal (None: nothing to restore)."""
        path = self.journal.path
        if not path.exists():
            return None
        try:
            contents = read_journal(path)
        except JournalError:
            # Unreadable: keep it for inspection, start a new one.
            self.journal.discard(keep_as=path.with_suffix(f".unreadable-{int(time.time())}.jsonl"))
            return None
        return contents if contents.edits else None

    def replayed(self, contents: JournalContents) -> MergeResult:
        """The journal's net changes merged onto the file as it is now (see `engine.io.merge`):
        an edit undone before the crash is not re-applied, a point the file changed since is a
        conflict."""
        return merge_changes(contents.net_changes(), self.ann, self.uncategorized)

    def discard_pending(self) -> Path:
        """Discard the unsaved edits and the review marks they came with: the journal is set aside
        (renamed, never deleted) and a new one started, the review states go back to the saved
        ones. OSError (the file became a folder, a full disk) leaves the journal where it is,
        offered at the next opening."""
        kept = self.set_journal_aside()
        self.discard_review_marks()
        return kept

    def set_journal_aside(self) -> Path:
        """Rename the journal aside (never deleted) and start a new one; the review log stays."""
        base = make_base(self.csv_path)  # before the rename: a file that cannot be read moves nothing
        kept = self.journal.path.with_name(f"{self.journal.path.stem}.discarded-{int(time.time())}.jsonl")
        self.journal.discard(keep_as=kept)
        self.journal = Journal(self.journal.path, base)
        return kept

    def base_changed(self, contents: JournalContents) -> bool:
        """Whether the annotation file changed on disk since the journal started."""
        now = make_base(self.csv_path)
        return (now.get("size"), now.get("sha256")) != (contents.base.get("size"), contents.base.get("sha256"))

    # --- saving -------------------------------------------------------------------------

    @property
    def backup_path(self) -> Path:
        return self.csv_path.with_name(self.csv_path.name + ".orig")

    def save(self) -> None:
        """Write the annotation file atomically, keeping `<name>.orig` of the first version; the
        images without a category are left out of it and kept in the workspace (`left_out_note`).

        Raises OSError or ValueError with the reason; the edits stay in memory and journal.
        """
        self._write(without_rows(self.ann, self.uncategorized))

    def left_out_note(self) -> str:
        """What a save left out, for its message ("" when nothing)."""
        n = int(self.uncategorized.sum())
        if not n:
            return ""
        return (f"; {n:,} image{'s' if n != 1 else ''} without a category {'were' if n != 1 else 'was'} "
                "left out (kept in the workspace)")

    def _write(self, annotations: Annotations) -> None:
        if not self.backup_path.exists() and self.csv_path.exists():
            atomic_write_bytes(self.backup_path, self.csv_path.read_bytes())
        self.csv_path.parent.mkdir(parents=True, exist_ok=True)  # new annotations: Annotations/ too
        # The uncategorized images first: the journal restarts below, and from then on only this
        # file and the CSV hold what they hold.
        rows = np.flatnonzero(self.uncategorized)
        self.workspace.save_uncategorized(self.csv_path, [str(i) for i in self.ann.image_ids[rows]],
                                          self.ann.coords[rows], self.ann.visibility[rows])
        save_annotations(annotations, self.csv_path)
        if self.lock is not None:
            self.lock.follow(self.csv_path)  # the saved file is a new inode: its other names lock on it
        self.disk_base = make_base(self.csv_path)
        self.journal.restart(self.disk_base)
        rows = np.flatnonzero(self.review)
        try:  # the review log grows by a line per change; a save is a good time to compact it
            self.review_log.compact({str(self.ann.image_ids[r]): REVIEW_STATES[self.review[r]] for r in rows.tolist()})
        except OSError:
            try:  # the appended log stays valid; its marks are saved now (a later Discard keeps them)
                self.review_log.mark_saved()
            except OSError:
                pass

    def changed_on_disk(self) -> bool:
        """Whether another program changed (or removed) the file since this document read or saved it."""
        now = make_base(self.csv_path)
        return (now.get("size"), now.get("sha256")) != (self.disk_base.get("size"), self.disk_base.get("sha256"))

    def session_changes(self) -> PointChanges:
        """The points this session changed, with their values as read and as they are now, on the
        images the file had when read (those without a category then were not in it)."""
        rows = np.flatnonzero(~self._baseline_uncategorized & ~self.uncategorized)
        return PointChanges.between(self.ann.image_ids[rows], self._baseline_coords[rows], self._baseline_vis[rows],
                                    self.ann.coords[rows], self.ann.visibility[rows], self._baseline_categories[rows],
                                    self.ann.categories[rows])

    def merge_and_save(self) -> tuple[MergeResult, list[Path]]:
        """Re-read the file another program changed, apply this session's edits on top and save
        -> (the merge, files kept aside). Where the merge could not keep everything (conflicts:
        the other version's value; edited images the file no longer has, and points the merged
        category has no place for, cleared: this session's), the version that lost is written
        beside the file first, so nothing is lost."""
        theirs = load_annotations(self.csv_path)
        result = merge_changes(self.session_changes(), theirs)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        kept = []
        if result.conflicts:
            kept.append(self.csv_path.with_name(f"{self.csv_path.stem}.theirs-{stamp}{self.csv_path.suffix}"))
            atomic_write_bytes(kept[-1], self.csv_path.read_bytes())
        if result.missing or result.cleared:
            kept.append(self.csv_path.with_name(f"{self.csv_path.stem}.ours-{stamp}{self.csv_path.suffix}"))
            save_annotations(without_rows(self.ann, self.uncategorized), kept[-1])
        # Images that had no category when read and have one now entered the file through this
        # session's saves, if at all: this session's values win (the file's version is kept beside
        # it when it differs); the others join at the end.
        merged = result.annotations
        named = np.flatnonzero(self._baseline_uncategorized & ~self.uncategorized)
        index = merged.id_index()
        at = np.array([index.get(str(i), -1) for i in self.ann.image_ids[named]], np.int64)
        ours, theirs_rows = named[at >= 0], at[at >= 0]
        differs = ((merged.coords[theirs_rows] != self.ann.coords[ours]).any(axis=(1, 2))
                   | (merged.visibility[theirs_rows] != self.ann.visibility[ours]).any(axis=1)
                   | (merged.categories[theirs_rows] != self.ann.categories[ours]))
        if differs.any() and not result.conflicts:
            kept.append(self.csv_path.with_name(f"{self.csv_path.stem}.theirs-{stamp}{self.csv_path.suffix}"))
            atomic_write_bytes(kept[-1], self.csv_path.read_bytes())
        merged.coords[theirs_rows] = self.ann.coords[ours]
        merged.visibility[theirs_rows] = self.ann.visibility[ours]
        merged.categories[theirs_rows] = self.ann.categories[ours]
        if (at < 0).any():
            merged = append_rows(merged, self.ann.subset(named[at < 0]))
        if (merged.visibility >= 0).any():
            merged.add_keypoint_columns()  # the file became a test split meanwhile: its points need the columns
        self._write(merged)
        return result, kept

    def save_copy(self, path: str | Path) -> None:
        """Write this session's version to another file (atomically); this file is left as it is.
        The images without a category are not in it (no FashionAI row can hold them)."""
        save_annotations(without_rows(self.ann, self.uncategorized), path)

    def close(self) -> None:
        try:
            self.journal.close()
            self.review_log.close()
        finally:  # whatever closing the logs raised, the lock is let go
            if self.lock is not None:
                self.lock.release()
                self.lock = None


def without_rows(ann: Annotations, drop: np.ndarray) -> Annotations:
    """`ann` without the rows `drop` flags (a bool per row), its layout and unparsed rows kept
    in their places (`Annotations.subset` drops those)."""
    drop = np.asarray(drop, bool)
    if not drop.any():
        return ann
    keep = ~drop
    out = ann.copy()
    out.image_ids, out.categories = ann.image_ids[keep].copy(), ann.categories[keep].copy()
    out.coords, out.visibility = ann.coords[keep].copy(), ann.visibility[keep].copy()
    kept_before = np.concatenate([[0], np.cumsum(keep)])  # kept rows before each position
    out.verbatim = [(int(kept_before[min(pos, len(keep))]), text) for pos, text in ann.verbatim]
    return out


def append_rows(ann: Annotations, more: Annotations) -> Annotations:
    """`ann` with `more`'s rows after its own (layout and unparsed rows of `ann` kept)."""
    out = ann.copy()
    out.image_ids = np.concatenate([ann.image_ids, more.image_ids])
    out.categories = np.concatenate([ann.categories, more.categories.astype(ann.categories.dtype)])
    out.coords = np.concatenate([ann.coords, more.coords])
    out.visibility = np.concatenate([ann.visibility, more.visibility])
    return out
