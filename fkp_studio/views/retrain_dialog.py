"""The retrain dialog: settings, live loss curve, progress with the time left, cancel, and the
before/after NE side by side (held-out overall, per category, the images trained on; trained on
the reviewed images, the reviewed images held out of the retrain too, with a simulated reviewer's
seconds) with Accept / Discard. Worded for its source: the hard set, or every reviewed image.

Non-modal: the user keeps editing while it trains (the job trains on a snapshot). The dialog
runs nothing itself: it emits what the user asks for (`startRequested`, `cancelRequested`,
`acceptRequested`, `discardRequested`), which the window wires to the retrain controller, and
draws what the controller reports (`on_started`, `on_loss`, `on_progress`, `on_finished`,
`on_failed`) and the state's hard set. The loss
curve is drawn by matplotlib's Agg renderer on a helper thread and shown as an image: a
matplotlib redraw takes tens of milliseconds, which on the main thread would stall the
event loop every time the curve updates.
"""

from __future__ import annotations

import math
import threading
import time

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PySide6.QtCore import QObject, Qt, QTimer, Signal
from PySide6.QtGui import QImage, QPixmap
from PySide6.QtWidgets import (QComboBox, QDialog, QDoubleSpinBox, QFormLayout, QHBoxLayout, QHeaderView, QLabel,
                               QProgressBar, QPushButton, QSpinBox, QTableWidget, QTableWidgetItem, QVBoxLayout)

from engine.io.messages import shorten
from engine.training.retrain_config import RetrainConfig
from fkp_studio.models.state import StudioState

_BG, _FG, _LINE = "#2b2d31", "#d8d8d8", "#5fa8e8"


class LossPlotter(QObject):
    """Renders loss curves off the main thread; `rendered` carries the finished QImage.

    At most one render runs at a time; a request made meanwhile is kept (only the latest)
    and rendered next, so the picture always catches up with the data."""

    rendered = Signal(QImage)

    def __init__(self, width_px: int = 560, height_px: int = 200, parent: QObject | None = None):
        super().__init__(parent)
        self.figure = Figure(figsize=(width_px / 100, height_px / 100), dpi=100, facecolor=_BG)
        self.figure.subplots_adjust(left=0.11, right=0.98, top=0.95, bottom=0.2)
        self.agg = FigureCanvasAgg(self.figure)
        ax = self.ax = self.figure.add_subplot(111)
        ax.set_facecolor(_BG)
        ax.tick_params(colors=_FG, labelsize=8)
        for spine in ax.spines.values():
            spine.set_color(_FG)
        ax.set_xlabel("step", color=_FG, fontsize=8)
        ax.set_ylabel("loss", color=_FG, fontsize=8)
        (self.line,) = ax.plot([], [], color=_LINE, linewidth=1)
        self._lock = threading.Lock()
        self._pending: list[float] | None = None
        self._busy = False

    def request(self, losses: list[float]) -> None:
        with self._lock:
            self._pending = list(losses)
            if self._busy:
                return
            self._busy = True
        threading.Thread(target=self._work, name="fkp-loss-plot", daemon=True).start()

    def _work(self) -> None:
        while True:
            with self._lock:
                losses, self._pending = self._pending, None
                if losses is None:
                    self._busy = False
                    return
            image = self._render(losses)
            try:
                self.rendered.emit(image)
            except RuntimeError:  # the Qt side is gone (window closed): nothing to show it in
                return

    def _render(self, losses: list[float]) -> QImage:
        y = np.asarray(losses, dtype=np.float64)
        self.line.set_data(np.arange(1, len(y) + 1), y)
        if len(y):
            lo, hi = float(y.min()), float(y.max())
            pad = 0.05 * (hi - lo) if hi > lo else 0.5
            self.ax.set_xlim(0.5, max(len(y), 2) + 0.5)
            self.ax.set_ylim(lo - pad, hi + pad)
        self.agg.draw()
        width, height = self.agg.get_width_height()
        return QImage(bytes(self.agg.buffer_rgba()), width, height, QImage.Format_RGBA8888).copy()


