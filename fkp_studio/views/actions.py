"""The studio's actions as data: an id, the text, the shortcuts, the menu and the tip of each.

The window and the hard-example loop make one `QAction` per entry (`make_actions`) and connect
it to the slot its owner gives for that id; menus, the toolbar and tests find actions by id,
never by their text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QMenu, QWidget

from engine.schema import CATEGORIES

Key = str | QKeySequence.StandardKey


@dataclass(frozen=True)
class ActionSpec:
    id: str
    text: str
    shortcuts: tuple[Key, ...] = ()
    menu: str | None = None        # the menu's id ("file", "edit", "review", "view", "go", "model"); None: shortcut only
    tip: str = ""
    checkable: bool = False
    canvas_only: bool = False      # the shortcut works while the canvas has focus (arrow keys)
    separator_before: bool = False  # in its menu


_NUDGES = tuple(
    ActionSpec(f"edit.nudge_{key.lower()}{'_10' if big else ''}", f"Nudge {key.lower()}{' 10 px' if big else ''}",
               (f"Shift+{key}" if big else key,), canvas_only=True)
    for key in ("Left", "Right", "Up", "Down") for big in (False, True))

# `1`-`5` give the current image a category directly (FashionAI's order, as in the category box).
_CATEGORY_KEYS = tuple(
    ActionSpec(f"edit.category_{c}", f"Category: {name}", (str(c + 1),), "edit",
               f"The image is a {name} garment: points it has no place for are cleared, the image is predicted again",
               separator_before=c == 0)
    for c, name in enumerate(CATEGORIES))

ACTIONS: tuple[ActionSpec, ...] = (
    ActionSpec("file.open_annotations", "&Open annotations…", (QKeySequence.Open,), "file"),
    ActionSpec("file.new_from_images", "&New annotations from images…", (QKeySequence.New,), "file",
               "Start an annotation file for a folder of images (ROOT/Images/<category>/...); created on the first save"),
    ActionSpec("file.open_predictions", "Open &predictions…", ("Ctrl+Shift+O",), "file"),
    ActionSpec("file.predict_with_model", "Predict with &model…", (), "file"),
    ActionSpec("file.save", "&Save annotations", (QKeySequence.Save,), "file",
               "Write the annotation file (the first version is kept as <name>.orig)", separator_before=True),
    ActionSpec("file.quit", "&Quit", (QKeySequence.Quit,), "file", separator_before=True),
    ActionSpec("edit.next_keypoint", "&Next keypoint", ("N",), "edit", "Select the next keypoint; click to place it if absent"),
    ActionSpec("edit.cycle_visibility", "Cycle &visibility", ("V",), "edit", "Visible ↔ occluded"),
    ActionSpec("edit.remove_point", "&Remove point", (QKeySequence.Delete, "Backspace"), "edit", "Mark the point absent"),
    ActionSpec("edit.swap_left_right", "&Swap left/right", ("S",), "edit", "Swap every left keypoint with its right twin"),
    ActionSpec("edit.swap_twin", "Swap with &twin", ("Shift+S",), "edit",
               "Swap the selected keypoint with its left/right twin (fixes one inverted pair)"),
    ActionSpec("edit.cycle_category", "Change &category", ("C",), "edit",
               "The next garment category; points the new category has no place for are cleared (undo brings them "
               "back); the image is predicted again with it"),
    *_CATEGORY_KEYS,
    ActionSpec("edit.cancel", "Cancel", ("Escape",)),
    ActionSpec("review.accept", "&Accept prediction and next", ("Return", "Enter"), "review",
               "The prediction becomes the annotation of every point not placed yet; mark the image reviewed"),
    ActionSpec("review.skip", "&Skip image", ("K",), "review", "Mark the image skipped and go to the next unreviewed one"),
    ActionSpec("review.next_unreviewed", "&Next unreviewed image", ("Space",), "review",
               "The review queue: unreviewed images, least confident prediction first"),
    ActionSpec("review.add_to_training_file", "Add reviewed images to a &training file…", (), "review",
               "Append the reviewed images, as annotated now, to a FashionAI CSV such as train.csv",
               separator_before=True),
    *_NUDGES,
    ActionSpec("view.fit", "&Fit image", ("F",), "view"),
    ActionSpec("view.actual_size", "&Actual size (1:1)", ("0",), "view"),
    ActionSpec("view.zoom_in", "Zoom &in", ("+", "="), "view"),
    ActionSpec("view.zoom_out", "Zoom &out", ("-",), "view"),
    ActionSpec("view.show_predictions", "Show &predictions", ("P",), "view", checkable=True),
    ActionSpec("view.refine", "&Refine the rest after each correction", (), "view",
               "After you drag, place, swap or accept one point, the model predicts the image's other untouched "
               "points again from the points you set (Enter accepts them; undo takes both back)", checkable=True),
    ActionSpec("view.worst_first", "&Worst NE first", ("W",), "view", separator_before=True),
    ActionSpec("view.clear_filter", "&Clear filter", ("Ctrl+Shift+F",), "view"),
    ActionSpec("go.next_image", "&Next image", ("PgDown", "D"), "go"),
    ActionSpec("go.previous_image", "&Previous image", ("PgUp", "A"), "go"),
    ActionSpec("model.predict_all", "Predict &all", ("Ctrl+R",), "model", "Predict every image with the active model version"),
    ActionSpec("model.predict_selection", "Predict &selection", ("Ctrl+Shift+R",), "model",
               "Predict the images on show in the list"),
    ActionSpec("model.cancel_prediction", "&Cancel prediction", (), "model"),
    ActionSpec("model.evaluate", "&Evaluate active model", (), "model",
               "NE of the active version's saved predictions: overall, per category, hard set"),
    ActionSpec("model.add_to_hard_set", "Add image to &hard set", ("H",), "model", "Add the current image to the hard set",
               separator_before=True),
    ActionSpec("model.add_worst", "Add &worst N by NE", (), "model"),
    ActionSpec("model.retrain", "&Retrain on hard samples…", (), "model"),
    ActionSpec("help.shortcuts", "&Keyboard shortcuts", ("?",), "help", "Every key and what it does"),
)
SPECS: dict[str, ActionSpec] = {a.id: a for a in ACTIONS}
TOOLBAR: tuple[str, ...] = ("file.save", "edit.undo", "edit.redo", None, "view.fit", "view.actual_size",
                            "view.show_predictions", "edit.swap_left_right")


def make_actions(owner: QWidget, slots: Mapping[str, Callable], menus: Mapping[str, QMenu],
                 canvas: QWidget | None = None) -> dict[str, QAction]:
    """One QAction per id of `slots`, from its spec: shortcuts, tip, checkable, in its menu (in
    table order), connected to its slot; canvas-only actions belong to `canvas`."""
    made = {}
    for spec in ACTIONS:
        if spec.id not in slots:
            continue
        widget = canvas if spec.canvas_only and canvas is not None else owner
        action = QAction(spec.text, widget)
        action.setShortcuts([QKeySequence(k) for k in spec.shortcuts])
        if spec.canvas_only:
            # Arrow keys belong to the canvas only, so the list keeps its own arrow navigation.
            action.setShortcutContext(Qt.WidgetWithChildrenShortcut)
        widget.addAction(action)
        if spec.tip:
            action.setStatusTip(spec.tip)
        action.setCheckable(spec.checkable)
        action.triggered.connect(slots[spec.id])
        if spec.menu is not None and spec.menu in menus:
            if spec.separator_before:
                menus[spec.menu].addSeparator()
            menus[spec.menu].addAction(action)
        made[spec.id] = action
    return made
