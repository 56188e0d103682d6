"""Reviewing images: accept the prediction (and mark the image reviewed), skip, the next image of
the review queue (its order is the document's, `AnnotationDocument.review_queue`), and adding
the reviewed images to a training file."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject

from engine.io.annotations import AppendPlan, plan_append
from engine.io.messages import describe_error
from engine.io.review import REVIEWED, SKIPPED
from engine.jobs.runner import JobError
from fkp_studio.controllers.questions import UserQuestions
from fkp_studio.models import commands
from fkp_studio.models.state import StudioState, reviewed_rows


class ReviewController(QObject):
    """Accept / skip / next unreviewed on the state's current image; reviewed images to a file."""

    def __init__(self, state: StudioState, questions: UserQuestions):
        super().__init__(state)
        self.state = state
        self.questions = questions
        # Undo may revert an image that is no longer on show (Enter moved on): the rows an undo
        # changed are caught as the document reports them, then shown and named.
        self._changed_rows: list[int] = []
        self._undo_index = 0
        self._accept_after_refinement = False
        state.documentChanged.connect(lambda doc: doc.rowsChanged.connect(self._rows_changed))
        state.undo_stack.indexChanged.connect(self._undo_moved)
        state.refinementSettled.connect(self._refinement_settled)

    def accept_image(self) -> None:
        """The prediction becomes the annotation of every point not placed yet, the image is
        marked reviewed (one undo step), and the next unreviewed image is shown."""
        s = self.state
        if not s.editable():
            return
        if s.refining():  # the correction just made is refining the rest: accept what it gives
            self._accept_after_refinement = True
            return
        doc, row, stack = s.doc, s.current_row, s.undo_stack
        accept = commands.accept_prediction(doc, row)
        if accept is None and not self._confirm_no_points(row):
            return
        stack.beginMacro("Accept image")
        for command in (accept,
                        commands.ReviewCommand(doc, row, REVIEWED) if doc.review_state(row) != REVIEWED else None):
            if command is not None:
                stack.push(command)
        stack.endMacro()
        self.next_unreviewed()

    def _refinement_settled(self, ended: bool) -> None:
        """Enter came while refining: accept now, unless another action dropped the refinement."""
        if self._accept_after_refinement:
            self._accept_after_refinement = False
            if ended:
                self.accept_image()

    def _confirm_no_points(self, row: int) -> bool:
        """Whether an image with nothing to accept may be marked reviewed: without an annotated
        point it would go into training as an empty garment, so the user confirms it."""
        doc = self.state.doc
        if (doc.ann.visibility[row] >= 0).any():
            return True
        name = Path(str(doc.ann.image_ids[row])).name
        if self.questions.confirm("No annotated point",
                                  f"{name} has no annotated point (nothing predicted to accept). Mark it reviewed "
                                  "as an image without points? (K skips it instead)"):
            return True
        self.state.show_message(f"{name} not marked reviewed: it has no annotated point (K skips it)", 8000)
        return False

    def _rows_changed(self, rows) -> None:
        self._changed_rows.extend(int(r) for r in rows)

    def _undo_moved(self, index: int) -> None:
        """After an undo that changed only images other than the one on show: go to the image
        and say what was undone, so that nothing changes out of sight."""
        s, rows, undone = self.state, self._changed_rows, index < self._undo_index
        self._changed_rows, self._undo_index = [], index
        if not undone or s.doc is None or not rows or s.current_row in rows:
            return
        row = rows[0]
        name = Path(str(s.doc.ann.image_ids[row])).name
        s.go_to(row)
        s.show_message(f"Undid {s.undo_stack.text(index)!r} on {name}, which was not on show: showing it", 8000)

    def skip_image(self) -> None:
        """Mark the image skipped (it leaves the review queue) and show the next unreviewed one."""
        s = self.state
        if s.editable():
            s.undo_stack.push(commands.ReviewCommand(s.doc, s.current_row, SKIPPED))
            self.next_unreviewed()

    def next_unreviewed(self) -> None:
        """Show the next image of the review queue: the one after the current image when it is
        unreviewed itself, else the queue's first."""
        s = self.state
        if s.doc is None:
            return
        queue = s.doc.review_queue().tolist()
        if s.current_row in queue:
            i = queue.index(s.current_row)
            queue = queue[i + 1:] + queue[:i]
        if queue:
            s.go_to(queue[0])
        else:
            s.show_message("Every image is reviewed or skipped")

    def add_reviewed_to_training_file(self) -> None:
        """Append the reviewed images (their annotations as they are now) to a training CSV: the
        plan is made on the io thread, its summary asked about, then written on the io thread; its
        existing bytes stay as they are, ids already there are skipped or named as conflicts."""
        s, doc = self.state, self.state.doc
        if doc is None:
            return
        rows = reviewed_rows(doc)
        if not len(rows):
            s.show_message("No image is reviewed yet (Enter accepts and marks reviewed)")
            return
        target = self.questions.training_file(str(doc.csv_path.parent))
        if not target:
            return
        if Path(target).resolve() == doc.csv_path:
            s.show_error("Cannot add", "The reviewed images are in this file already: choose another one.")
            return
        snapshot = doc.ann.subset(rows)
        snapshot.add_keypoint_columns()
        images_root = doc.workspace.root
        s.io_thread.submit(
            f"plan adding to {Path(target).name}", lambda ctx: _user_facing(plan_append, target, snapshot, images_root),
            on_done=self._confirm_append,
            on_error=lambda msg: s.show_error("Cannot add the reviewed images", msg))

    def _confirm_append(self, plan: AppendPlan) -> None:
        """Say what adding does (adds, skips, conflicts) and write it, on the io thread, if the user agrees."""
        s = self.state
        if not len(plan.added):
            if plan.conflicts:
                more = f" and {len(plan.conflicts) - 5} more" if len(plan.conflicts) > 5 else ""
                s.show_error("Nothing to add", f"{plan.path}: nothing added: {len(plan.conflicts)} reviewed images are "
                             f"in the file already with other points (left as they are): "
                             f"{', '.join(plan.conflicts[:5])}{more}")
            else:
                s.show_message(f"{plan.path.name}: nothing to add, every reviewed image is there already "
                               f"({len(plan.skipped)} skipped)", 8000)
            return
        if not self.questions.confirm("Add reviewed images", plan.summary() + ". Add them?"):
            s.show_message(f"Nothing added to {plan.path.name}")
            return
        s.io_thread.submit(
            f"append to {plan.path.name}", lambda ctx: _user_facing(plan.write),
            on_done=lambda n: s.show_message(f"Added {n} reviewed images to {plan.path} "
                                             f"({len(plan.skipped)} skipped, {len(plan.conflicts)} conflicts)", 8000),
            on_error=lambda msg: s.show_error("Cannot add the reviewed images", msg))


def _user_facing(fn, *args):
    """`fn(*args)` with its refusals (ValueError, OSError: they name the file) as messages for the
    user, never a Python type and a source line."""
    try:
        return fn(*args)
    except (ValueError, OSError) as e:
        raise JobError(describe_error(e)) from e
