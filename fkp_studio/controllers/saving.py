"""Saving the annotation file: a plain save; a file another program changed on disk is merged,
saved as a copy or left alone (the user's choice, never overwritten silently); unsaved edits
before closing are saved, set aside or kept (cancel)."""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QObject

from engine.io.messages import describe_error
from fkp_studio.controllers.questions import UserQuestions
from fkp_studio.models.state import StudioState


class SavingController(QObject):
    """Save, merge, save as, and the unsaved-edits question, for the state's document."""

    def __init__(self, state: StudioState, questions: UserQuestions):
        super().__init__(state)
        self.state = state
        self.questions = questions

    def save(self) -> bool:
        """Save the annotation file; on failure say why and keep every edit. A file another
        program changed since it was read is never overwritten silently: merge, save as, or cancel."""
        s, doc = self.state, self.state.doc
        if doc is None:
            return True
        if doc.read_only:
            s.show_error("Cannot save", doc.read_only)
            return False
        try:
            if doc.changed_on_disk():
                return self._save_changed_file()
            doc.save()
        except (OSError, ValueError) as e:
            s.show_error("Could not save", f"{doc.csv_path} was not saved ({describe_error(e)}).\n\n"
                         "Your edits are kept, in memory and in the edit journal.")
            return False
        self._saved(f"Saved {doc.csv_path}{doc.left_out_note()}")
        return True

    def _save_changed_file(self) -> bool:
        if not self.state.doc.csv_path.exists():
            return self._save_gone_file()
        answer = self.questions.changed_on_disk(self.state.doc.csv_path.name)
        if answer == "merge":
            return self._merge()
        if answer == "save_as":
            return self._save_as()
        return False

    def _save_gone_file(self) -> bool:
        """The file was deleted or moved away since it was read: nothing to merge onto, so say so
        and offer Save as (the edits stay in memory and the journal when cancelled)."""
        doc = self.state.doc
        if self.questions.file_gone(str(doc.csv_path)) == "save_as":
            return self._save_as()
        self.state.show_message(f"{doc.csv_path} is gone from disk: not saved (your edits are kept; Save as… writes "
                                "them elsewhere)", 15000)
        return False

    def _merge(self) -> bool:
        """Merge this session's edits onto the file as it is now, say what happened, reopen it."""
        doc = self.state.doc
        result, kept = doc.merge_and_save()
        text = result.describe() + "."
        if result.conflicts:
            text += "\n\n" + "\n".join(c.describe() for c in result.conflicts[:20])
        if kept:
            text += "\n\nKept beside the file: " + ", ".join(p.name for p in kept)
        self.questions.inform("Merged", f"Saved {doc.csv_path.name}: {text}")
        self._saved(f"Merged and saved {doc.csv_path}")
        self._reopen(doc.csv_path)
        return True

    def _save_as(self) -> bool:
        doc = self.state.doc
        path = self.questions.save_path(str(doc.csv_path.parent))
        if not path:
            return False
        doc.save_copy(path)
        doc.discard_pending()  # the edits live in the copy now; the journal is set aside, not lost
        self._saved(f"Saved a copy as {path}")
        self._reopen(Path(path))
        return True

    def _saved(self, message: str) -> None:
        self.state.undo_stack.setClean()
        self.state.show_message(message, 8000)

    def _reopen(self, csv_path: Path) -> None:
        """Open a file again (after a merge or save-as) with the predictions it was shown with."""
        p = self.state.doc.predictions
        source = p.source if p is not None and Path(p.source).is_file() else None
        self.state.session.open(csv_path, source)

    def maybe_save(self) -> bool:
        """True when it is fine to close the current data set (saved, set aside, or nothing to save)."""
        s = self.state
        if not s.has_unsaved_edits():
            return True
        answer = self.questions.unsaved(s.doc.csv_path.name)
        if answer == "save":
            return self.save()
        if answer == "discard":
            self._set_aside()
            return True
        return False

    def _set_aside(self) -> None:
        """Rename the journal aside (nothing is offered for restore), and forget the undo history."""
        s, doc = self.state, self.state.doc
        try:
            doc.discard_pending()
        except OSError as e:  # the file became a folder, a full disk: the journal stays as it is
            s.show_error("Could not set the edits aside",
                         f"{describe_error(e)}; the unsaved edits stay in the edit journal "
                         f"{doc.journal.path} and are offered when {doc.csv_path.name} is opened again")
        s.undo_stack.clear()
