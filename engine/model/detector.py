"""Stage 1: the garment detector, a torchvision Faster R-CNN with a feature pyramid.

FashionAI has no boxes, so a training box is the bounding box of the annotated keypoints
(every point with v >= 0) grown by `DetectorConfig.box_margin` per side. Classes are the five
categories plus background (label 0), so label `c + 1` is category code `c`.

Here: the config, building (nothing is ever downloaded: every torchvision builder gets
`weights=None`; ImageNet backbone weights come only from a local file), inference and
checkpoints. Training lives in `engine.training.detector`.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torchvision
from torch import nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.ops import box_iou
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

from engine.schema import CATEGORIES
# The training box rule is torch-free so that the YOLO-pose export writes the very same boxes.
from engine.io.boxes import KEYPOINT_BOX_MARGIN


NUM_CLASSES = len(CATEGORIES) + 1  # + background


class MixedPrecisionFPN(BackboneWithFPN):
    """The backbone and FPN, run in the caller's autocast precision (`autocast_dtype`), returning
    float32 features: everything after them (anchors, RPN, RoI heads, boxes) stays float32."""

    autocast_dtype: torch.dtype | None = None

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.autocast_dtype is None:
            return super().forward(x)
        with torch.autocast(x.device.type, dtype=self.autocast_dtype):
            features = super().forward(x)
        return OrderedDict((k, v.float()) for k, v in features.items())


class GarmentDetector(FasterRCNN):
    """Faster R-CNN whose backbone alone follows an enclosing autocast.

    Under bf16 autocast torchvision would build anchors, proposals and boxes in bf16: box
    coordinates snap to 2 px steps between 256 and 512 px and 4 px steps above. So the caller's
    autocast (if any) is handed to the backbone and switched off for the rest. The state dict is
    a plain `FasterRCNN`'s."""

    def forward(self, images, targets=None):
        device_type = images[0].device.type if len(images) else "cpu"
        if not torch.is_autocast_enabled(device_type) or not isinstance(self.backbone, MixedPrecisionFPN):
            return super().forward(images, targets)
        self.backbone.autocast_dtype = torch.get_autocast_dtype(device_type)
        try:
            with torch.autocast(device_type, enabled=False):
                return super().forward(images, targets)
        finally:
            self.backbone.autocast_dtype = None
DETECTOR_BACKBONES: tuple[str, ...] = ("mobilenet_v3_large", "resnet18", "resnet34", "resnet50", "resnet101")
DETECTOR_FORMAT = "fkp-detector/1"


