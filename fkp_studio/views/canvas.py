"""The canvas: one image with its annotated and predicted keypoints; zoom, pan, drag.

Markers ignore the view transform, so they keep their on-screen size at every zoom; lines
(skeleton, annotation-to-prediction) use cosmetic pens for the same reason. Picking is done
in screen space — the nearest annotated point within `GRAB_RADIUS` pixels of the cursor —
so points stay easy to grab however far one zooms out.

The canvas never changes the document: a finished drag, a placement or a click on a point
is reported by a signal, and the main window turns it into an undoable command.
"""

from __future__ import annotations

import html

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QPainter, QPainterPath, QPen, QPixmap
from PySide6.QtWidgets import (QGraphicsItem, QGraphicsPixmapItem, QGraphicsRectItem, QGraphicsScene,
                               QGraphicsSimpleTextItem, QGraphicsTextItem, QGraphicsView, QStyleOptionGraphicsItem, QWidget)

from engine.io.predictions import MISSING_SCORE
from engine.schema import SKELETONS
from fkp_studio.views.palette import (ANNOTATION_OUTLINE, ERROR_LINE, KEYPOINT_COLOURS, LOW_CONFIDENCE,
                                LOW_CONFIDENCE_RING, PREDICTION_OUTLINE, REFINED_TRAIL, SELECTION, SKELETON)
from fkp_studio.models.keypoint_names import keypoint_label

GRAB_RADIUS = 14.0  # screen pixels
DRAG_THRESHOLD = 4.0  # screen pixels a press on a prediction must travel to become a drag
MARKER_RADIUS = 6.0
ZOOM_STEP = 1.25
_VIS_TEXT = {1: "visible", 0: "occluded", -1: "absent"}


class MarkerItem(QGraphicsItem):
    """One keypoint marker, constant size on screen: an annotation disc or a prediction cross."""

    def __init__(self, k: int, kind: str, visibility: int, selected: bool = False, unsure: bool = False):
        super().__init__()
        self.k, self.kind, self.visibility, self.selected = k, kind, visibility, selected
        self.unsure = unsure  # a prediction of low confidence: ringed, so the eye goes to it first
        self.setFlag(QGraphicsItem.ItemIgnoresTransformations)
        self.setAcceptHoverEvents(True)
        self.setZValue(20 if kind == "annotation" else 15)
        what = "annotation" if kind == "annotation" else "prediction"
        if kind == "annotation":
            state = f", {_VIS_TEXT[visibility]}"
        else:
            state = (", predicted occluded" if visibility == 0 else "") + (", low confidence" if unsure else "")
        self.setToolTip(f"{keypoint_label(k)} — {what}{state}")

    def boundingRect(self) -> QRectF:
        r = GRAB_RADIUS
        return QRectF(-r, -r, 2 * r, 2 * r)

    def shape(self) -> QPainterPath:
        path = QPainterPath()
        path.addEllipse(QPointF(0, 0), GRAB_RADIUS * 0.8, GRAB_RADIUS * 0.8)
        return path

    def paint(self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None) -> None:
        painter.setRenderHint(QPainter.Antialiasing)
        colour = KEYPOINT_COLOURS[self.k]
        r = MARKER_RADIUS
        if self.selected:
            painter.setPen(QPen(SELECTION, 2.5))
            painter.setBrush(Qt.NoBrush)
            painter.drawEllipse(QPointF(0, 0), r + 5, r + 5)
        if self.kind == "prediction":
            if self.unsure:
                painter.setPen(QPen(LOW_CONFIDENCE_RING, 2.0, Qt.DotLine))
                painter.setBrush(Qt.NoBrush)
                painter.drawEllipse(QPointF(0, 0), r + 6, r + 6)
            # A cross: dark halo under a coloured stroke, readable on any background.
            for pen in (QPen(PREDICTION_OUTLINE.darker(400), 4.5), QPen(colour, 2.2)):
                pen.setCapStyle(Qt.RoundCap)
                painter.setPen(pen)
                painter.drawLine(QPointF(-r, -r), QPointF(r, r))
                painter.drawLine(QPointF(-r, r), QPointF(r, -r))
            if self.visibility == 0:  # predicted occluded: the dashed ring of an occluded annotation
                painter.setBrush(Qt.NoBrush)
                painter.setPen(QPen(colour, 1.8, Qt.DashLine))
                painter.drawEllipse(QPointF(0, 0), r + 2, r + 2)
        elif self.visibility == 1:
            painter.setPen(QPen(ANNOTATION_OUTLINE, 1.6))
            painter.setBrush(QBrush(colour))
            painter.drawEllipse(QPointF(0, 0), r, r)
        else:
            # Occluded: a hollow ring with a dashed halo — clearly "there but hidden".
            painter.setBrush(Qt.NoBrush)
            halo = QPen(ANNOTATION_OUTLINE, 4.5)
            painter.setPen(halo)
            painter.drawEllipse(QPointF(0, 0), r, r)
            ring = QPen(colour, 2.4, Qt.DashLine)
            painter.setPen(ring)
            painter.drawEllipse(QPointF(0, 0), r, r)


