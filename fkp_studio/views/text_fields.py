"""Keys typed in a text field stay in it: the studio's one-key shortcuts (Enter accepts an image,
K skips it, Ctrl+Z undoes an annotation edit) must never act from a search box or a number field."""

from __future__ import annotations

from PySide6.QtCore import QEvent, QObject, Qt
from PySide6.QtGui import QKeyEvent, QKeySequence
from PySide6.QtWidgets import QAbstractSpinBox, QLineEdit, QPlainTextEdit, QTextEdit, QWidget

TEXT_FIELDS = (QLineEdit, QAbstractSpinBox, QPlainTextEdit, QTextEdit)
# Edit keys a text field has its own meaning for (its undo is the text's, not the document's).
_TEXT_KEYS = (QKeySequence.Undo, QKeySequence.Redo, QKeySequence.Copy, QKeySequence.Cut, QKeySequence.Paste,
              QKeySequence.SelectAll, QKeySequence.Delete)


class _KeysStayInTextFields(QObject):
    """Accepts the shortcut override of a key a text field types or edits with, so that the key
    reaches the field instead of triggering a window shortcut."""

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.ShortcutOverride and isinstance(event, QKeyEvent) and _is_text_key(event):
            event.accept()  # accepted here: Qt delivers the key to the field as a key press
        return False


def _is_text_key(event: QKeyEvent) -> bool:
    """A key without Ctrl/Alt/Meta (letters, Enter, Space, Backspace, arrows) or a standard edit key."""
    if not event.modifiers() & (Qt.ControlModifier | Qt.AltModifier | Qt.MetaModifier):
        return True
    return any(event.matches(key) for key in _TEXT_KEYS)


def keep_keys_in_text_fields(root: QWidget) -> None:
    """Every text field under `root` (as built now) keeps the keys typed in it."""
    keeper = _KeysStayInTextFields(root)
    for field in root.findChildren(QWidget):
        if isinstance(field, TEXT_FIELDS):
            field.installEventFilter(keeper)
