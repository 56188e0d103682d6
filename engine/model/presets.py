"""Model presets: everything both stages (detector, keypoint net) need, per named preset.

`fast` and `accurate` follow the FashionAI champion's plan (ResNet-50 / ResNet-101 depth
dilated asymmetric hourglass, 2 stages, 256 / 352 input). `lite` is small enough to train
from scratch on a 2-core CPU for the demo model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

# Bottleneck block counts of the four encoder groups of the standard ResNets.
RESNET_BLOCKS: dict[str, tuple[int, int, int, int]] = {
    "resnet50": (3, 4, 6, 3),
    "resnet101": (3, 4, 23, 3),
}

# (output channels, bottleneck width) of encoder groups 1..4.
# "seed": the champion's dilated plan, 256(64) -> 256(128) -> 512(128) -> 512(128).
# "torchvision": ResNet's standard widths, so ImageNet weights from a local file fit.
SEED_WIDTHS: tuple[tuple[int, int], ...] = ((256, 64), (256, 128), (512, 128), (512, 128))
TORCHVISION_WIDTHS: tuple[tuple[int, int], ...] = ((256, 64), (512, 128), (1024, 256), (2048, 512))


@dataclass(frozen=True)
class NetConfig:
    """Architecture of the stacked hourglass (see `engine.model.hourglass`)."""

    blocks: tuple[int, int, int, int] = RESNET_BLOCKS["resnet50"]
    widths: tuple[tuple[int, int], ...] = SEED_WIDTHS
    stem_channels: int = 64
    decoder_channels: int = 256
    num_stages: int = 2
    # Later (refinement) stages: (out, width) of their three groups and block counts.
    refine_widths: tuple[tuple[int, int], ...] = ((256, 64), (512, 64), (512, 64))
    refine_blocks: tuple[int, int, int] = (1, 2, 2)
    num_keypoints: int = 24

    def to_dict(self) -> dict[str, Any]:
        return _plain(asdict(self))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NetConfig:
        d = dict(d)
        d["blocks"] = tuple(d["blocks"])
        d["widths"] = tuple(tuple(w) for w in d["widths"])
        d["refine_widths"] = tuple(tuple(w) for w in d["refine_widths"])
        d["refine_blocks"] = tuple(d["refine_blocks"])
        return cls(**d)


@dataclass(frozen=True)
class Preset:
    """A named model configuration for both stages, and how to train and run it."""

    name: str
    net: NetConfig
    input_size: int                      # square keypoint crop side, pixels
    stride: int = 4                      # output stride of the keypoint net (fixed by design)
    radius: float = 25.0                 # disk radius R of the targets, in input pixels
    crop_margin: float = 0.15            # crop = keypoint box grown by this fraction per side
    # Detector (stage 1).
    detector_backbone: str = "resnet50"
    detector_min_size: int = 512
    detector_max_size: int = 768
    # Test time.
    flip_tta: bool = False
    num_crops: int = 1
    rotation_search: bool = False        # try rotated crops when the upright one is unconvincing
    box_search: bool = False             # try the detector's other boxes when the crop is unconvincing
    # Training defaults.
    batch_size: int = 16
    epochs: int = 30
    lr: float = 2e-3
    weight_decay: float = 1e-4
    ohem_fraction: float = 0.5
    offset_weight: float = 0.25          # heatmap : offset loss weighted 4 : 1 (G-RMI)

    @property
    def output_size(self) -> int:
        return self.input_size // self.stride

    def to_dict(self) -> dict[str, Any]:
        d = _plain(asdict(self))
        d["net"] = self.net.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Preset:
        d = dict(d)
        d["net"] = NetConfig.from_dict(d["net"])
        return cls(**d)

    def with_(self, **changes: Any) -> Preset:
        """A copy with some fields changed (`net` may be given as a dict of NetConfig changes)."""
        net = changes.pop("net", None)
        if isinstance(net, dict):
            changes["net"] = replace(self.net, **net)
        elif net is not None:
            changes["net"] = net
        return replace(self, **changes)


def _plain(obj: Any) -> Any:
    """Tuples to lists, recursively, so configs survive JSON and `weights_only` loading."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


PRESETS: dict[str, Preset] = {
    "fast": Preset(
        name="fast",
        net=NetConfig(blocks=RESNET_BLOCKS["resnet50"], num_stages=2),
        input_size=256,
        radius=24.0,
        detector_backbone="resnet18",
        detector_min_size=512,
        detector_max_size=768,
        flip_tta=False,
        num_crops=1,
    ),
    "accurate": Preset(
        name="accurate",
        net=NetConfig(
            blocks=RESNET_BLOCKS["resnet101"],
            widths=((256, 64), (384, 192), (768, 192), (768, 192)),
            decoder_channels=384,
            num_stages=2,
            refine_widths=((384, 96), (768, 96), (768, 96)),
            refine_blocks=(2, 3, 3),
        ),
        input_size=352,
        radius=32.0,
        detector_backbone="resnet101",
        detector_min_size=640,
        detector_max_size=1024,
        flip_tta=True,
        num_crops=3,
        rotation_search=True,
        box_search=True,
        batch_size=8,
    ),
    # Small enough to train from scratch on a shared 2-core CPU in about an hour.
    "lite": Preset(
        name="lite",
        net=NetConfig(
            blocks=(1, 1, 2, 1),
            widths=((48, 16), (64, 24), (96, 24), (96, 24)),
            stem_channels=24,
            decoder_channels=48,
            num_stages=2,
            refine_widths=((48, 16), (96, 16), (96, 16)),
            refine_blocks=(1, 1, 1),
        ),
        input_size=160,
        radius=12.0,
        crop_margin=0.12,
        detector_backbone="mobilenet_v3_large",
        detector_min_size=320,
        detector_max_size=480,
        flip_tta=False,
        num_crops=1,
        batch_size=16,
        epochs=6,
        lr=3e-3,
    ),
}


def get_preset(name: str) -> Preset:
    """The named preset; raises ValueError naming the valid ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; expected one of {', '.join(PRESETS)}") from None
