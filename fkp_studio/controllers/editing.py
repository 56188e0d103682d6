"""Editing the current image's points: the selected keypoint, and each edit the user makes on it
(drag, place, nudge, visibility, remove, swaps, accepting a predicted point, the category) pushed
as an undo command (`models/commands.py`) on the state's undo stack."""

from __future__ import annotations

from PySide6.QtCore import QObject

from engine.schema import CATEGORIES, category_keypoints
from fkp_studio.models import commands
from fkp_studio.models.keypoint_names import keypoint_label
from fkp_studio.models.state import StudioState


class EditingController(QObject):
    """What the edit keys and the canvas's mouse do to the state's current image."""

    def __init__(self, state: StudioState):
        super().__init__(state)
        self.state = state

    @property
    def selected_k(self) -> int | None:
        return self.state.selected_k

    def push(self, command) -> None:
        if command is not None:
            self.state.undo_stack.push(command)

    def select_keypoint(self, k: int) -> None:
        """Select a keypoint of the current image; an absent one waits for a click to place it."""
        s = self.state
        if not s.editable():
            return
        s.select(k)
        absent = s.doc.ann.visibility[s.current_row, k] < 0
        name = keypoint_label(int(k))
        s.show_message(f"Click on the image to place {name} (Esc cancels)" if absent
                       else f"{name} selected: drag it, nudge with the arrow keys, V for visibility")

    def go_to_point(self, row: int, k: int) -> None:
        """Show image `row` (clearing the filter if it hides it) with keypoint k selected."""
        self.state.go_to(row)
        if self.state.current_row == row:
            self.select_keypoint(k)

    def next_keypoint(self) -> None:
        s = self.state
        if not s.editable():
            return
        ks = category_keypoints(int(s.doc.categories[s.current_row]))
        i = ks.index(s.selected_k) + 1 if s.selected_k in ks else 0
        self.select_keypoint(ks[i % len(ks)])

    def cancel_mode(self) -> None:
        self.state.select(None)

    def move(self, k: int, x: float, y: float) -> None:
        s = self.state
        if s.editable():
            self.push(commands.move_point(s.doc, s.current_row, k, x, y))
        elif s.doc is not None and s.current_row is not None:
            s.redraw.emit()  # a dragged marker of a read-only file goes back

    def place(self, k: int, x: float, y: float) -> None:
        s = self.state
        if s.editable():
            self.push(commands.place_point(s.doc, s.current_row, k, x, y))
            self.select_keypoint(k)

    def nudge(self, dx: float, dy: float) -> None:
        s = self.state
        if s.editable() and s.selected_k is not None:
            self.push(commands.nudge_point(s.doc, s.current_row, s.selected_k, dx, dy))

    def cycle_visibility(self) -> None:
        s = self.state
        if s.editable() and s.selected_k is not None:
            self.push(commands.cycle_visibility(s.doc, s.current_row, s.selected_k))

    def remove_point(self) -> None:
        s = self.state
        if s.editable() and s.selected_k is not None:
            self.push(commands.remove_point(s.doc, s.current_row, s.selected_k))

    def swap_left_right(self) -> None:
        s = self.state
        if s.editable():
            self.push(commands.swap_left_right(s.doc, s.current_row))

    def swap_twin(self) -> None:
        s = self.state
        if s.editable() and s.selected_k is not None:
            self.push(commands.swap_twin(s.doc, s.current_row, s.selected_k))

    def accept_point(self, k: int) -> None:
        """The prediction of keypoint k becomes its annotation."""
        s = self.state
        if s.editable():
            self.push(commands.accept_prediction(s.doc, s.current_row, [k]))
            self.select_keypoint(k)

    def accept_point_at(self, k: int, x: float, y: float) -> None:
        """The prediction of keypoint k, dragged to (x, y), becomes its annotation there (one step)."""
        s = self.state
        if not s.editable():
            if s.doc is not None and s.current_row is not None:
                s.redraw.emit()  # the dragged cross of a read-only file goes back
            return
        self.push(commands.accept_prediction_at(s.doc, s.current_row, k, x, y))
        self.select_keypoint(k)

    # --- category -------------------------------------------------------------------------

    def set_category(self, category: int) -> None:
        """The current image becomes a `category` garment (points it has no place for are cleared;
        one undo step)."""
        s = self.state
        if s.editable():
            self.push(commands.change_category(s.doc, s.current_row, int(category)))

    def cycle_category(self) -> None:
        """The next category, in FashionAI's order."""
        s = self.state
        if s.editable():
            doc, row = s.doc, s.current_row
            # An image without a category starts at the first one.
            self.set_category(0 if doc.uncategorized[row] else (int(doc.categories[row]) + 1) % len(CATEGORIES))
