"""Opening a data set: the unsaved-edits question first, the session's work off the main thread,
then the opened document on the state, what opening found said in one message, the restore
question for an earlier session's unsaved edits, and predictions files shown."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject

from fkp_studio.controllers.questions import UserQuestions
from fkp_studio.controllers.saving import SavingController
from fkp_studio.models import commands
from fkp_studio.models.document import AnnotationDocument
from fkp_studio.models.state import StudioState


class OpeningController(QObject):
    """Open annotations, a folder of images, a predictions file; restore unsaved edits."""

    def __init__(self, state: StudioState, questions: UserQuestions, saving: SavingController):
        super().__init__(state)
        self.state = state
        self.questions = questions
        self.saving = saving
        self._journal_warned = False
        session = state.session
        session.opened.connect(self._opened)
        session.predictionsLoaded.connect(self._predictions_loaded)
        session.failed.connect(state.show_error)

    def open_dataset(self, annotations: str | Path, predictions: str | Path | None = None,
                     model: str | Path | None = None) -> bool:
        """Load an annotation file (off the main thread); False if the user cancelled."""
        if not self.saving.maybe_save():
            return False
        csv_path = self.state.session.open(annotations, predictions, model)
        self.state.show_message(f"Loading {csv_path.name}…", 0)
        return True

    def open_images(self, images_dir: str | Path, model: str | Path | None = None,
                    predictions: str | Path | None = None) -> bool:
        """New annotations for a folder of images (listed off the main thread), with the
        categories and predictions of `predictions` where given; False if cancelled."""
        if not self.saving.maybe_save():
            return False
        self.state.session.open_images(images_dir, model, predictions)
        self.state.show_message(f"Listing the images of {Path(images_dir).name}…", 0)
        return True

    def choose_annotations(self) -> None:
        doc = self.state.doc
        path = self.questions.annotations_file(str(doc.csv_path.parent) if doc else "")
        if path:
            self.open_dataset(path)

    def choose_images(self) -> None:
        folder = self.questions.images_folder()
        if folder:
            self.open_images(folder)

    def choose_predictions(self) -> None:
        doc = self.state.doc
        if doc is None:
            return
        path = self.questions.predictions_file(str(doc.csv_path.parent))
        if path:
            self.state.session.load_predictions(path)

    def _opened(self, doc: AnnotationDocument) -> None:
        """The session opened a document: the state and every view point at it, then the message
        and the restore question; `datasetOpened` last."""
        doc.journalFailed.connect(self._journal_failed)
        self.state.set_document(doc)
        self.state.show_message(opening_message(doc), 15000)
        self._offer_restore(doc)
        self.state.datasetOpened.emit()

    def _offer_restore(self, doc: AnnotationDocument) -> None:
        """Ask about an earlier session's unsaved edits and review marks, shown before either is
        applied: restored as one undo step, or discarded together."""
        offer = self.state.session.restore_offer()
        if offer is None:
            return
        answer = self.questions.restore(offer.question(doc.csv_path.name))
        parts = []
        if answer == "restore" and len(offer.rows):  # (none: every edit was cleared; set aside below)
            parts.append(commands.restore_command(doc, offer.rows, offer.coords, offer.visibility, offer.categories))
        if answer == "restore":
            parts += [commands.ReviewCommand(doc, row, state) for row, state in sorted(offer.marks.items())]
        if parts:
            doc.pending_review = {}
            self.state.undo_stack.push(commands.CompoundCommand("Restore unsaved edits", parts))
            restored = [f"{offer.merge.applied} unsaved edited points on {len(offer.rows)} images"] if len(offer.rows) else []
            restored += [offer.marks_text()] if offer.marks else []
            self.state.show_message(f"Restored {' and '.join(restored)}", 8000)
        else:
            kept = doc.discard_pending()
            self.state.show_message(f"Unsaved edits and review marks set aside in {kept}", 8000)

    def _predictions_loaded(self, path: str) -> None:
        self.state.show_message(f"Predictions: {Path(path).name}")
        self.state.predictionsShown.emit()

    def _journal_failed(self, message: str) -> None:
        self.state.show_message(message, 15000)
        if not self._journal_warned:
            self._journal_warned = True
            self.state.show_error("Edits are not being journaled", message)


def opening_message(doc: AnnotationDocument) -> str:
    """What opening found: images, problem rows, images without a category, the lock."""
    problems = doc.ann.problems
    msg = f"Opened {doc.csv_path.name}: {len(doc)} images"
    if problems:
        msg += f", {len(problems)} rows with problems (see the Problems panel)"
    if doc.uncategorized.any():
        msg += f", {int(doc.uncategorized.sum()):,} without a category (C or the category box sets it)"
    if doc.review_problems:
        msg += f"; review states: {len(doc.review_problems)} damaged lines skipped ({doc.review_problems[0]})"
    if doc.read_only:
        msg = f"{msg}; {doc.read_only}"
    elif doc.lock is not None and doc.lock.took_over is not None:
        msg += f"; took over the editing lock of {doc.lock.took_over.describe()}, which is gone"
    return msg