class RetrainDialog(QDialog):
    """Settings -> Start -> live loss -> before/after -> Accept or Discard."""

    startRequested = Signal(object, str)   # RetrainConfig, training source ("hard" / "reviewed")
    cancelRequested = Signal()
    acceptRequested = Signal(str)          # the retrained version to make active
    discardRequested = Signal(str)         # the retrained version to remove

    def __init__(self, state: StudioState, parent=None):
        super().__init__(parent)
        self.state = state
        self.setWindowTitle("Retrain on hard samples")
        self.setModal(False)
        self.result: dict | None = None
        self.losses: list[float] = []
        self.running = False
        self._started_at = math.nan
        defaults = RetrainConfig()

        form = QFormLayout()
        self.steps = QSpinBox(self)
        self.steps.setRange(1, 100000)
        self.steps.setValue(defaults.steps)
        self.lr = QDoubleSpinBox(self)
        self.lr.setDecimals(5)
        self.lr.setRange(1e-5, 1e-1)
        self.lr.setSingleStep(1e-4)
        self.lr.setValue(defaults.lr)
        self.hard_share = QDoubleSpinBox(self)
        self.hard_share.setRange(0.05, 1.0)
        self.hard_share.setSingleStep(0.05)
        self.hard_share.setValue(defaults.hard_share)
        self.batch = QSpinBox(self)
        self.batch.setRange(0, 256)
        self.batch.setSpecialValueText("model's")
        self.batch.setValue(0)
        self.detector_steps = QSpinBox(self)
        self.detector_steps.setRange(0, 100000)
        self.detector_steps.setSpecialValueText("0 (keep the detector)")
        self.detector_steps.setValue(defaults.detector_steps)
        self.boxes = QComboBox(self)
        self.boxes.addItem("detector boxes (what predictions use)", "detector")
        self.boxes.addItem("annotated boxes (keypoint network alone)", "annotated")
        self.source = QComboBox(self)
        self.source.addItem("the hard set", "hard")
        self.source.addItem("all reviewed images", "reviewed")
        self.source.setToolTip("What the batches oversample: the hard set (fixing hard cases without moving the "
                               "rest), or every image reviewed in this file (learning their domain: a larger share "
                               "of each batch, more steps)")
        self.source.currentIndexChanged.connect(lambda _i: self._source_changed())
        form.addRow("Train on", self.source)
        form.addRow("Keypoint network steps", self.steps)
        form.addRow("Learning rate", self.lr)
        form.addRow("Hard share of each batch", self.hard_share)
        form.addRow("Batch size", self.batch)
        form.addRow("Detector steps", self.detector_steps)
        form.addRow("Measure NE with", self.boxes)
        self.info = QLabel("", self)
        self.info.setWordWrap(True)

        # No Qt parent: a render still running on its thread keeps the plotter alive by itself,
        # and the bound-method connection ends when the dialog is destroyed.
        self.plotter = LossPlotter()
        self.canvas = QLabel(self)
        self.canvas.setMinimumHeight(200)
        self.canvas.setAlignment(Qt.AlignCenter)
        self.plotter.rendered.connect(self._show_loss_image)
        self._redraw = QTimer(self, singleShot=True, interval=250)  # at most 4 redraws a second
        self._redraw.timeout.connect(self._draw_losses)
        self.progress = QProgressBar(self)
        self.progress.setTextVisible(True)
        self.status = QLabel("", self)

        self.table = QTableWidget(0, 4, self)
        self.table.setHorizontalHeaderLabels(["NE %", "before", "after", "change"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.Stretch)
        self.table.setEditTriggers(QTableWidget.NoEditTriggers)

        buttons = QHBoxLayout()
        self.start_button = QPushButton("Start", self)
        self.cancel_button = QPushButton("Cancel training", self)
        self.accept_button = QPushButton("Accept (make active)", self)
        self.discard_button = QPushButton("Discard", self)
        self.close_button = QPushButton("Close", self)
        for b in (self.start_button, self.cancel_button, self.accept_button, self.discard_button, self.close_button):
            buttons.addWidget(b)
        self.start_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.accept_button.clicked.connect(self.accept_result)
        self.discard_button.clicked.connect(self.discard_result)
        self.close_button.clicked.connect(self.close)

        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.info)
        layout.addWidget(self.canvas, 1)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addWidget(self.table, 1)
        layout.addLayout(buttons)
        self.resize(620, 720)
        state.hardSetChanged.connect(self._update_info)
        self._update_info()

    # --- states -------------------------------------------------------------------------

    def reset(self) -> None:
        """Back to the settings state (a result not yet accepted is discarded first)."""
        if self.result is not None:
            self.discard_result()
        self.result = None
        self.losses = []
        self._draw_losses()
        self.table.setRowCount(0)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.status.setText("")
        self._set_running(False, have_result=False)
        self.accept_button.setDefault(False)
        self.discard_button.setDefault(False)
        self._update_info()

    def _set_running(self, running: bool, have_result: bool) -> None:
        self.running = running
        for w in (self.steps, self.lr, self.hard_share, self.batch, self.detector_steps, self.boxes,
                  self.start_button):
            w.setEnabled(not running and not have_result)
        self.cancel_button.setEnabled(running)
        self.accept_button.setEnabled(have_result)
        self.discard_button.setEnabled(have_result)

    def _what(self) -> str:
        """What the retrain trains on, in words: "hard" or "reviewed"."""
        return "hard" if self.source.currentData() == "hard" else "reviewed"

    def _update_info(self) -> None:
        source = self.source.currentData()
        kept, left_out = self.state.split_trainable(source)
        ne = self.state.hard_ne() if source == "hard" else math.nan
        what = self._what()
        self.setWindowTitle("Retrain on hard samples" if source == "hard" else "Retrain on the reviewed images")
        how = ("" if source == "hard" else " Adapting to the reviewed images' domain: they fill a larger share "
               "of each batch, for more steps. 1 in 5 of them (at least 10 while 10 are left to train on) are held "
               "out and never trained on (none below 10): their NE before and after says whether the model learnt.")
        left = (f" {len(left_out)} {what} image(s) without an annotated point or a category are left out: "
                f"{shorten(', '.join(left_out), 160)}." if left_out else "")
        self.info.setText(f"Fine-tunes the keypoint network of the active model, then its detector, on {len(kept)} "
                          f"{what} images, replaying the other annotated images; a held-out subset that is never "
                          f"trained on measures the rest.{how}{left} "
                          + (f"Hard-set NE now: {100 * ne:.2f} %." if math.isfinite(ne) else ""))

    def mode(self) -> str:
        """The retrain's mode: "adapt" when it trains on the reviewed images, else "hard"."""
        return "adapt" if self.source.currentData() == "reviewed" else "hard"

    def _source_changed(self) -> None:
        # Each source has its own defaults (RetrainConfig.adapt() for reviewed images).
        defaults = RetrainConfig.for_mode(self.mode())
        self.steps.setValue(defaults.steps)
        self.lr.setValue(defaults.lr)
        self.hard_share.setValue(defaults.hard_share)
        self.detector_steps.setValue(defaults.detector_steps)
        self._update_info()

    def config(self) -> RetrainConfig:
        return RetrainConfig.for_mode(self.mode(), steps=self.steps.value(), lr=self.lr.value(),
                                      hard_share=self.hard_share.value(), batch_size=self.batch.value() or None,
                                      detector_steps=self.detector_steps.value(), boxes=self.boxes.currentData())

    # --- actions ------------------------------------------------------------------------

    def start(self) -> None:
        """Ask for a retrain with these settings (`on_started` follows when it runs)."""
        self.losses = []
        self.table.setRowCount(0)
        self.startRequested.emit(self.config(), self.source.currentData())

    def on_started(self) -> None:
        self._set_running(True, have_result=False)
        self.progress.setRange(0, self.steps.value() + self.detector_steps.value())
        self.progress.setValue(0)
        self._started_at = time.monotonic()
        self.status.setText("Measuring the current model…")

    def cancel(self) -> None:
        self.cancelRequested.emit()
        self._set_running(False, have_result=False)
        self.status.setText("Cancelled: the active model is unchanged.")

    def accept_result(self) -> None:
        if self.result is None:
            return
        version = self.result["version"]
        self.result = None
        self.acceptRequested.emit(version)
        self.status.setText(f"{version} is now the active model; predictions are being refreshed.")
        self._set_running(False, have_result=False)
        self.start_button.setEnabled(False)

    def discard_result(self) -> None:
        if self.result is None:
            return
        version = self.result["version"]
        self.result = None
        self.discardRequested.emit(version)
        self.status.setText(f"{version} discarded; the active model is unchanged.")
        self._set_running(False, have_result=False)

    def closeEvent(self, event) -> None:
        if self.running:
            self.cancelRequested.emit()
            self._set_running(False, have_result=False)
        super().closeEvent(event)

    # --- job feedback -------------------------------------------------------------------

    def on_loss(self, loss: float) -> None:
        if not self.running:  # a step reported just before a cancel took effect
            return
        self.losses.append(loss)
        if not self._redraw.isActive():
            self._redraw.start()

    def on_progress(self, done: float, total: float, message: str) -> None:
        """The job's progress over all its steps (keypoint network, then detector)."""
        if self.running:
            self.status.setText(message + self._time_left(done, total))
            self.progress.setRange(0, max(1, int(total)))
            self.progress.setValue(int(done))

    def _time_left(self, done: float, total: float) -> str:
        """", about N s left" from the pace so far, once a few steps ran (the first ones include
        measuring the current model)."""
        elapsed = time.monotonic() - self._started_at
        if done < 3 or not math.isfinite(elapsed) or total <= done:
            return ""
        left = elapsed / done * (total - done)
        return f", about {left:.0f} s left" if left < 120 else f", about {left / 60:.0f} min left"

    def on_finished(self, result: dict) -> None:
        if not self.running:  # finished in the instant the user cancelled: not wanted
            self.discardRequested.emit(result["version"])
            return
        self.result = result
        report = result["report"]
        self._fill_table(report["before"], report["after"], report.get("reviewed_holdout_images", 0))
        verdict = self._verdict(report)
        reviewed = report.get("reviewed_holdout_images", 0)
        note = report.get("reviewed_holdout_note", "")
        self.status.setText(f"{result['version']} trained from {result['base_version']} in {report['seconds']:.0f} s: "
                            f"{report['hard_images']} {self._what()} + {report['replay_images']} replay images, "
                            f"{report['holdout_images']} held out"
                            + (f", {reviewed} reviewed held out" if reviewed else "")
                            + (f" ({note})" if note else "") + ". "
                            + (verdict or "Accept to make it active, or discard it."))
        self._set_running(False, have_result=True)
        self.accept_button.setEnabled(verdict is None)
        (self.discard_button if verdict else self.accept_button).setDefault(True)
        self._draw_losses()

    def _verdict(self, report: dict) -> str | None:
        """Why the result must not be accepted, or None. Reviewed images held out of the retrain are
        the measure where there are any: a model no better on them learnt nothing that shows. Else,
        with nothing held out, the images trained on are the only measure, and a model worse on them
        shows nothing better."""
        reviewed = report.get("reviewed_holdout_images", 0)
        if reviewed:
            before, after = report["before"]["reviewed_holdout"], report["after"]["reviewed_holdout"]
            if not after < before:
                return (f"The {reviewed} reviewed images held out of the retrain got no better ({100 * before:.2f} -> "
                        f"{100 * after:.2f} %): nothing shows this model learnt them, so it can only be discarded.")
            return None
        before, after = report["before"]["hard"], report["after"]["hard"]
        if report["holdout_images"] == 0 and not after < before:
            return (f"Nothing was held out and the {self._what()} images got worse ({100 * before:.2f} -> "
                    f"{100 * after:.2f} %): nothing shows this model is better, so it can only be discarded.")
        return None

    def on_failed(self, message: str) -> None:
        self.status.setText(f"Retrain failed: {message}\nThe active model is unchanged.")
        self._set_running(False, have_result=False)

    def _fill_table(self, before: dict, after: dict, reviewed_held_out: int = 0) -> None:
        # (name, before, after, scale): NE rows in %, the reviewer's seconds as they are.
        rows = []
        if reviewed_held_out:  # the measure of an adapt retrain: first
            rows.append(("reviewed, held out", before["reviewed_holdout"], after["reviewed_holdout"], 100))
            rows.append(("reviewed, held out: review seconds", before.get("reviewed_holdout_seconds", math.nan),
                         after.get("reviewed_holdout_seconds", math.nan), 1))
        rows.append(("held-out, all", before["overall"], after["overall"], 100))
        for cat in sorted(set(before["per_category"]) | set(after["per_category"])):
            rows.append((f"held-out, {cat}", before["per_category"].get(cat, math.nan),
                         after["per_category"].get(cat, math.nan), 100))
        trained = ("hard set" if self._what() == "hard" else
                   "reviewed, trained on" if reviewed_held_out else "reviewed images")
        rows.append((trained, before["hard"], after["hard"], 100))
        self.table.setRowCount(len(rows))
        for r, (name, b, a, scale) in enumerate(rows):
            self.table.setItem(r, 0, QTableWidgetItem(name))
            change = 100 * (a / b - 1) if math.isfinite(a) and math.isfinite(b) and b > 0 else math.nan
            digits = 2 if scale == 100 else 1
            for c, text in ((1, f"{scale * b:.{digits}f}"), (2, f"{scale * a:.{digits}f}"), (3, f"{change:+.1f} %")):
                item = QTableWidgetItem(text if "nan" not in text else "–")
                item.setTextAlignment(Qt.AlignRight | Qt.AlignVCenter)
                if c >= 2 and math.isfinite(change):
                    item.setForeground(Qt.green if change < 0 else Qt.red)
                self.table.setItem(r, c, item)

    def table_values(self) -> dict[str, tuple[float, float]]:
        """What the before/after table shows, by row name (for tests and screenshots)."""
        out = {}
        for r in range(self.table.rowCount()):
            cells = [self.table.item(r, c).text() for c in range(3)]  # name, before, after
            out[cells[0]] = tuple(float(x) if x != "–" else math.nan for x in cells[1:])
        return out

    def _show_loss_image(self, image: QImage) -> None:
        self.canvas.setPixmap(QPixmap.fromImage(image))

    def _draw_losses(self) -> None:
        self.plotter.request(self.losses)
