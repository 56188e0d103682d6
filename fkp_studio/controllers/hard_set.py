"""The hard set of the open data set: load it with the document, add the current image, the
worst N by NE or chosen rows, remove rows; an image the user corrects joins as "corrected" unless
the user removed it. The set itself is the state's (`StudioState.hard_set`, an
`engine.training.hard_set.HardSet` that saves itself in the workspace)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PySide6.QtCore import QObject

from engine.training.hard_set import HardSet
from fkp_studio.models.document import AnnotationDocument
from fkp_studio.models.state import StudioState


class HardSetController(QObject):
    """Changes to the state's hard set; each is saved and announced (`hardSetChanged`)."""

    def __init__(self, state: StudioState):
        super().__init__(state)
        self.state = state
        # After the opening flow: edits restored from an earlier session are not corrections made now.
        state.datasetOpened.connect(self._load)

    def _load(self) -> None:
        """A data set was opened: its hard set. Rows that cannot be read are skipped and named (the
        file is kept aside first); a file that cannot be read at all is an error, and the set is
        not saved over it."""
        doc = self.state.doc
        problems: list[str] = []
        try:
            hard_set = HardSet.load(doc.workspace, problems)
        except (OSError, ValueError) as e:
            hard_set = HardSet()  # no workspace: nothing is written over the file it could not read
            self.state.show_error("Cannot read the hard set", f"{e}\n\nChanges to the hard set are not saved "
                                  "this session.")
        if problems:
            self.state.show_error("Some hard-set rows could not be read", "\n".join(problems))
        doc.rowsChanged.connect(lambda rows, doc=doc: self._rows_changed(doc, rows))
        self.state.set_hard_set(hard_set)

    def add_rows(self, rows, reason: str = "manual") -> int:
        """Add images (data rows) to the hard set; returns how many joined."""
        doc = self.state.doc
        if doc is None:
            return 0
        return self._saving(lambda: self.state.hard_set.add(doc.ids(rows), reason)) or 0

    def remove_rows(self, rows) -> None:
        """Take images out of the hard set; an edited image then stays out (not re-added as corrected)."""
        doc = self.state.doc
        if doc is not None:
            self._saving(lambda: self.state.hard_set.remove(doc.ids(rows)))

    def remove_ids(self, image_ids: list[str]) -> None:
        """Take these images (by id, as the hard-set panel lists them) out of the hard set."""
        index = self.state.doc.ann.id_index() if self.state.doc is not None else {}
        self.remove_rows([index[i] for i in image_ids if i in index])

    def add_current(self) -> None:
        row = self.state.current_row
        if row is not None and self.add_rows([row]):
            self.state.show_message("Added to the hard set", 4000)

    def add_worst(self, n: int, per_category: bool = False) -> int:
        """Add the n images with the largest NE (n per category with `per_category`)."""
        s, doc = self.state, self.state.doc
        if doc is None or not np.isfinite(doc.ne).any():
            s.show_message("No NE yet: predict first")
            return 0
        worst = s.hard_set.worst(doc.ann.image_ids, doc.ne, n, doc.categories if per_category else None)
        added = self._saving(lambda: s.hard_set.add(worst, "worst-ne")) or 0
        s.show_message(f"Added {added} images to the hard set")
        return added

    def _rows_changed(self, doc: AnnotationDocument, rows) -> None:
        if doc is not self.state.doc:
            return
        # A correction of an annotation joins; the first points of a new image (placed or accepted
        # from the prediction) are annotating, not correcting.
        edited = [r for r in np.asarray(rows).tolist() if doc.edited[r] and doc.had_points[r]]
        if edited and not set(doc.ids(edited)) <= set(self.state.hard_set.entries):
            self._saving(lambda: self.state.hard_set.corrected(doc.ids(edited)))

    def _saving(self, change: Callable[[], int | None]) -> int | None:
        """Run a change of the hard set (which saves it); a failed save is reported, the set kept."""
        result = None
        try:
            result = change()
        except OSError as e:
            self.state.show_message(f"Cannot save the hard set: {e}", 15000)
        self.state.hardSetChanged.emit()
        return result
