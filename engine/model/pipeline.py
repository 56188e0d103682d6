"""Two-stage inference: image -> detector -> garment box -> square crop -> keypoint net ->
Hough decoding -> image coordinates -> one FashionAI row per image.

The detector's box is the keypoint box grown by the detector's margin (see
`engine.model.detector`); the pipeline crops it as the keypoint net was trained (square, the
preset's crop margin), then `refine_steps` times crops again around the predicted keypoints. With `num_crops > 1` the
keypoint net also sees the other top detections of the same garment (and, when there are too
few, slightly zoomed crops of the best box); with `flip_tta` each crop is also predicted
mirrored, with left/right twins swapped back. All views are averaged in image coordinates,
weighted by the keypoint confidences. With `box_search`, a garment whose crop the keypoint net
is unsure of is also cropped at the detector's other distinct boxes (a distractor can outrank a
faint garment); a clearly more convincing crop takes the lead. With `rotation_search`, an
unsure upright crop is also tried turned in 45-degree steps; a clearly better turn makes the
refinement crops rotate with the garment (upright along its top-to-bottom axis).

Besides the coordinates every prediction carries a confidence per keypoint in [0, 1] (the
share of Hough votes near the chosen peak), saved beside a predictions CSV by `engine.io.scores.save_scores`.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import Future, ThreadPoolExecutor
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torchvision.ops import box_iou, nms

from engine.io.annotations import Annotations
from engine.io.predictions import Predictions
from engine.model.crops import apply_affine, crop_affine, invert_affine, normalize_image, square_around, warp_crop
from engine.model.detector import Detections, detections_to_host, fuse_boxes, scale_for
from engine.model.device import (autocast_for, out_of_memory_kind, pick_device, prepare_input, prepare_model,
                                 release_gpu_cache)
from engine.model.device_crops import cut_crops, normalize_batch
from engine.model.package import TwoStageModel
from engine.model.visibility import occlusion_probability, predicted_visibility
from engine.schema import CATEGORY_MASK, FLIP_PERMUTATION, NUM_KEYPOINTS, UPRIGHT_BOTTOM, UPRIGHT_TOP
from engine.model.targets import decode

log = logging.getLogger(__name__)

# Extra zooms of the best box used when the detector offers fewer distinct crops than asked.
_ZOOMS = (1.08, 0.93, 1.16, 0.86)

# Box and rotation search: crops whose mean keypoint confidence is below the gate are also tried
# at up to BOX_CANDIDATES other distinct detector boxes, then at the ROTATION_GRID angles; an
# alternative must beat the crop it would replace by the margin.
UNSURE_GATE = 0.8
SEARCH_MARGIN = 0.2
BOX_CANDIDATES = 3
ROTATION_GRID = (45, 90, 135, 180, 225, 270, 315)

# Threads decoding the next batch's images while one is predicted.
DECODE_THREADS = 4


class Pipeline:
    """Inference with a loaded `TwoStageModel`; test-time options default to the model's preset."""

    # Cut the keypoint crops with grid_sample on the device (None: on accelerators, not on the CPU).
    grid_crops: bool | None = None

    def __init__(
        self,
        model: TwoStageModel,
        device: torch.device | str | None = None,
        flip_tta: bool | None = None,
        num_crops: int | None = None,
        batch_size: int = 8,
        refine_steps: int = 1,
        rotation_search: bool | None = None,
        box_search: bool | None = None,
        visibility: bool = True,
    ):
        """`visibility`: predict which points are occluded with the model's visibility stage, when
        it has one (without, every predicted point is visible)."""
        self.model = model
        self.preset = model.preset
        self.device = device if isinstance(device, torch.device) else pick_device(device)
        self.flip_tta = self.preset.flip_tta if flip_tta is None else flip_tta
        self.num_crops = max(1, self.preset.num_crops if num_crops is None else num_crops)
        self.batch_size = max(1, batch_size)
        self.refine_steps = max(0, refine_steps)
        self.rotation_search = self.preset.rotation_search if rotation_search is None else rotation_search
        self.box_search = self.preset.box_search if box_search is None else box_search
        self.detector = model.detector.to(self.device).eval()
        self.keypoint_net = model.keypoint_net.to(self.device).eval()
        if self.device.type == "cuda":
            # channels-last, like the crops it is given; fixed crop shapes: cuDNN picks its fastest kernels.
            self.keypoint_net = prepare_model(self.keypoint_net, self.device)
        stage = model.visibility if visibility else None
        self.visibility = None if stage is None else stage.to(self.device).eval()

    # -- one batch of decoded images --------------------------------------------------------

    @torch.no_grad()
    def predict_images(
        self, images: Sequence[np.ndarray], categories: Sequence[int | None] | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """RGB images -> (coords (n, 24, 2), scores (n, 24), categories (n,), boxes (n, 4)).

        `categories[i]` None (or no `categories`) lets the detector decide the category.
        Scores and coordinates cover all 24 keypoints; callers mask by category.
        """
        n = len(images)
        if n == 0:
            return np.zeros((0, NUM_KEYPOINTS, 2), np.float32), np.zeros((0, NUM_KEYPOINTS), np.float32), np.zeros(0, np.int64), np.zeros((0, 4), np.float32)
        dets = self._detect(images)
        images = DeviceImages(images, self.device, self.grid_crops)  # on a GPU: uploaded once, all crops cut there
        cats = np.array([
            (c if c is not None else (int(d.categories[0]) if len(d.scores) else 0))
            for c, d in zip(categories if categories is not None else [None] * n, dets)
        ], dtype=np.int64)
        boxes, weights = self._crop_boxes(images, dets)                 # (n, c, 4), (n, c)
        squares = self._squares(boxes)
        angles = np.zeros(n, np.float32)
        mean, score = self._views(images, squares, weights, angles)
        mask = CATEGORY_MASK[cats]
        if self.box_search:
            boxes, weights, mean, score = self._search_boxes(images, dets, cats, boxes, weights, mean, score)
            squares = self._squares(boxes)
        if self.rotation_search:
            angles, mean, score = self._search_rotation(images, squares[:, :1], cats, mean, score)
        # Refinement: crop again around the predicted keypoints, the box the keypoint net was
        # trained on (a detected box is looser or tighter; one pass cut NE from 10.5 % to 8.4 %
        # for a half-trained lite net; for the demo model, with flip TTA, 7.15 % to 7.04 %).
        for _ in range(self.refine_steps):
            squares = keypoint_squares(mean, mask, angles, self.preset.crop_margin)[:, None]
            mean, score = self._views(images, squares, np.ones((n, 1), np.float32), angles)
        return mean.astype(np.float32), score.astype(np.float32), cats, boxes[:, 0]

    def _visibility(self, images: Sequence[np.ndarray], coords: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """FashionAI visibility (n, 24) of the predicted points: from the visibility stage, or all
        visible without one."""
        if self.visibility is None:
            return np.where(mask, 1, -1).astype(np.int8)
        prob = occlusion_probability(self.visibility, images, coords, mask, self.device)
        return predicted_visibility(prob, mask, self.visibility.config.threshold)

    def _squares(self, boxes: np.ndarray) -> np.ndarray:
        """Square crops (cx, cy, side) around boxes (..., 4), grown by the preset's crop margin -> (..., 3)."""
        squares = [square_around(b, self.preset.crop_margin) for b in boxes.reshape(-1, 4)]
        return np.asarray(squares, np.float32).reshape(*boxes.shape[:-1], 3)

    def _search_boxes(self, images: DeviceImages, dets: list[Detections], cats: np.ndarray,
                      boxes: np.ndarray, weights: np.ndarray, mean: np.ndarray,
                      score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Crops the keypoint net is unsure of are also tried at the detector's other distinct
        boxes; where one is clearly more convincing (mean confidence higher by SEARCH_MARGIN) it
        leads the image's crops instead. Returns the crop boxes, their weights and the predictions."""
        mask = CATEGORY_MASK[cats]
        best = _masked_mean(score, mask)
        unsure = best < UNSURE_GATE
        others = [_distinct_boxes(d, boxes[i, 0]) if unsure[i] else np.zeros(0, np.int64) for i, d in enumerate(dets)]
        chosen: dict[int, int] = {}                      # image -> index of its new lead detection
        for r in range(BOX_CANDIDATES):
            rows = [i for i, o in enumerate(others) if len(o) > r]
            if not rows:
                break
            squares = self._squares(np.stack([dets[i].boxes[others[i][r]] for i in rows])[:, None])
            _, s = self._views(images.subset(rows), squares, np.ones((len(rows), 1), np.float32),
                               np.zeros(len(rows), np.float32))
            confidence = _masked_mean(s, mask[rows])
            for i, c in zip(rows, confidence):
                if c > best[i] + SEARCH_MARGIN:
                    best[i], chosen[i] = c, others[i][r]
        if not chosen:
            return boxes, weights, mean, score
        boxes, weights, mean, score = boxes.copy(), weights.copy(), mean.copy(), score.copy()
        rows = sorted(chosen)
        for i in rows:
            d, j = dets[i], chosen[i]
            boxes[i], weights[i] = _same_garment(np.concatenate([d.boxes[j:j + 1], d.boxes]),
                                                 np.concatenate([d.scores[j:j + 1], d.scores]), self.num_crops)
        mean[rows], score[rows] = self._views(images.subset(rows), self._squares(boxes[rows]), weights[rows],
                                              np.zeros(len(rows), np.float32))
        return boxes, weights, mean, score

    def _search_rotation(self, images: DeviceImages, squares: np.ndarray, cats: np.ndarray,
                         mean: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Upright crops the keypoint net is unsure of are tried at every 45 degrees; where a rotated
        crop is clearly more convincing (mean confidence higher by SEARCH_MARGIN) the garment is
        taken to be rotated, and its angle is refined from the predicted top-to-bottom axis.

        Returns the crop angle per image (0 where nothing changed) and the predictions at it.
        """
        n = len(images)
        angles = np.zeros(n, np.float32)
        mask = CATEGORY_MASK[cats]
        confidence = _masked_mean(score, mask)
        unsure = np.flatnonzero(confidence < UNSURE_GATE)
        if len(unsure) == 0:
            return angles, mean, score
        subset = images.subset(unsure)
        ones = np.ones((len(unsure), 1), np.float32)
        best = confidence[unsure].copy()
        best_mean, best_score = mean[unsure].copy(), score[unsure].copy()
        best_angle = np.zeros(len(unsure), np.float32)
        for angle in ROTATION_GRID:
            a = np.full(len(unsure), angle, np.float32)
            m, s = self._views(subset, squares[unsure], ones, a)
            c = _masked_mean(s, mask[unsure])
            better = c > np.maximum(best, confidence[unsure] + SEARCH_MARGIN)
            best = np.where(better, c, best)
            best_angle = np.where(better, angle, best_angle)
            best_mean[better], best_score[better] = m[better], s[better]
        turned = best_angle != 0
        rows = unsure[turned]
        angles[rows] = upright_angle(best_mean[turned], cats[rows])
        mean, score = mean.copy(), score.copy()
        mean[rows], score[rows] = best_mean[turned], best_score[turned]
        return angles, mean, score

    def _views(self, images: DeviceImages, squares: np.ndarray, weights: np.ndarray,
               angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints averaged over all crops (and mirrored crops), weighted by confidence x crop weight."""
        coords, conf = self._keypoints(images, squares, angles)          # (n, c, v, 24, 2), (n, c, v, 24)
        w = conf * weights[:, :, None, None] + 1e-6
        mean = (coords * w[..., None]).sum(axis=(1, 2)) / w.sum(axis=(1, 2))[..., None]
        return mean, conf.mean(axis=(1, 2))

    @torch.no_grad()
    def _detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        cfg = self.model.detector_config
        tensors, scales = [], []
        for img in images:
            h, w = img.shape[:2]
            s = scale_for(h, w, cfg.min_size, cfg.max_size)
            # Resize as the training images were (INTER_AREA), so the detector sees the same statistics.
            small = cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)
            # Moved as uint8 (a quarter of the bytes), made float on the device.
            tensors.append(torch.from_numpy(small).to(self.device, non_blocking=True).permute(2, 0, 1).float().div_(255))
            scales.append(s)
        # One detector call per image size: a batch is padded to its largest image, and the
        # padding would change the others' detections (MobileNetV3's squeeze-excitation pools
        # over the padded map), making a result depend on its batch neighbours.
        outputs: list[dict[str, torch.Tensor] | None] = [None] * len(images)
        shapes = [tuple(t.shape[1:]) for t in tensors]
        self.detector.eval()
        for shape in dict.fromkeys(shapes):
            idx = [i for i, sh in enumerate(shapes) if sh == shape]
            with autocast_for(self.device):
                group = self.detector([tensors[i] for i in idx])
            for i, out in zip(idx, group):
                outputs[i] = out
        # One device-to-host copy for the whole batch.
        return [Detections(d.boxes / s, d.scores, d.categories)
                for d, s in zip(detections_to_host(outputs, top_k=10), scales)]

    def _crop_boxes(self, images: DeviceImages, dets: list[Detections]) -> tuple[np.ndarray, np.ndarray]:
        """Keypoint boxes (n, num_crops, 4) to crop and their weights (n, num_crops)."""
        k = self.num_crops
        out = np.zeros((len(images), k, 4), np.float32)
        weights = np.ones((len(images), k), np.float32)
        for i, d in enumerate(dets):
            if len(d.scores) == 0:
                h, w = images.hw(i)
                log.warning("no garment detected in image %d; using the whole image", i)
                boxes = np.array([[0, 0, w - 1, h - 1]], np.float32)
                scores = np.ones(1, np.float32)
            else:
                # The fused box leads; the raw top boxes follow as the extra crops. The detector's
                # margin is kept: the extra context absorbs its errors (10.5 % vs 11.3 % NE
                # with the margin taken off, lite demo, 200 validation images).
                boxes = np.concatenate([fuse_boxes(d.boxes, d.scores)[None], d.boxes])
                scores = np.concatenate([d.scores[:1], d.scores])
            chosen, chosen_w = _same_garment(boxes, scores, k)
            out[i], weights[i] = chosen, chosen_w
        return out, weights

    def _keypoints(self, images: DeviceImages, squares: np.ndarray,
                   angles: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Predict every (image, square crop (cx, cy, side), view) at the image's crop angle;
        coordinates in image pixels."""
        p = self.preset
        size = p.input_size
        views = (False, True) if self.flip_tta else (False,)
        n, k = squares.shape[:2]
        mats = np.zeros((n, k, len(views), 2, 3), np.float32)
        for i in range(n):
            for j in range(k):
                cx, cy, side = squares[i, j]
                for v, flip in enumerate(views):
                    mats[i, j, v] = crop_affine(cx, cy, side, size, float(angles[i]), flip=flip)
        x = prepare_input(images.crops(mats.reshape(n, k * len(views), 2, 3), size), self.device)
        with autocast_for(self.device):
            out = self._network(x)
        pts, conf = decode(out.float(), p.radius, p.stride)
        both = torch.cat([pts.reshape(len(pts), -1), conf], dim=1).cpu().numpy()  # one copy to the host
        pts = both[:, :NUM_KEYPOINTS * 2].reshape(n, k, len(views), NUM_KEYPOINTS, 2)
        conf = both[:, NUM_KEYPOINTS * 2:].reshape(n, k, len(views), NUM_KEYPOINTS)
        if self.flip_tta:
            # A mirrored crop predicts each keypoint in its twin's channel: swap them back.
            pts[:, :, 1] = pts[:, :, 1][:, :, FLIP_PERMUTATION]
            conf[:, :, 1] = conf[:, :, 1][:, :, FLIP_PERMUTATION]
        image_pts = apply_affine(pts, invert_affine(mats))
        return image_pts, conf

    def _network(self, x: torch.Tensor) -> torch.Tensor:
        """The keypoint net's last stage on a batch of crops (`engine.model.uncertainty` keeps the others)."""
        return self.keypoint_net(x)[-1]

    # -- whole splits -----------------------------------------------------------------------

    def iter_predict(
        self,
        root: str | os.PathLike,
        image_ids: Sequence[str],
        categories: Sequence[int | None] | None = None,
        on_progress: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Iterator[Predictions]:
        """Predict images `root / image_id` batch by batch (each batch's `rows` are positions in
        `image_ids`); stops early when `should_stop()` says so.

        Unreadable or missing images do not stop the run: they are reported in the batch's
        `errors`, not `present`, and their keypoints are all -1.
        """
        from engine.io.images import ImageError, read_image

        root = Path(root)
        total = len(image_ids)
        cats_in = list(categories) if categories is not None else [None] * total
        if on_progress is not None:
            on_progress(0, total)

        def read(image_id: str) -> np.ndarray | ImageError:
            try:
                return read_image(root / image_id, root)
            except ImageError as e:
                return e

        def submit(start: int) -> list[Future]:
            return [pool.submit(read, str(s)) for s in image_ids[start:start + self.batch_size]]

        # The next batch is decoded on a thread pool while this one is predicted (OpenCV's
        # decoder and torch's kernels both release the GIL).
        pool = ThreadPoolExecutor(max_workers=max(1, min(self.batch_size, DECODE_THREADS)),
                                  thread_name_prefix="fkp-decode")
        try:
            ahead = submit(0) if total else []
            for start in range(0, total, self.batch_size):
                if should_stop is not None and should_stop():
                    return
                ids = [str(s) for s in image_ids[start:start + self.batch_size]]
                decoded = [f.result() for f in ahead]
                ahead = submit(start + self.batch_size) if start + self.batch_size < total else []
                images, ok_rows, errors = [], [], {}
                for j, (image_id, img) in enumerate(zip(ids, decoded)):
                    if isinstance(img, ImageError):
                        errors[image_id] = str(img)
                        log.warning("%s", img)
                    else:
                        images.append(img)
                        ok_rows.append(j)
                yield self._batch(start, ids, cats_in, images, ok_rows, errors)
                if on_progress is not None:
                    on_progress(start + len(ids), total)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _batch(self, start: int, ids: list[str], cats_in: list[int | None], images: list[np.ndarray],
               ok_rows: list[int], errors: dict[str, str]) -> Predictions:
        """The `Predictions` of images `start ..` (the decoded ones predicted, the others errors)."""
        cats = np.array([c if c is not None else -1 for c in cats_in[start:start + len(ids)]], np.int64)
        batch = Predictions.unpredicted(ids, cats, rows=np.arange(start, start + len(ids)), errors=errors)
        if images:
            coords, scores, pred_cats, boxes = self.predict_images(images, [cats_in[start + j] for j in ok_rows])
            rows = np.asarray(ok_rows)
            batch.categories[rows] = pred_cats
            mask = CATEGORY_MASK[pred_cats]
            batch.coords[rows] = np.where(mask[..., None], coords, -1.0)
            batch.visibility[rows] = self._visibility(images, coords, mask)
            batch.scores[rows] = np.where(mask, scores, -1.0)
            batch.boxes[rows] = boxes
            batch.present[rows] = True
        # An unreadable image of unknown category still needs a valid category code in the CSV.
        batch.categories[batch.categories < 0] = 0
        return batch

    def predict(
        self,
        root: str | os.PathLike,
        annotations: Annotations,
        on_progress: Callable[[int, int], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> tuple[Annotations, np.ndarray, dict[str, str]]:
        """Predict every image of an `Annotations` (its categories are used when it has them).

        Returns (predictions as `Annotations`, scores (N, 24), errors {image_id: message}).
        Stopped early, the rows not reached are left out.
        """
        cats = [int(c) for c in annotations.categories]
        batches = list(self.iter_predict(root, list(annotations.image_ids), cats, on_progress, should_stop))
        return merge_batches(batches)


class DeviceImages:
    """The decoded images of one batch for the keypoint net's crops. On an accelerator each image
    is uploaded once, as uint8 (one copy per image size), and every crop of the batch is cut there
    with one `grid_sample`; on the CPU OpenCV's uint8 warp is cheaper and cuts them (`grid`
    forces either way). `subset(rows)` shares the upload."""

    # Images normalized to float at once for one grid_sample, at most this many pixels (x 3 x 4 bytes).
    CHUNK_PIXELS = 64 * 1024 * 1024

    def __init__(self, arrays: Sequence[np.ndarray], device: torch.device, grid: bool | None = None):
        self._arrays = list(arrays)
        self._device = device
        self._grid = device.type != "cpu" if grid is None else grid
        self._sizes = [tuple(a.shape[:2]) for a in arrays]
        self._where: list[tuple[int, int]] = [(0, 0)] * len(arrays)   # image -> (group, position)
        self._groups: list[torch.Tensor] = []
        self._normalized: dict[int, torch.Tensor] = {}   # group -> its float images, when small enough to keep
        if self._grid:
            for shape in dict.fromkeys(self._sizes):
                idx = [i for i, sh in enumerate(self._sizes) if sh == shape]
                stacked = torch.from_numpy(np.stack([arrays[i] for i in idx]))
                self._groups.append(stacked.to(device, non_blocking=True).permute(0, 3, 1, 2))
                for pos, i in enumerate(idx):
                    self._where[i] = (len(self._groups) - 1, pos)
        self._rows = np.arange(len(arrays))

    def __len__(self) -> int:
        return len(self._rows)

    def subset(self, rows: Sequence[int] | np.ndarray) -> DeviceImages:
        """The images `rows` (of this batch), without copying them."""
        sub = object.__new__(DeviceImages)
        sub.__dict__.update(self.__dict__)
        sub._rows = self._rows[np.asarray(rows, np.int64)]
        return sub

    def hw(self, i: int) -> tuple[int, int]:
        """(height, width) of image i."""
        return self._sizes[self._rows[i]]

    def crops(self, mats: np.ndarray, size: int) -> torch.Tensor:
        """Normalized crops (n * V, 3, size, size), image-major, of V matrices per image (n, V, 2, 3)."""
        n, v = mats.shape[:2]
        if not self._grid:
            return torch.stack([normalize_image(warp_crop(self._arrays[r], mats[i, j], size))
                                for i, r in enumerate(self._rows) for j in range(v)])
        where = [self._where[r] for r in self._rows]
        groups = [g for g, _ in where]
        out = None
        for g in dict.fromkeys(groups):
            sel = np.flatnonzero(np.asarray(groups) == g)
            images = self._groups[g]
            h, w = images.shape[2:]
            step = max(1, self.CHUNK_PIXELS // (h * w))
            if len(images) <= step and g not in self._normalized:
                # The whole group fits the budget: normalized once, for every view of the batch.
                self._normalized[g] = normalize_batch(images)
            for lo in range(0, len(sel), step):
                part = sel[lo:lo + step]
                positions = [where[i][1] for i in part]
                pos = torch.as_tensor(positions, device=images.device)
                if g in self._normalized:
                    whole = self._normalized[g]
                    chosen = whole if positions == list(range(len(whole))) else whole.index_select(0, pos)
                else:
                    chosen = normalize_batch(images.index_select(0, pos))
                crops = cut_crops(chosen, mats[part], size)
                if len(part) == n:
                    return crops
                if out is None:
                    out = crops.new_empty((n, v, 3, size, size))
                out[torch.as_tensor(part, device=crops.device)] = crops.view(len(part), v, 3, size, size)
        return out.view(n * v, 3, size, size)


def predict_within_memory(pipeline: Pipeline, root: str | os.PathLike, image_ids: Sequence[str],
                          categories: Sequence[int | None] | None = None,
                          on_progress: Callable[[int, int], None] | None = None,
                          should_stop: Callable[[], bool] | None = None) -> Iterator[Predictions]:
    """`pipeline.iter_predict` (same arguments, same `Predictions` batches, `rows` counted over
    all `image_ids`) that survives running out of memory: the batch that did not fit is
    predicted again with half the batch size, kept for the rest of the run, down to one image;
    an image that does not fit even alone gets its own error (all keypoints -1) and the run goes on."""
    total = len(image_ids)
    cats = list(categories) if categories is not None else [None] * total
    start = 0
    while start < total:
        base = start  # this try's batches count from here
        try:
            for batch in pipeline.iter_predict(root, image_ids[base:], cats[base:], should_stop=should_stop,
                                               on_progress=(None if on_progress is None else
                                                            lambda d, _t: on_progress(base + d, total))):
                batch.rows += base
                yield batch
                start = int(batch.rows[-1]) + 1
            return
        except (RuntimeError, MemoryError) as e:
            failed = out_of_memory_kind(e)
            if failed is None:
                raise
        # Past the except block the failed batch's tensors are unreferenced: hand them back first.
        release_gpu_cache()
        if pipeline.batch_size > 1:
            pipeline.batch_size = max(1, pipeline.batch_size // 2)
            log.warning("out of %s: predicting again %d images at a time", failed, pipeline.batch_size)
            continue
        image_id = str(image_ids[start])
        message = f"{image_id}: out of {failed} even alone" + (": try the CPU" if failed == "GPU memory" else "")
        log.warning("%s", message)
        yield Predictions.unpredicted([image_id], [max(cats[start] or 0, 0)], rows=[start], errors={image_id: message})
        start += 1
        if on_progress is not None:
            on_progress(start, total)


def merge_batches(batches: Sequence[Predictions]) -> tuple[Annotations, np.ndarray, dict[str, str]]:
    """(Annotations of all rows, scores (N, 24), errors) from consecutive batches: the form NE
    and the predictions files take (`Predictions.to_annotations`)."""
    merged = Predictions.concat(batches)
    pred, scores = merged.to_annotations()
    return pred, scores, merged.errors


def _same_garment(boxes: np.ndarray, scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The best box and up to k - 1 more boxes of the same garment (IoU >= 0.5 with the best),
    padded with zoomed copies of the best box; returns (k, 4) boxes and (k,) weights."""
    best = boxes[0]
    if k == 1:
        return best[None], scores[:1].astype(np.float32)
    x0 = np.maximum(best[0], boxes[:, 0])
    y0 = np.maximum(best[1], boxes[:, 1])
    x1 = np.minimum(best[2], boxes[:, 2])
    y1 = np.minimum(best[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    iou = inter / np.maximum(area[0] + area - inter, 1e-6)
    same = np.flatnonzero(iou >= 0.5)[:k]
    chosen = [boxes[same]]
    weights = [scores[same]]
    missing = k - len(same)
    if missing > 0:
        centre = (best[:2] + best[2:]) / 2
        half = (best[2:] - best[:2]) / 2
        zooms = np.resize(np.asarray(_ZOOMS, np.float32), missing)[:, None]
        chosen.append(np.concatenate([centre - half * zooms, centre + half * zooms], axis=1))
        weights.append(np.full(missing, scores[0] * 0.8, np.float32))
    return np.concatenate(chosen).astype(np.float32), np.concatenate(weights).astype(np.float32)


def _distinct_boxes(d: Detections, lead: np.ndarray, limit: int = BOX_CANDIDATES) -> np.ndarray:
    """Indices of up to `limit` detections, best first, that overlap neither the lead box nor
    each other (IoU < 0.5): other garments, or whatever outranked the garment."""
    if len(d.scores) == 0:
        return np.zeros(0, np.int64)
    boxes = torch.as_tensor(d.boxes)
    keep = nms(boxes, torch.as_tensor(d.scores), 0.5)
    keep = keep[box_iou(boxes[keep], torch.as_tensor(lead[None]))[:, 0] < 0.5]
    return keep[:limit].numpy()


def _masked_mean(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean over axis 1 of each row's masked entries: values (n, 24, ...), mask (n, 24) -> (n, ...)."""
    m = mask.reshape(mask.shape + (1,) * (values.ndim - 2))
    return (values * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1)


def upright_angle(coords: np.ndarray, categories: np.ndarray) -> np.ndarray:
    """The crop angle (degrees, as `crop_affine` takes it) that turns each garment upright.

    The garment's "up" is the vector from its bottom keypoints' centre to its top keypoints'
    centre (`UPRIGHT_TOP`, `UPRIGHT_BOTTOM` of its category); upright it points to -y.
    `coords` (n, 24, 2) image pixels, `categories` (n,) their category codes.
    """
    top, bottom = UPRIGHT_TOP[categories], UPRIGHT_BOTTOM[categories]
    up = _masked_mean(coords, top) - _masked_mean(coords, bottom)
    return (np.degrees(np.arctan2(up[:, 1], up[:, 0])) + 90.0).astype(np.float32)


def keypoint_squares(coords: np.ndarray, mask: np.ndarray, angles: np.ndarray, margin: float) -> np.ndarray:
    """(n, 3) square crops (cx, cy, side) around each image's masked keypoints: `square_around` of
    their box in the frame of a crop rotated by the image's angle (degrees, as `crop_affine`)."""
    a = np.radians(angles.astype(np.float64))
    cos, sin = np.cos(a)[:, None], np.sin(a)[:, None]
    x, y = coords[..., 0], coords[..., 1]
    u, v = cos * x + sin * y, -sin * x + cos * y                  # the crop's axes
    boxes = np.stack([np.where(mask, u, np.inf).min(axis=1), np.where(mask, v, np.inf).min(axis=1),
                      np.where(mask, u, -np.inf).max(axis=1), np.where(mask, v, -np.inf).max(axis=1)], axis=1)
    cu, cv, side = np.array([square_around(b, margin) for b in boxes]).reshape(-1, 3).T
    cx, cy = cos[:, 0] * cu - sin[:, 0] * cv, sin[:, 0] * cu + cos[:, 0] * cv
    return np.stack([cx, cy, side], axis=1).astype(np.float32)


# --- scores file ----------------------------------------------------------------------------
