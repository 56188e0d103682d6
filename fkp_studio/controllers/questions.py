"""What a flow may ask the user, as an interface: the window gives the controllers an object
that answers it (`fkp_studio.views.questions.Questions`); a test gives its own."""

from __future__ import annotations

from typing import Protocol


class UserQuestions(Protocol):
    """Answers are plain strings: "" for a cancelled file chooser."""

    def restore(self, question: str) -> str: ...            # "restore" | "discard"
    def unsaved(self, name: str) -> str: ...                # "save" | "discard" | "cancel"
    def changed_on_disk(self, name: str) -> str: ...        # "merge" | "save_as" | "cancel"
    def file_gone(self, path: str) -> str: ...              # "save_as" | "cancel"
    def save_path(self, start: str) -> str: ...
    def training_file(self, start: str) -> str: ...
    def annotations_file(self, start: str) -> str: ...
    def predictions_file(self, start: str) -> str: ...
    def model_file(self) -> str: ...
    def images_folder(self) -> str: ...
    def inform(self, title: str, text: str) -> None: ...
    def confirm(self, title: str, text: str) -> bool: ...    # True: go ahead
    def yes_no(self, title: str, text: str) -> bool: ...     # True: yes