class KeypointCanvas(QGraphicsView):
    """Shows one image and its points; reports drags, placements and point clicks."""

    pointDragged = Signal(int, float, float)  # keypoint, x, y (image pixels) at the end of a drag
    pointClicked = Signal(int)
    placeRequested = Signal(int, float, float)  # keypoint to place, x, y
    hovered = Signal(str)
    predictionAccepted = Signal(int)  # keypoint whose predicted point was double-clicked
    predictionDragged = Signal(int, float, float)  # keypoint whose prediction was dragged (accepted there), x, y

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setRenderHints(QPainter.Antialiasing | QPainter.SmoothPixmapTransform)
        self.setTransformationAnchor(QGraphicsView.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.AnchorViewCenter)
        self.setDragMode(QGraphicsView.ScrollHandDrag)
        # Pan by dragging the background; scroll bars would only add clutter.
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setBackgroundBrush(QColor(38, 40, 44))
        self.setFocusPolicy(Qt.StrongFocus)
        self.setMouseTracking(True)
        self._image_item: QGraphicsPixmapItem | None = None
        self._placeholder: list[QGraphicsItem] = []
        self._overlay: list[QGraphicsItem] = []
        self._image_size: tuple[int, int] | None = None
        self.category = 0
        self.coords = np.full((24, 2), -1, np.float32)
        self.visibility = np.full(24, -1, np.int8)
        self.pred_coords: np.ndarray | None = None
        self.pred_visibility: np.ndarray | None = None
        self.pred_unsure = np.zeros(24, bool)
        self.refined_from: np.ndarray | None = None  # (24, 2) where the predictions were before a refinement
        self.selected: int | None = None
        self.place_mode: int | None = None
        self.show_predictions = True
        self._drag: int | None = None
        self._drag_kind = "annotation"  # or "prediction": a predicted point of an absent keypoint
        self._press_scene = QPointF()
        self._press_view = QPointF()
        self._drag_moved = False
        self._drag_offset = (0.0, 0.0)
        self._fit_pending = True

    # --- content ------------------------------------------------------------------------

    def image_size(self) -> tuple[int, int] | None:
        """(width, height) of the image shown, None while a placeholder is."""
        return self._image_size

    def set_image(self, pixmap: QPixmap | None, problem: str | None = None) -> None:
        """Show a decoded image, or a placeholder with the reason it could not be shown."""
        scene = self.scene()
        for item in self._placeholder:
            scene.removeItem(item)
        self._placeholder = []
        if self._image_item is not None:
            scene.removeItem(self._image_item)
            self._image_item = None
        if pixmap is not None:
            self._image_item = scene.addPixmap(pixmap)
            self._image_item.setZValue(0)
            self._image_item.setTransformationMode(Qt.SmoothTransformation)
            self._image_size = (pixmap.width(), pixmap.height())
        else:
            self._image_size = None
            self._add_placeholder(problem or "loading…")
        self._update_scene_rect()

    def _add_placeholder(self, text: str) -> None:
        rect = self._points_extent()
        box = QGraphicsRectItem(rect)
        box.setBrush(QColor(60, 62, 68))
        box.setPen(QPen(QColor(110, 110, 120), 0, Qt.DashLine))
        box.setZValue(0)
        label = QGraphicsTextItem()
        # An opaque panel: the reason stays readable where points and lines cross it
        # (markers are drawn above it, lines below).
        lines = "<br>".join(html.escape(line) for line in text.splitlines())
        label.setHtml(f"<table bgcolor='#1d1e22' cellpadding='6'><tr><td>{lines}</td></tr></table>")
        label.setDefaultTextColor(QColor(230, 230, 230))
        font = QFont()
        font.setPointSize(10)
        label.setFont(font)
        # Screen pixels (the label ignores zoom): wide enough for a path, wrapped beyond.
        label.setTextWidth(max(240, min(520, self.viewport().width() - 60)))
        label.setFlag(QGraphicsItem.ItemIgnoresTransformations)
        label.setPos(rect.topLeft() + QPointF(8, 8))
        label.setZValue(10)
        for item in (box, label):
            self.scene().addItem(item)
            self._placeholder.append(item)

    def _points_extent(self) -> QRectF:
        """Where the points are, padded: the area a placeholder covers when there is no image."""
        pts = [self.coords[self.visibility >= 0]]
        if self.pred_coords is not None and self.pred_visibility is not None:
            pts.append(self.pred_coords[self.pred_visibility >= 0])
        allp = np.concatenate(pts) if pts else np.zeros((0, 2))
        if len(allp) == 0:
            return QRectF(0, 0, 512, 512)
        x0, y0 = np.minimum(allp.min(axis=0) - 40, 0)
        x1, y1 = allp.max(axis=0) + 40
        return QRectF(float(x0), float(y0), float(max(x1, 512) - x0), float(max(y1, 512) - y0))

    def set_points(self, category: int, coords: np.ndarray, visibility: np.ndarray,
                   pred_coords: np.ndarray | None = None, pred_visibility: np.ndarray | None = None,
                   pred_scores: np.ndarray | None = None) -> None:
        """Show an image's annotated (and predicted) points; predictions scored below
        LOW_CONFIDENCE are ringed."""
        scores = np.full(24, MISSING_SCORE) if pred_scores is None else np.asarray(pred_scores, np.float64)
        self.pred_unsure = (scores >= 0) & (scores < LOW_CONFIDENCE)  # an unknown confidence is not low
        self.category = int(category)
        self.coords = np.array(coords, np.float32)
        self.visibility = np.array(visibility, np.int8)
        self.pred_coords = None if pred_coords is None else np.array(pred_coords, np.float32)
        self.pred_visibility = None if pred_visibility is None else np.array(pred_visibility, np.int8)
        self._drag = None
        self._redraw()

    def show_refinement(self, before: np.ndarray | None) -> None:
        """Mark the predicted points a refinement moved: a trail from where each was (None: no trail)."""
        self.refined_from = None if before is None else np.array(before, np.float32)
        self._redraw()

    def set_selected(self, k: int | None) -> None:
        self.selected = k
        self._redraw()

    def set_place_mode(self, k: int | None) -> None:
        """While set, a click on the image places keypoint k there."""
        self.place_mode = k
        self.viewport().setCursor(Qt.CrossCursor if k is not None else Qt.ArrowCursor)

    def set_show_predictions(self, show: bool) -> None:
        self.show_predictions = show
        self._redraw()

    def request_fit(self) -> None:
        """Fit the next image shown (a new image is shown whole)."""
        self._fit_pending = True

    def _update_scene_rect(self) -> None:
        rect = (QRectF(0, 0, *self._image_size) if self._image_size else self._points_extent())
        self.scene().setSceneRect(rect.adjusted(-200, -200, 200, 200))
        if self._fit_pending:
            self._fit(keep_pending=self._image_size is None)

    # --- drawing ------------------------------------------------------------------------

    def _redraw(self) -> None:
        scene = self.scene()
        for item in self._overlay:
            scene.removeItem(item)
        self._overlay = []
        ann = self.visibility >= 0
        pred_on = self.show_predictions and self.pred_coords is not None and self.pred_visibility is not None
        pred = (self.pred_visibility >= 0) if pred_on else np.zeros(24, bool)

        skeleton_pen = QPen(SKELETON, 2.0)
        skeleton_pen.setCosmetic(True)
        for a, b in SKELETONS[self.category]:
            if ann[a] and ann[b]:
                self._line(self.coords[a], self.coords[b], skeleton_pen, 5)
        if pred_on:
            pred_skeleton = QPen(QColor(255, 255, 255, 70), 1.2, Qt.DotLine)
            pred_skeleton.setCosmetic(True)
            for a, b in SKELETONS[self.category]:
                if pred[a] and pred[b]:
                    self._line(self.pred_coords[a], self.pred_coords[b], pred_skeleton, 4)
            error_pen = QPen(ERROR_LINE, 1.6, Qt.DashLine)
            error_pen.setCosmetic(True)
            for k in np.flatnonzero(ann & pred):
                self._line(self.coords[k], self.pred_coords[k], error_pen, 6)
            if self.refined_from is not None:
                trail = QPen(REFINED_TRAIL, 1.4, Qt.DashDotLine)
                trail.setCosmetic(True)
                moved = pred & ~ann & (np.hypot(*(self.pred_coords - self.refined_from).T) > 1.0)
                for k in np.flatnonzero(moved):
                    self._line(self.refined_from[k], self.pred_coords[k], trail, 6)
            for k in np.flatnonzero(pred):
                self._marker(int(k), "prediction", int(self.pred_visibility[k]), self.pred_coords[k],
                             unsure=bool(self.pred_unsure[k]))
        for k in np.flatnonzero(ann):
            self._marker(int(k), "annotation", int(self.visibility[k]), self.coords[k])
        if self.selected is not None:
            self._label_selected()

    def _line(self, p, q, pen: QPen, z: float) -> None:
        item = self.scene().addLine(float(p[0]), float(p[1]), float(q[0]), float(q[1]), pen)
        item.setZValue(z)
        self._overlay.append(item)

    def _marker(self, k: int, kind: str, visibility: int, xy, unsure: bool = False) -> None:
        item = MarkerItem(k, kind, visibility, selected=(kind == "annotation" and k == self.selected), unsure=unsure)
        item.setPos(float(xy[0]), float(xy[1]))
        self.scene().addItem(item)
        self._overlay.append(item)

    def _label_selected(self) -> None:
        k = self.selected
        if self.visibility[k] >= 0:
            xy = self.coords[k]
        elif self.pred_coords is not None and self.pred_visibility is not None and self.pred_visibility[k] >= 0:
            xy = self.pred_coords[k]
        else:
            return
        label = QGraphicsSimpleTextItem(keypoint_label(k))
        font = QFont()
        font.setPointSize(10)
        font.setBold(True)
        label.setFont(font)
        label.setBrush(SELECTION)
        label.setPen(QPen(QColor(0, 0, 0, 200), 0.6))
        label.setFlag(QGraphicsItem.ItemIgnoresTransformations)
        label.setPos(float(xy[0]), float(xy[1]))
        label.setTransform(label.transform().translate(12, -22))
        label.setZValue(30)
        self.scene().addItem(label)
        self._overlay.append(label)

    # --- zoom ---------------------------------------------------------------------------

    def zoom_fit(self) -> None:
        """Show the whole image (or, while there is none, the points)."""
        self._fit(keep_pending=False)

    def _fit(self, keep_pending: bool) -> None:
        # While a placeholder is shown the fit stays pending: the image's pixels, when they
        # arrive, are fitted again (its first view is never the placeholder's zoom).
        self._fit_pending = keep_pending
        rect = QRectF(0, 0, *self._image_size) if self._image_size else self._points_extent()
        self.fitInView(rect, Qt.KeepAspectRatio)

    def zoom_actual(self) -> None:
        """1:1 — one image pixel per screen pixel, centred where the view is."""
        self._fit_pending = False  # the user chose a zoom: the arriving pixels keep it
        centre = self.mapToScene(self.viewport().rect().center())
        self.resetTransform()
        self.centerOn(centre)

    def zoom_by(self, factor: float, anchor=QGraphicsView.AnchorViewCenter) -> None:
        """Zoom about the view centre (keys, menu) or the cursor (wheel)."""
        scale = self.transform().m11() * factor
        self._fit_pending = False  # the user chose a zoom: the arriving pixels keep it
        if 0.02 <= scale <= 64:
            self.setTransformationAnchor(anchor)
            self.scale(factor, factor)

    def wheelEvent(self, event) -> None:
        steps = event.angleDelta().y() / 120.0
        if steps:
            self.zoom_by(ZOOM_STEP ** steps, QGraphicsView.AnchorUnderMouse)
        event.accept()

    def resizeEvent(self, event) -> None:
        super().resizeEvent(event)
        if self._fit_pending:
            self._fit(keep_pending=self._image_size is None)

    # --- mouse --------------------------------------------------------------------------

    def pick(self, view_pos: QPointF, kind: str = "annotation") -> int | None:
        """The keypoint whose marker is nearest `view_pos` within GRAB_RADIUS screen pixels."""
        if kind == "annotation":
            coords, present = self.coords, self.visibility >= 0
        elif self.pred_coords is not None and self.pred_visibility is not None and self.show_predictions:
            coords, present = self.pred_coords, self.pred_visibility >= 0
        else:
            return None
        ks = np.flatnonzero(present)
        if not len(ks):
            return None
        t = self.viewportTransform()
        xs = coords[ks, 0] * t.m11() + coords[ks, 1] * t.m21() + t.m31()
        ys = coords[ks, 0] * t.m12() + coords[ks, 1] * t.m22() + t.m32()
        d = np.hypot(xs - view_pos.x(), ys - view_pos.y())
        i = int(np.argmin(d))
        return int(ks[i]) if d[i] <= GRAB_RADIUS else None

    def mousePressEvent(self, event) -> None:
        if event.button() == Qt.LeftButton:
            pos = event.position()
            scene = self.mapToScene(pos.toPoint())
            k = self._absent_prediction_at(pos)
            if k is not None and self.place_mode in (None, k):
                # A predicted point whose annotation is absent: a click selects it, a double click
                # accepts it, a drag accepts it where it is dropped (one gesture, one undo step).
                self._start_drag(k, "prediction", self.pred_coords[k], scene)
                event.accept()
                return
            if self.place_mode is not None:
                self.placeRequested.emit(self.place_mode, scene.x(), scene.y())
                event.accept()
                return
            k = self.pick(pos)
            if k is not None:
                self._start_drag(k, "annotation", self.coords[k], scene)
                self.pointClicked.emit(k)
                event.accept()
                return
            k = self.pick(pos, "prediction")
            if k is not None:
                self.pointClicked.emit(k)
                event.accept()
                return
        super().mousePressEvent(event)

    def _absent_prediction_at(self, view_pos: QPointF) -> int | None:
        """The keypoint whose prediction is under the cursor while its annotation is absent."""
        if self.pick(view_pos) is not None:
            return None  # an annotated point under the cursor wins
        k = self.pick(view_pos, "prediction")
        return k if k is not None and self.visibility[k] < 0 else None

    def _start_drag(self, k: int, kind: str, xy, scene: QPointF) -> None:
        """Start dragging keypoint k's annotation or prediction."""
        self._drag, self._drag_kind, self._drag_moved = k, kind, False
        self._press_scene = scene
        self._press_view = self.mapFromScene(scene)
        # Keep the grab offset: the point must not jump to the cursor.
        self._drag_offset = (float(xy[0]) - scene.x(), float(xy[1]) - scene.y())

    def mouseDoubleClickEvent(self, event) -> None:
        if event.button() == Qt.LeftButton:
            k = self.pick(event.position(), "prediction")
            # The first click of a double click selected an absent keypoint (place mode): the
            # double click on its cross still accepts the prediction.
            if k is not None and self.place_mode in (None, k):
                self._drag = None
                self.predictionAccepted.emit(k)
                event.accept()
                return
        super().mouseDoubleClickEvent(event)

    def mouseMoveEvent(self, event) -> None:
        if self._drag is not None:
            scene = self.mapToScene(event.position().toPoint())
            dx, dy = self._drag_offset
            k = self._drag
            if (self._drag_kind == "prediction" and not self._drag_moved
                    and (event.position() - self._press_view).manhattanLength() < DRAG_THRESHOLD):
                event.accept()  # a hand's tremor in a click is not a drag of the prediction
                return
            if self._drag_kind == "prediction":
                # Drawn as the annotation it becomes (this copy only; the document changes on release).
                self.visibility[k] = max(int(self.pred_visibility[k]), 0) if self.pred_visibility is not None else 1
            self.coords[k] = (scene.x() + dx, scene.y() + dy)
            self._drag_moved = True
            self._redraw()
            event.accept()
            return
        k = self.pick(event.position())
        self.hovered.emit(keypoint_label(k) if k is not None else "")
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event) -> None:
        if self._drag is not None and event.button() == Qt.LeftButton:
            k, moved, kind = self._drag, self._drag_moved, self._drag_kind
            self._drag = None
            if moved:
                x, y = self.coords[k]
                (self.predictionDragged if kind == "prediction" else self.pointDragged).emit(k, float(x), float(y))
            elif kind == "prediction" and self.place_mode == k:
                self.placeRequested.emit(k, self._press_scene.x(), self._press_scene.y())
            elif kind == "prediction":
                self.pointClicked.emit(k)
            event.accept()
            return
        super().mouseReleaseEvent(event)
