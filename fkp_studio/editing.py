"""Editing the current image's points: the selected keypoint, and each edit the user makes on it
(drag, place, nudge, visibility, remove, swaps, accepting the prediction) pushed as an undo
command (`commands.py`); the review of images (accept, skip, the next unreviewed one)."""

from __future__ import annotations

from PySide6.QtCore import QObject

from engine.io.review import REVIEWED, SKIPPED
from engine.schema import CATEGORIES, category_keypoints
from fkp_studio import commands
from fkp_studio.palette import keypoint_label


class EditingController(QObject):
    """What the edit keys and the canvas's mouse do to the window's current image."""

    def __init__(self, window):
        super().__init__(window)
        self.window = window
        self.selected_k: int | None = None  # the selected keypoint of the current image

    def push(self, command) -> None:
        if command is not None:
            self.window.undo_stack.push(command)

    def editable(self) -> bool:
        w = self.window
        return w.doc is not None and w.current_row is not None and not w.doc.read_only

    def select_keypoint(self, k: int) -> None:
        """Select a keypoint of the current image; an absent one waits for a click to place it."""
        if not self.editable():
            return
        self.selected_k = int(k)
        absent = self.window.doc.ann.visibility[self.window.current_row, k] < 0
        self.window.canvas.set_place_mode(self.selected_k if absent else None)
        self.window.canvas.set_selected(self.selected_k)
        self.window.keypoint_table.select_keypoint(self.selected_k)
        # The arrow keys now nudge this point (they belong to the focused canvas, not the list).
        self.window.canvas.setFocus()
        name = keypoint_label(self.selected_k)
        self.window.statusBar().showMessage(f"Click on the image to place {name} (Esc cancels)" if absent
                                     else f"{name} selected: drag it, nudge with the arrow keys, V for visibility", 6000)

    def next_keypoint(self) -> None:
        if not self.editable():
            return
        ks = category_keypoints(int(self.window.doc.categories[self.window.current_row]))
        i = ks.index(self.selected_k) + 1 if self.selected_k in ks else 0
        self.select_keypoint(ks[i % len(ks)])

    def cancel_mode(self) -> None:
        self.window.canvas.set_place_mode(None)
        self.selected_k = None
        if self.editable():
            self.window.refresh_points()

    def move(self, k: int, x: float, y: float) -> None:
        if self.editable():
            self.push(commands.move_point(self.window.doc, self.window.current_row, k, x, y))
        elif self.window.doc is not None and self.window.current_row is not None:
            self.window.refresh_points()  # a dragged marker of a read-only file goes back

    def place(self, k: int, x: float, y: float) -> None:
        if self.editable():
            self.window.canvas.set_place_mode(None)
            self.push(commands.place_point(self.window.doc, self.window.current_row, k, x, y))
            self.select_keypoint(k)

    def nudge(self, dx: float, dy: float) -> None:
        if self.editable() and self.selected_k is not None:
            self.push(commands.nudge_point(self.window.doc, self.window.current_row, self.selected_k, dx, dy))

    def cycle_visibility(self) -> None:
        if self.editable() and self.selected_k is not None:
            self.push(commands.cycle_visibility(self.window.doc, self.window.current_row, self.selected_k))

    def remove_point(self) -> None:
        if self.editable() and self.selected_k is not None:
            self.push(commands.remove_point(self.window.doc, self.window.current_row, self.selected_k))

    def swap_left_right(self) -> None:
        if self.editable():
            self.push(commands.swap_left_right(self.window.doc, self.window.current_row))

    def swap_twin(self) -> None:
        if self.editable() and self.selected_k is not None:
            self.push(commands.swap_twin(self.window.doc, self.window.current_row, self.selected_k))

    # --- review: accept the prediction, skip, go to the next unreviewed image ------------

    def accept_image(self) -> None:
        """The prediction becomes the annotation of every point not placed yet, the image is
        marked reviewed (one undo step), and the next unreviewed image is shown."""
        if not self.editable():
            return
        w = self.window
        doc, row = w.doc, w.current_row
        stack = w.undo_stack
        stack.beginMacro("Accept image")
        self.push(commands.accept_prediction(doc, row))
        if doc.review_state(row) != REVIEWED:
            self.push(commands.ReviewCommand(doc, row, REVIEWED))
        stack.endMacro()
        self.next_unreviewed()

    def accept_point(self, k: int) -> None:
        """The prediction of keypoint k becomes its annotation."""
        if self.editable():
            self.push(commands.accept_prediction(self.window.doc, self.window.current_row, [k]))
            self.select_keypoint(k)

    def skip_image(self) -> None:
        """Mark the image skipped (it leaves the review queue) and show the next unreviewed one."""
        if self.editable():
            self.push(commands.ReviewCommand(self.window.doc, self.window.current_row, SKIPPED))
            self.next_unreviewed()

    def next_unreviewed(self) -> None:
        """Show the next image of the review queue (least confident prediction first): the one
        after the current image when it is unreviewed itself, else the queue's first."""
        w = self.window
        if w.doc is None:
            return
        queue = w.doc.review_queue().tolist()
        if w.current_row in queue:
            i = queue.index(w.current_row)
            queue = queue[i + 1:] + queue[:i]
        if queue:
            w.list_panel.go_to(queue[0])
        else:
            w.statusBar().showMessage("Every image is reviewed or skipped", 6000)

    # --- category -------------------------------------------------------------------------

    def set_category(self, category: int) -> None:
        """The current image becomes a `category` garment (points it has no place for are cleared;
        one undo step)."""
        if self.editable():
            doc, row = self.window.doc, self.window.current_row
            self.push(commands.change_category(doc, row, int(category)))

    def cycle_category(self) -> None:
        """The next category, in FashionAI's order."""
        if self.editable():
            doc, row = self.window.doc, self.window.current_row
            # An image without a category starts at the first one.
            self.set_category(0 if doc.uncategorized[row] else (int(doc.categories[row]) + 1) % len(CATEGORIES))
