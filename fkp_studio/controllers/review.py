"""Reviewing images: accept the prediction (and mark the image reviewed), skip, the next image of
the review queue (its order is the document's, `AnnotationDocument.review_queue`), and adding
the reviewed images to a training file."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject

from engine.io.annotations import append_annotations
from engine.io.review import REVIEWED, SKIPPED
from fkp_studio.controllers.questions import UserQuestions
from fkp_studio.models import commands
from fkp_studio.models.state import StudioState, reviewed_rows


class ReviewController(QObject):
    """Accept / skip / next unreviewed on the state's current image; reviewed images to a file."""

    def __init__(self, state: StudioState, questions: UserQuestions):
        super().__init__(state)
        self.state = state
        self.questions = questions

    def accept_image(self) -> None:
        """The prediction becomes the annotation of every point not placed yet, the image is
        marked reviewed (one undo step), and the next unreviewed image is shown."""
        s = self.state
        if not s.editable():
            return
        doc, row, stack = s.doc, s.current_row, s.undo_stack
        stack.beginMacro("Accept image")
        for command in (commands.accept_prediction(doc, row),
                        commands.ReviewCommand(doc, row, REVIEWED) if doc.review_state(row) != REVIEWED else None):
            if command is not None:
                stack.push(command)
        stack.endMacro()
        self.next_unreviewed()

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
        """Append the reviewed images (their annotations as they are now) to a training CSV, off
        the main thread; its existing bytes stay as they are, ids already there are refused."""
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
        s.io_thread.submit(
            f"append to {Path(target).name}", lambda ctx: append_annotations(target, snapshot),
            on_done=lambda n: s.show_message(f"Added {n} reviewed images to {target}", 8000),
            on_error=lambda msg: s.show_error("Cannot add the reviewed images", msg))
