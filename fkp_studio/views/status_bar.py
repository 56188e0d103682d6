"""The window's status bar: messages, the keypoint under the mouse, the review count, work in
progress (with a Cancel for a prediction run) and the device the model runs on."""

from __future__ import annotations

import numpy as np
from PySide6.QtWidgets import QLabel, QProgressBar, QPushButton, QStatusBar, QWidget

from engine.io.messages import shorten
from fkp_studio.models.document import AnnotationDocument


class StudioStatusBar(QStatusBar):
    """Permanent labels, a progress bar and the prediction's Cancel button."""

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.hover_label = QLabel("", self)
        self.review_label = QLabel("", self)
        self.review_label.setToolTip("Images reviewed (Enter accepts the prediction, Space goes to the next unreviewed)")
        self.busy_bar = QProgressBar(self)
        self.busy_bar.setMaximumWidth(220)
        self.busy_bar.setVisible(False)
        self.busy_bar.setTextVisible(True)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.setVisible(False)
        self.device_label = QLabel("Device: …", self)
        self.device_label.setToolTip("Where predict and retrain run (CUDA with mixed precision when present)")
        for widget in (self.hover_label, self.review_label, self.busy_bar, self.cancel_button, self.device_label):
            self.addPermanentWidget(widget)

    def show_text(self, text: str, ms: int) -> None:
        """A message, its first line and no longer than a line can be."""
        self.showMessage(shorten(text.splitlines()[0] if text else "", 300), ms)

    def set_busy(self, busy: bool) -> None:
        """Work runs on a job thread (a busy bar until it reports its progress), or none does."""
        self.busy_bar.setVisible(busy)
        if busy:
            self.busy_bar.setRange(0, 0)
            self.busy_bar.setFormat("working…")

    def show_progress(self, done: float, total: float, message: str) -> None:
        self.busy_bar.setVisible(True)
        if total:
            self.busy_bar.setRange(0, int(total))
            self.busy_bar.setValue(int(done))
            self.busy_bar.setFormat(f"{message} %v/%m")

    def show_review_count(self, doc: AnnotationDocument | None) -> None:
        done = int(np.count_nonzero(doc.review == 1)) if doc is not None else 0
        self.review_label.setText(f"{done:,} / {len(doc):,} reviewed" if doc is not None else "")

    def set_device(self, text: str) -> None:
        self.device_label.setText(f"Device: {text}")
