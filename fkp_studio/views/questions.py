"""The questions the studio asks the user, as one small object the controllers are given.

Controllers never open a dialog themselves (they hold no widget): they ask `Questions`, whose
answers are plain strings and paths, so a test answers by replacing a method on it.
"""

from __future__ import annotations

from PySide6.QtWidgets import QFileDialog, QMessageBox, QWidget

CSV_FILTER = "FashionAI CSV (*.csv)"


class Questions:
    """Message boxes and file choosers parented to `parent` (the window)."""

    def __init__(self, parent: QWidget):
        self.parent = parent
        # How to answer "restore unsaved edits?": "ask", "restore" or "discard" (tests, scripts).
        self.restore_policy = "ask"

    def restore(self, question: str) -> str:
        """"restore" or "discard" the unsaved edits an earlier session left."""
        if self.restore_policy != "ask":
            return self.restore_policy
        box = QMessageBox(QMessageBox.Question, "Restore unsaved edits", question,
                          QMessageBox.Yes | QMessageBox.No, self.parent)
        box.button(QMessageBox.Yes).setText("Restore")
        box.button(QMessageBox.No).setText("Discard")
        box.setDefaultButton(QMessageBox.Yes)
        return "restore" if box.exec() == QMessageBox.Yes else "discard"

    def unsaved(self, name: str) -> str:
        """"save", "discard" or "cancel" for unsaved edits to the file `name`."""
        answer = QMessageBox.question(
            self.parent, "Unsaved edits", f"Save the edits to {name} before closing?",
            QMessageBox.Save | QMessageBox.Discard | QMessageBox.Cancel, QMessageBox.Save)
        return {QMessageBox.Save: "save", QMessageBox.Discard: "discard"}.get(answer, "cancel")

    def changed_on_disk(self, name: str) -> str:
        """"merge", "save_as" or "cancel" for a file another program changed since it was read."""
        box = QMessageBox(QMessageBox.Warning, "File changed on disk",
                          f"{name} was changed by another program since it was opened.\n\n"
                          "Merge: read it again and apply this session's edits on top (points changed on both "
                          "sides are listed, and the other version is kept beside the file).", parent=self.parent)
        merge = box.addButton("Merge", QMessageBox.AcceptRole)
        save_as = box.addButton("Save as…", QMessageBox.ActionRole)
        box.addButton(QMessageBox.Cancel)
        box.setDefaultButton(merge)
        box.exec()
        return {merge: "merge", save_as: "save_as"}.get(box.clickedButton(), "cancel")

    def file_gone(self, path: str) -> str:
        """"save_as" or "cancel" for an annotation file deleted or moved away since it was opened."""
        box = QMessageBox(QMessageBox.Warning, "File is gone",
                          f"{path} is gone from disk: it was deleted or moved since it was opened, so there is "
                          "nothing to merge onto.\n\nSave as: write the annotations with your edits to a file you "
                          "choose (the same name recreates it).", parent=self.parent)
        save_as = box.addButton("Save as…", QMessageBox.AcceptRole)
        box.addButton(QMessageBox.Cancel)
        box.setDefaultButton(save_as)
        box.exec()
        return "save_as" if box.clickedButton() is save_as else "cancel"

    def save_path(self, start: str) -> str:
        """A file name to save a copy to ("" when cancelled)."""
        path, _ = QFileDialog.getSaveFileName(self.parent, "Save annotations as", start, CSV_FILTER)
        return path

    def training_file(self, start: str) -> str:
        """The FashionAI CSV to append reviewed images to ("" when cancelled)."""
        path, _ = QFileDialog.getSaveFileName(self.parent, "Add reviewed images to", start, CSV_FILTER,
                                              options=QFileDialog.DontConfirmOverwrite)
        return path

    def annotations_file(self, start: str) -> str:
        path, _ = QFileDialog.getOpenFileName(self.parent, "Open annotations", start, f"{CSV_FILTER};;All files (*)")
        return path

    def predictions_file(self, start: str) -> str:
        path, _ = QFileDialog.getOpenFileName(self.parent, "Open predictions", start, f"{CSV_FILTER};;All files (*)")
        return path

    def model_file(self) -> str:
        path, _ = QFileDialog.getOpenFileName(self.parent, "Predict with model", "",
                                              "FKP model (*.fkpmodel);;All files (*)")
        return path

    def images_folder(self) -> str:
        return QFileDialog.getExistingDirectory(self.parent, "New annotations from images (a folder, e.g. ROOT/Images)")

    def inform(self, title: str, text: str) -> None:
        """A message the user acknowledges (the result of a merge)."""
        QMessageBox.information(self.parent, title, text)

    def confirm(self, title: str, text: str) -> bool:
        """Whether to go ahead with what `text` describes (OK / Cancel)."""
        answer = QMessageBox.question(self.parent, title, text, QMessageBox.Ok | QMessageBox.Cancel, QMessageBox.Ok)
        return answer == QMessageBox.Ok

    def yes_no(self, title: str, text: str) -> bool:
        """A question answered Yes (True) or No."""
        answer = QMessageBox.question(self.parent, title, text, QMessageBox.Yes | QMessageBox.No, QMessageBox.Yes)
        return answer == QMessageBox.Yes
