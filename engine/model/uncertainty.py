"""How unsure the keypoint net was of each predicted point: cheap signals for the review queue.

Read off the pipeline's last pass (the refinement crop around the predicted points), so the
predictions are the plain pipeline's, unchanged (`Pipeline._network` is the only hook). Per
point, `SIGNALS`:

- `uncertainty`: 1 - the decoded peak's confidence (its share of a full disk's votes);
- `second_peak`: the vote mass of the vote map's second strongest peak (`vote_peaks`): a rival spot;
- `flip`: how far the point moves when the crop is mirrored (the twin's channel, mirrored back),
  as a share of the crop side: with flip TTA the pass has the mirrored view already, without
  it costs one more keypoint-net run per image;
- `stacks`: how far the hourglass's first stage put it from the last one, a share of the crop side.

`engine.analysis.review_queue` turns them into an image's expected correction seconds.
"""

from __future__ import annotations

import numpy as np
import torch

from engine.model.device import autocast_for
from engine.io.predictions import Predictions
from engine.model.pipeline import Pipeline
from engine.model.targets import decode, vote_peaks
from engine.schema import FLIP_PERMUTATION, NUM_KEYPOINTS

SIGNALS = ("uncertainty", "second_peak", "flip", "stacks")


class SignalPipeline(Pipeline):
    """A `Pipeline` that also measures `SIGNALS` on its last pass. `predict_images_with_signals`
    returns them; after `predict` / `iter_predict`, `signals[image_id]` is (24, len(SIGNALS))."""

    def __init__(self, model, *args, **kwargs):
        super().__init__(model, *args, **kwargs)
        if self.refine_steps < 1:
            raise ValueError("the signals are read off the refinement pass: refine_steps must be at least 1")
        self.signals: dict[str, np.ndarray] = {}
        self._last_pass: tuple[torch.Tensor, list[torch.Tensor]] | None = None

    def _network(self, x: torch.Tensor) -> torch.Tensor:
        outputs = self.keypoint_net(x)
        self._last_pass = (x, outputs)  # the refinement pass is the last: its crops sit on the predictions
        return outputs[-1]

    def predict_images_with_signals(self, images, categories=None) -> tuple[np.ndarray, ...]:
        """`predict_images`' (coords, scores, categories, boxes) and the signals (n, 24, len(SIGNALS))."""
        coords, scores, cats, boxes = self.predict_images(images, categories)
        return coords, scores, cats, boxes, self._last_signals(len(images))

    def _batch(self, start: int, ids: list[str], cats_in, images, ok_rows, errors) -> Predictions:
        batch = super()._batch(start, ids, cats_in, images, ok_rows, errors)
        if images:
            signals = self._last_signals(len(images))
            self.signals.update({ids[j]: signals[i] for i, j in enumerate(ok_rows)})
        return batch

    @torch.no_grad()
    def _last_signals(self, n: int) -> np.ndarray:
        """The signals (n, 24, len(SIGNALS)) of the last pass, one crop (and its views) per image."""
        assert self._last_pass is not None, "no keypoint pass to read"
        x, outputs = self._last_pass
        self._last_pass = None  # its tensors are not kept past the batch
        p = self.preset
        views = 2 if self.flip_tta else 1
        pts, conf = decode(outputs[-1].float(), p.radius, p.stride)          # (n * views, 24, 2), (n * views, 24)
        first, _ = decode(outputs[0].float(), p.radius, p.stride)
        _, mass = vote_peaks(outputs[-1].float(), p.radius, p.stride, num_peaks=2)
        stacks = (pts - first).norm(dim=2) / p.input_size
        if self.flip_tta:
            upright, mirrored = pts.reshape(n, 2, NUM_KEYPOINTS, 2).unbind(1)
        else:
            with autocast_for(self.device):
                mirrored_out = self.keypoint_net(x.flip(3))[-1]   # the crop mirrored is the flipped crop
            upright, mirrored = pts, decode(mirrored_out.float(), p.radius, p.stride)[0]
        # A mirrored crop finds each keypoint in its twin's channel, at x' = size - 1 - x.
        twin = torch.as_tensor(np.array(FLIP_PERMUTATION), device=mirrored.device)  # a copy: the schema's is read-only
        mirrored = mirrored[:, twin]
        back = torch.stack([p.input_size - 1 - mirrored[..., 0], mirrored[..., 1]], dim=2)
        flip = (upright - back).norm(dim=2) / p.input_size
        per_view = torch.stack([1 - conf, mass[..., 1], stacks], dim=2).reshape(n, views, NUM_KEYPOINTS, 3)
        if self.flip_tta:
            per_view = torch.stack([per_view[:, 0], per_view[:, 1][:, twin]], dim=1)
        per_view = per_view.mean(1)
        signals = torch.stack([per_view[..., 0], per_view[..., 1], flip, per_view[..., 2]], dim=2)
        return signals.cpu().numpy().astype(np.float32)