@dataclass(frozen=True)
class DetectorConfig:
    """Architecture and input scale of the detector (stored in checkpoints and model packages)."""

    backbone: str = "resnet50"
    min_size: int = 512
    max_size: int = 768
    fpn_channels: int = 256
    box_head_dim: int = 1024
    box_margin: float = KEYPOINT_BOX_MARGIN  # training box = keypoint box grown by this per side
    num_classes: int = NUM_CLASSES

    def __post_init__(self) -> None:
        if self.backbone not in DETECTOR_BACKBONES:
            raise ValueError(f"unknown detector backbone {self.backbone!r}; expected one of {', '.join(DETECTOR_BACKBONES)}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DetectorConfig:
        return cls(**d)

    @classmethod
    def from_preset(cls, preset: Any) -> DetectorConfig:
        """The detector of a `engine.model.presets.Preset`; light backbones get slimmer heads."""
        light = preset.detector_backbone in ("mobilenet_v3_large", "resnet18")
        return cls(
            backbone=preset.detector_backbone,
            min_size=preset.detector_min_size,
            max_size=preset.detector_max_size,
            # The default 256-channel FPN and 1024-wide box head hold ~14 M parameters, more
            # than a light backbone itself; 128 / 256 keep the lite model small and fast.
            fpn_channels=128 if light else 256,
            box_head_dim=256 if light else 1024,
        )


# --- building -----------------------------------------------------------------------------


def build_detector(config: DetectorConfig, backbone_weights: str | os.PathLike | None = None) -> FasterRCNN:
    """A Faster R-CNN for `config`, from scratch or with ImageNet backbone weights from a local file."""
    pretrained = backbone_weights is not None
    norm_layer = FrozenBatchNorm2d if pretrained else nn.BatchNorm2d
    if config.backbone.startswith("resnet"):
        body = torchvision.models.__dict__[config.backbone](weights=None, norm_layer=norm_layer)
        if pretrained:
            _load_backbone_weights(body, backbone_weights)
        backbone = _resnet_fpn(body, config.fpn_channels, trainable_stages=3 if pretrained else 5)
        # P2..P5 + pool: one anchor size per level.
        sizes = tuple((s,) for s in _anchor_sizes(config.min_size, 5))
    else:
        body = torchvision.models.mobilenet_v3_large(weights=None, norm_layer=norm_layer)
        if pretrained:
            _load_backbone_weights(body, backbone_weights)
        backbone = _mobilenet_fpn(body, config.fpn_channels, trainable_stages=3 if pretrained else 6)
        sizes = tuple((s,) for s in _anchor_sizes(config.min_size, 4, first=config.min_size // 10))
    anchors = AnchorGenerator(sizes=sizes, aspect_ratios=((0.5, 1.0, 2.0),) * len(sizes))
    resolution = 7
    box_head = TwoMLPHead(config.fpn_channels * resolution**2, config.box_head_dim)
    return GarmentDetector(
        backbone,
        min_size=config.min_size,
        max_size=config.max_size,
        rpn_anchor_generator=anchors,
        box_head=box_head,
        box_predictor=FastRCNNPredictor(config.box_head_dim, config.num_classes),
        # One garment per image: far fewer proposals and sampled RoIs than COCO needs.
        rpn_pre_nms_top_n_train=300, rpn_post_nms_top_n_train=150,
        rpn_pre_nms_top_n_test=300, rpn_post_nms_top_n_test=100,
        box_batch_size_per_image=64,
        box_score_thresh=0.0,
        box_detections_per_img=10,
    )


def _anchor_sizes(min_size: int, levels: int, first: int | None = None) -> list[int]:
    first = first or max(16, min_size // 16)
    return [int(first * 2**i) for i in range(levels)]


def _resnet_fpn(body: nn.Module, channels: int, trainable_stages: int) -> BackboneWithFPN:
    trainable = ("layer4", "layer3", "layer2", "layer1", "conv1")[:trainable_stages]
    if trainable_stages == 5:
        trainable += ("bn1",)
    for name, p in body.named_parameters():
        if not name.startswith(trainable):
            p.requires_grad_(False)
    in_channels = [_out_channels(getattr(body, f"layer{i}")) for i in (1, 2, 3, 4)]
    return MixedPrecisionFPN(
        body, {"layer1": "0", "layer2": "1", "layer3": "2", "layer4": "3"}, in_channels, channels,
        extra_blocks=LastLevelMaxPool(),
    )


def _out_channels(layer: nn.Sequential) -> int:
    last = layer[-1]
    return (last.conv3 if hasattr(last, "conv3") else last.conv2).out_channels


def _mobilenet_fpn(body: nn.Module, channels: int, trainable_stages: int) -> BackboneWithFPN:
    features = body.features
    # Strided blocks mark the stages (as in torchvision's own mobilenet extractor).
    stage_starts = [0] + [i for i, b in enumerate(features) if getattr(b, "_is_cn", False)] + [len(features) - 1]
    freeze_before = stage_starts[len(stage_starts) - trainable_stages] if trainable_stages < len(stage_starts) else 0
    for block in features[:freeze_before]:
        for p in block.parameters():
            p.requires_grad_(False)
    # Strides 8, 16 and 32 (the last block): garments fill much of the image, no stride 4 needed.
    returned = stage_starts[-3:]
    return_layers = {str(idx): str(i) for i, idx in enumerate(returned)}
    in_channels = [features[idx].out_channels for idx in returned]
    return MixedPrecisionFPN(features, return_layers, in_channels, channels, extra_blocks=LastLevelMaxPool())


def _load_backbone_weights(body: nn.Module, path: str | os.PathLike) -> None:
    """Load a torchvision classification state dict (ImageNet weights) into the backbone body."""
    path = Path(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"{path}: backbone weights file not found") from None
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the file is unusable
        raise ValueError(f"{path}: not a readable PyTorch weights file ({e})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"{path}: expected a state dict, found {type(state).__name__}")
    # The classifier head is not part of the detector's backbone.
    state = {k: v for k, v in state.items() if not k.startswith(("fc.", "classifier."))}
    missing, unexpected = body.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith(("fc.", "classifier."))]
    if missing or unexpected:
        raise ValueError(
            f"{path}: weights do not fit the {type(body).__name__} backbone "
            f"(missing {missing[:3]}, unexpected {unexpected[:3]})"
        )


# --- boxes from keypoints -----------------------------------------------------------------


def scale_for(height: int, width: int, min_size: int, max_size: int) -> float:
    """The factor torchvision's transform resizes an image by (shorter side to min_size, capped)."""
    return min(min_size / min(height, width), max_size / max(height, width))


# --- inference ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Detections:
    """The top-k detections of one image: boxes (k, 4) in image pixels, scores (k,), category codes (k,)."""

    boxes: np.ndarray
    scores: np.ndarray
    categories: np.ndarray


def fuse_boxes(boxes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """One box from a detector's top boxes (best first): their mean weighted by score x IoU with
    the best. Near-duplicate boxes of other classes then refine the box instead of competing
    with it, which steadies the crop when the class scores are close."""
    if len(boxes) == 1:
        return boxes[0].copy()
    iou = box_iou(torch.as_tensor(boxes[:1]), torch.as_tensor(boxes))[0].numpy()
    w = scores * iou
    return ((boxes * w[:, None]).sum(axis=0) / max(float(w.sum()), 1e-9)).astype(np.float32)


@torch.no_grad()
def detect(model: FasterRCNN, images: Sequence[torch.Tensor], top_k: int = 1) -> list[Detections]:
    """Run the detector on float images (3, H, W) in [0, 1]; returns up to `top_k` boxes each, best first.

    An image without any detection gets an empty `Detections` (the caller falls back to the whole image).
    """
    model.eval()
    return detections_to_host(model(list(images)), top_k)


def detections_to_host(outputs: Sequence[dict[str, torch.Tensor]], top_k: int) -> list[Detections]:
    """torchvision detector outputs -> `Detections` (up to `top_k` each), with one device-to-host copy."""
    if not outputs:
        return []
    parts = [torch.cat([o["boxes"][:top_k].float(), o["scores"][:top_k, None].float(),
                        o["labels"][:top_k, None].float()], dim=1) for o in outputs]
    rows = torch.cat(parts).detach().cpu().numpy()
    result, start = [], 0
    for part in parts:
        r = rows[start:start + len(part)]
        start += len(part)
        result.append(Detections(boxes=r[:, :4].astype(np.float32), scores=r[:, 4].astype(np.float32),
                                 categories=r[:, 5].astype(np.int64) - 1))
    return result


# --- checkpoints --------------------------------------------------------------------------


def save_detector(path: str | os.PathLike, model: FasterRCNN, config: DetectorConfig, metadata: dict[str, Any] | None = None) -> None:
    """Save weights, config and metadata atomically (loadable with `weights_only=True`)."""
    from engine.model.checkpoints import save_checkpoint

    save_checkpoint(path, {
        "format": DETECTOR_FORMAT,
        "config": config.to_dict(),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "metadata": metadata or {},
    })


def load_detector(path: str | os.PathLike) -> tuple[FasterRCNN, DetectorConfig, dict[str, Any]]:
    """Load a detector checkpoint written by `save_detector`; raises `CheckpointError` naming the file."""
    from engine.model.checkpoints import CheckpointError, load_checkpoint

    ckpt = load_checkpoint(path, DETECTOR_FORMAT)
    if not isinstance(ckpt.get("config"), dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise CheckpointError(f"{path}: detector checkpoint lacks its config or weights")
    model, config = detector_from_state(ckpt["config"], ckpt["state_dict"], str(path))
    return model, config, dict(ckpt.get("metadata", {}))


def detector_from_state(config: dict[str, Any], state_dict: dict[str, torch.Tensor], source: str) -> tuple[FasterRCNN, DetectorConfig]:
    """Rebuild a detector from a stored config and state dict; raises `CheckpointError` naming `source`."""
    from engine.model.checkpoints import CheckpointError

    try:
        cfg = DetectorConfig.from_dict(config)
        model = build_detector(cfg)
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state_dict.items()})
    except (TypeError, ValueError, RuntimeError, KeyError) as e:
        raise CheckpointError(f"{source}: detector weights do not match their config ({e})") from None
    return model.eval(), cfg
