"""The data-set session: opening an annotation file off the main thread, its workspace, the
unsaved edits of an earlier session, loading a predictions file, remembering what was open.

`DatasetSession` holds the open `AnnotationDocument`; the window installs its widgets on
`opened` and asks the user the questions (restore or not) that the session poses.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PySide6.QtCore import QObject, QSettings, QStandardPaths, Signal

from engine.io.annotations import Annotations, RowProblem, load_annotations
from engine.io.image_scan import ScannedImages, images_root, scan_images
from engine.io.files import atomic_write_bytes
from engine.io.journal import JournalContents
from engine.io.lock import LockedError, acquire_lock
from engine.io.merge import MergeResult
from engine.io.messages import describe_error
from engine.io.review import REVIEWED, SKIPPED, UNREVIEWED
from engine.io.predictions import Predictions
from engine.io.scores import load_scores, scores_path
from engine.io.workspace import Workspace, dataset_root_of, find_annotation_files
from engine.schema import NUM_KEYPOINTS
from fkp_studio.models.document import (NO_CATEGORY_PLACEHOLDER, AnnotationDocument, align_to_annotations,
                                  append_rows, compute_errors)
from fkp_studio.models.engine_thread import EngineThread


def state_dir_for(root: Path) -> Path | None:
    """Where the workspace state goes: `<root>/.fkp`, or a per-user folder if the root is read-only."""
    if Workspace(root).is_writable():
        return None
    base = Path(QStandardPaths.writableLocation(QStandardPaths.AppDataLocation)) / "workspaces"
    return base / hashlib.sha1(str(root).encode()).hexdigest()[:12]


@dataclass
class RestoreOffer:
    """Unsaved work of an earlier session: its edits, merged onto the file as it is now, and the
    review marks they came with (one history: restored or discarded together)."""

    contents: JournalContents | None   # None: no edit changes anything, only review marks
    merge: MergeResult | None          # its rows are the ones to restore, with the merged values
    base_changed: bool      # the file changed on disk since the edits were made
    damaged_copy: Path | None = None  # where the journal was copied when some lines were damaged
    marks: dict[int, str] = field(default_factory=dict)  # row -> review state set since the last save

    @property
    def rows(self) -> np.ndarray:
        return self.merge.rows if self.merge is not None else np.zeros(0, np.int64)

    @property
    def coords(self) -> np.ndarray:
        return self.merge.annotations.coords[self.rows]

    @property
    def visibility(self) -> np.ndarray:
        return self.merge.annotations.visibility[self.rows]

    @property
    def categories(self) -> list[int | None]:
        """Per row to restore, the category the edits gave it (None: the category stays)."""
        named = set(self.merge.category_rows.tolist())
        return [int(self.merge.annotations.categories[r]) if r in named else None for r in self.rows.tolist()]

    def marks_text(self) -> str:
        """The review marks, counted per state ("2 images marked reviewed, 1 skipped")."""
        counts = {state: sum(1 for s in self.marks.values() if s == state) for state in (REVIEWED, SKIPPED, UNREVIEWED)}
        parts = [f"{n} marked {state}" for state, n in counts.items() if n]
        return f"review marks on {len(self.marks)} image{'s' if len(self.marks) != 1 else ''} ({', '.join(parts)})"

    def question(self, file_name: str) -> str:
        m = self.merge
        what = [f"{m.applied} edited points on {len(self.rows)} images"] if m is not None else []
        if self.marks:
            what.append(self.marks_text())
        text = (f"{file_name} has unsaved edits from an earlier session ({' and '.join(what)}). Restore them? "
                "Discard drops the edits and the review marks together.")
        if m is None:
            return text
        both = [c for c in m.conflicts if not c.cleared]
        if self.base_changed:
            text += ("\n\nThe file has changed on disk since; the edits are merged onto the new version"
                     + (f", and {len(both)} points changed on both sides would take the earlier "
                        f"session's value:\n" + "\n".join(c.describe() for c in both[:10])
                        if both else "."))
        if m.cleared:
            text += (f"\n\n{len(m.cleared)} points have no place in their image's category and will be cleared:\n"
                     + "\n".join(c.describe() for c in m.cleared[:10]))
        if m.missing:
            text += f"\n\n{len(m.missing)} edited images are no longer in the file and will be skipped."
        if self.contents.bad_lines:
            text += (f"\n\n{len(self.contents.bad_lines)} damaged journal lines were skipped "
                     f"({self.contents.bad_lines[0]}); the journal is kept as {self.damaged_copy}.")
        return text


class DatasetSession(QObject):
    """The open data set: `open` it, then `opened(doc)`; predictions follow with `load_predictions`."""

    opened = Signal(object)             # the new AnnotationDocument
    predictionsLoaded = Signal(str)     # the predictions file now shown
    modelRequested = Signal(str)        # open() was given a model package to predict with
    failed = Signal(str, str)           # title, message

    def __init__(self, io_thread: EngineThread, parent: QObject | None = None):
        super().__init__(parent)
        self.io_thread = io_thread
        self.doc: AnnotationDocument | None = None

    def open(self, annotations: str | Path, predictions: str | Path | None = None,
             model: str | Path | None = None) -> Path:
        """Read an annotation file on the io thread; `opened`, then the predictions and model follow."""
        csv_path = Path(annotations).resolve()
        pred_path = Path(predictions).resolve() if predictions else None
        workspace = workspace_of(csv_path)
        # The list shows as soon as the annotations are read; predictions follow in a second job.
        # The images without a category that an earlier save kept in the workspace come back too.
        self.io_thread.submit(
            f"load {csv_path.name}", lambda ctx: with_uncategorized(load_annotations(csv_path), workspace, csv_path),
            on_done=lambda loaded: self._install(csv_path, *loaded, pred_path, model, workspace),
            on_error=lambda msg: self.failed.emit("Cannot open the annotation file", msg))
        return csv_path

    def open_images(self, images_dir: str | Path, model: str | Path | None = None,
                    predictions: str | Path | None = None) -> Path:
        """Start new annotations for a folder of images with no annotation file: the folder is
        scanned on the io thread; the file, `<root>/Annotations/<root name>.csv`, is created on
        the first save (when it exists, or the root holds one annotation file of another name,
        that file is opened, with the folder's images it lacks added).
        An image whose folder names no category takes the one of its row in `predictions`
        (e.g. `fkp predict --images`: the detector's), which are then shown; without one it is
        listed with no category, for the user to choose. Returns the file's path."""
        root = images_root(images_dir)
        csv_path = (root / "Annotations" / f"{root.name}.csv").resolve()
        pred_path = Path(predictions).resolve() if predictions else None
        workspace = workspace_of(csv_path)

        def job(ctx) -> tuple[Path, Annotations, np.ndarray]:
            # Listed here, on the io thread: a folder on a network share can take seconds.
            csv = existing_annotation_file(root, pred_path) or csv_path
            return (csv, *read(ctx, csv))

        def read(ctx, csv_path: Path) -> tuple[Annotations, np.ndarray]:
            scanned = scan_images(images_dir, progress=lambda n: ctx.progress(n, 0, "listing images"),
                                  should_stop=ctx.should_stop)
            if pred_path is not None:
                predicted = load_annotations(pred_path)
                index = predicted.id_index()
                scanned.categories = [c if c is not None or i not in index else int(predicted.categories[index[i]])
                                      for i, c in zip(scanned.image_ids, scanned.categories)]
            if csv_path.exists():  # opened before: its rows as saved, then what the folder adds
                ann, uncategorized = with_uncategorized(load_annotations(csv_path), workspace, csv_path, scanned)
            else:
                ann, uncategorized = new_annotations(scanned, csv_path)
            # Files the scan left out (unreadable folders, names a CSV row cannot hold) are problems to see.
            ann.problems.extend(RowProblem(0, "", "image_id", message, "") for message in scanned.skipped)
            return ann, uncategorized

        self.io_thread.submit(f"list {Path(images_dir).name}", job,
                              on_done=lambda loaded: self._install(*loaded, pred_path, model, workspace),
                              on_error=lambda msg: self.failed.emit("Cannot list the images", msg))
        return csv_path

    def _install(self, csv_path: Path, annotations: Annotations, uncategorized: np.ndarray, pred_path: Path | None,
                 model, workspace: Workspace) -> None:
        if self.doc is not None:
            self.doc.close()
        lock, read_only = None, None
        try:
            lock = acquire_lock(workspace.lock_path(csv_path), csv_path)  # its other names too
        except LockedError as e:  # another live session edits this file: look, do not touch
            read_only = f"read-only: {csv_path.name} is open for editing by {e.holder.describe() if e.holder else 'another session'}"
        except OSError as e:  # a directory, a FIFO, a planted link, another user's file: not ours
            # Unlocked, the journal and the review log may be a live session's: look, do not touch.
            read_only = f"read-only: cannot lock {csv_path.name} for editing ({describe_error(e)})"
        self.doc = AnnotationDocument(annotations, csv_path, workspace, uncategorized=uncategorized)
        self.doc.lock, self.doc.read_only = lock, read_only
        remember_dataset(csv_path, str(pred_path) if pred_path else None)
        self.opened.emit(self.doc)
        if pred_path is not None:
            self.load_predictions(pred_path)
        if model:
            self.modelRequested.emit(str(model))

    def close(self) -> None:
        if self.doc is not None:
            self.doc.close()

    # --- unsaved edits of an earlier session ---------------------------------------------

    def restore_offer(self) -> RestoreOffer | None:
        """The earlier session's unsaved edits and review marks, or None when there are none that
        change anything (edits that were all undone again are set aside without asking)."""
        doc = self.doc
        if doc is None:
            return None
        if doc.read_only:
            # A read-only document's journal and marks are the live session's that holds the lock, not a crash's.
            doc.show_pending_review()
            return None
        marks = dict(doc.pending_review)
        pending = doc.pending_edits()
        merge, damaged = None, None
        if pending is not None:
            if pending.bad_lines:  # the good edits are offered; the file as it was is kept for inspection
                damaged = doc.journal.path.with_name(f"{doc.journal.path.stem}.damaged-{int(time.time())}.jsonl")
                atomic_write_bytes(damaged, doc.journal.path.read_bytes())
            merge = doc.replayed(pending)
            if not len(merge.rows) and not merge.missing and not merge.cleared:
                doc.set_journal_aside()
                pending, merge = None, None
        if pending is None and not marks:
            return None
        return RestoreOffer(pending, merge, pending is not None and doc.base_changed(pending), damaged, marks)

    # --- predictions --------------------------------------------------------------------

    def load_predictions(self, path: str | Path) -> None:
        """Read and score a predictions CSV on the io thread; `predictionsLoaded` when shown."""
        doc = self.doc
        if doc is None:
            return
        path = Path(path).resolve()
        snapshot = doc.ann.subset(np.arange(len(doc)))  # the user may edit while it loads

        def job(ctx) -> tuple[Predictions, tuple[np.ndarray, np.ndarray]]:
            # A test split has no points yet: the predictions are shown to accept, with no NE.
            aligned = align_to_annotations(snapshot, load_annotations(path), str(path), scores_beside(path))
            return aligned, compute_errors(snapshot, aligned)

        def done(result) -> None:
            if self.doc is not doc:
                return
            aligned, (ne, errors) = result
            # Rows edited meanwhile were scored against old values: re-score just those.
            changed = np.flatnonzero((snapshot.coords != doc.ann.coords).any(axis=(1, 2))
                                     | (snapshot.visibility != doc.ann.visibility).any(axis=1))
            if len(changed):
                ne[changed], errors[changed] = compute_errors(doc.ann, aligned, changed)
            doc.set_predictions(aligned, (ne, errors))
            remember_dataset(doc.csv_path, aligned.source)
            self.predictionsLoaded.emit(str(path))

        self.io_thread.submit(f"load {path.name}", job, on_done=done,
                              on_error=lambda msg: self.failed.emit("Cannot use the predictions", f"{path}: {msg}"))


def existing_annotation_file(root: Path, predictions: Path | None = None) -> Path | None:
    """The annotation file a folder of images already has: `<root>/Annotations/<root name>.csv`,
    else the root's one annotation file of another name (`find_annotation_files`; a predictions
    file given is not one). None: none, or several (which one is not guessed)."""
    default = (root / "Annotations" / f"{root.name}.csv").resolve()
    if default.is_file():
        return default
    found = [p.resolve() for p in find_annotation_files(root) if p.resolve() != predictions and p.is_file()]
    return found[0] if len(found) == 1 else None


def workspace_of(csv_path: Path) -> Workspace:
    """The workspace of an annotation file's data set (a per-user one when the root is read-only)."""
    root = dataset_root_of(csv_path)
    return Workspace(root, state_dir_for(root))


def new_annotations(scanned: ScannedImages, csv_path: Path) -> tuple[Annotations, np.ndarray]:
    """Annotations with every point absent for the scanned images, in their order -> (annotations,
    a bool per row: the image has no category yet, its folder naming none; its code is the
    placeholder until the user chooses one)."""
    n = len(scanned)
    none = np.array([c is None for c in scanned.categories], bool)
    ann = Annotations.from_arrays(scanned.image_ids,
                                  [NO_CATEGORY_PLACEHOLDER if c is None else c for c in scanned.categories],
                                  np.full((n, NUM_KEYPOINTS, 2), -1, np.float32), np.full((n, NUM_KEYPOINTS), -1, np.int8))
    ann.path = csv_path
    return ann, none


def with_uncategorized(ann: Annotations, workspace: Workspace, csv_path: Path,
                       scanned: ScannedImages | None = None) -> tuple[Annotations, np.ndarray]:
    """An annotation file's rows, then the images without a category an earlier save kept in the
    workspace (with their points), then the `scanned` images the file does not have yet ->
    (annotations, a bool per row: no category yet). A damaged workspace file is listed as a
    problem and costs only its images."""
    ids, coords, visibility = [], np.zeros((0, NUM_KEYPOINTS, 2), np.float32), np.zeros((0, NUM_KEYPOINTS), np.int8)
    try:
        ids, coords, visibility = workspace.load_uncategorized(csv_path)
    except (OSError, ValueError) as e:
        ann.problems.append(RowProblem(0, "", "image_category", str(e), ""))
    have = set(map(str, ann.image_ids))
    kept = [i for i, image_id in enumerate(ids) if image_id not in have]
    have.update(ids[i] for i in kept)
    added = Annotations.from_arrays([ids[i] for i in kept], [NO_CATEGORY_PLACEHOLDER] * len(kept),
                                    coords[kept], visibility[kept])
    none = [True] * len(kept)
    if scanned is not None:
        new = [i for i, image_id in enumerate(scanned.image_ids) if image_id not in have]
        more, more_none = new_annotations(ScannedImages(scanned.root, [scanned.image_ids[i] for i in new],
                                                        [scanned.categories[i] for i in new]), csv_path)
        added = append_rows(added, more)
        none += more_none.tolist()
    if not len(added):
        return ann, np.zeros(len(ann), bool)
    if not ann.has_keypoints and (added.visibility >= 0).any():
        ann.add_keypoint_columns()
    return append_rows(ann, added), np.concatenate([np.zeros(len(ann), bool), np.asarray(none, bool)])


def scores_beside(predictions_csv: Path) -> tuple[list[str], np.ndarray] | None:
    """The confidences saved beside a predictions CSV; None when there are none or they cannot
    be read (that only costs "Check annotation" its confidence criterion)."""
    path = scores_path(predictions_csv)
    try:
        return load_scores(path) if path.is_file() else None
    except ValueError:
        return None


def remember_dataset(csv_path: Path, predictions: str | None) -> None:
    s = QSettings()
    s.setValue("last/annotations", str(csv_path))
    s.setValue("last/predictions", predictions if predictions and Path(predictions).is_file() else "")


def last_dataset() -> tuple[str | None, str | None]:
    """The annotation and predictions files open when the studio last closed."""
    s = QSettings()
    ann = s.value("last/annotations") or None
    pred = s.value("last/predictions") or None
    return (ann if ann and Path(ann).is_file() else None), (pred if pred and Path(pred).is_file() else None)
