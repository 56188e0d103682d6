"""Model presets: everything both stages (detector, keypoint net) need, per named preset.

`fast` and `accurate` follow the FashionAI champion's plan (ResNet-50 / ResNet-101 depth
dilated asymmetric hourglass, 2 stages, 256 / 352 input). `lite` is small enough to train
from scratch on a 2-core CPU for the demo model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

from engine.schema import NUM_KEYPOINTS

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
    # Hint input (issue 32 (b)): one heatmap per keypoint set by hand, 0 (no hint input) or
    # `num_keypoints`; a config written before it existed has none.
    hint_channels: int = 0

    def to_dict(self) -> dict[str, Any]:
        d = _plain(asdict(self))
        if not self.hint_channels:
            del d["hint_channels"]  # a net without hints is stored exactly as before
        return d

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


# --- the sizes a model file may ask for --------------------------------------------------------

# Upper bounds, a few times the `accurate` preset's, so that a package trained with larger
# settings still loads while a file claiming a million stages (100 s to 8.9 GB, then a
# MemoryError) or a 10-million-pixel crop (300 TB) is refused before anything is built.
SIZE_LIMITS: dict[str, int] = {
    "input_size": 2048,          # accurate: 352
    "num_stages": 8,             # 2
    "blocks": 64,                # ResNet-101's third group: 23
    "channels": 4096,            # torchvision widths: 2048
    "detector_size": 4096,       # accurate: 640 / 1024
    "num_crops": 32,             # 3
    "batch_size": 4096,          # 16
    "epochs": 100_000,
    "patch_size": 512,           # the visibility stage: 32
}


def check_sizes(preset: Preset, detector: Any = None, visibility: Any = None) -> None:
    """ValueError naming the first size of a model (its preset, detector config, visibility
    config) that is not a whole number within `SIZE_LIMITS`, or a shape the networks are not
    built for. Call it before building anything from a file."""
    _check_net(preset.net, "preset net")
    _whole("input_size", preset.input_size, 4, SIZE_LIMITS["input_size"])
    if preset.stride != 4:
        raise ValueError(f"stride {_shown(preset.stride)} is not 4 (the keypoint net's output stride is fixed)")
    _real("radius", preset.radius, 0, preset.input_size, low_open=True)
    _real("crop_margin", preset.crop_margin, 0, 4)
    for name in ("detector_min_size", "detector_max_size"):
        _whole(name, getattr(preset, name), 1, SIZE_LIMITS["detector_size"])
    _whole("num_crops", preset.num_crops, 1, SIZE_LIMITS["num_crops"])
    _whole("batch_size", preset.batch_size, 1, SIZE_LIMITS["batch_size"])
    _whole("epochs", preset.epochs, 1, SIZE_LIMITS["epochs"])
    if detector is not None:
        check_detector_sizes(detector)
    if visibility is not None:
        check_visibility_sizes(visibility)


def check_net_sizes(net: NetConfig) -> None:
    """ValueError naming the first size of a keypoint net's config out of `SIZE_LIMITS`."""
    _check_net(net, "keypoint net")


def check_detector_sizes(config: Any) -> None:
    """ValueError naming the first size of a `DetectorConfig` out of `SIZE_LIMITS`."""
    for name in ("min_size", "max_size"):
        _whole(f"detector {name}", getattr(config, name), 1, SIZE_LIMITS["detector_size"])
    _whole("detector fpn_channels", config.fpn_channels, 1, SIZE_LIMITS["channels"])
    _whole("detector box_head_dim", config.box_head_dim, 1, SIZE_LIMITS["channels"])
    _real("detector box_margin", config.box_margin, 0, 4)


def check_visibility_sizes(config: Any) -> None:
    """ValueError naming the first size of a `VisibilityConfig` out of `SIZE_LIMITS`."""
    _whole("visibility patch_size", config.patch_size, 4, SIZE_LIMITS["patch_size"])
    _whole("visibility embedding", config.embedding, 1, SIZE_LIMITS["channels"])
    _sequence("visibility channels", config.channels, 3, 1, SIZE_LIMITS["channels"])
    _real("visibility scale", config.scale, 0, 4, low_open=True)
    _real("visibility threshold", config.threshold, 0, 1)


def _check_net(net: NetConfig, where: str) -> None:
    _sequence(f"{where} blocks", net.blocks, 4, 1, SIZE_LIMITS["blocks"])
    _pairs(f"{where} widths", net.widths, 4)
    _whole(f"{where} stem_channels", net.stem_channels, 1, SIZE_LIMITS["channels"])
    _whole(f"{where} decoder_channels", net.decoder_channels, 1, SIZE_LIMITS["channels"])
    _whole(f"{where} num_stages", net.num_stages, 1, SIZE_LIMITS["num_stages"])
    _pairs(f"{where} refine_widths", net.refine_widths, 3)
    _sequence(f"{where} refine_blocks", net.refine_blocks, 3, 1, SIZE_LIMITS["blocks"])
    if net.num_keypoints != NUM_KEYPOINTS or isinstance(net.num_keypoints, bool):
        raise ValueError(f"{where} num_keypoints {_shown(net.num_keypoints)} is not {NUM_KEYPOINTS}")
    if net.hint_channels not in (0, NUM_KEYPOINTS) or isinstance(net.hint_channels, bool):
        raise ValueError(f"{where} hint_channels {_shown(net.hint_channels)} is neither 0 nor {NUM_KEYPOINTS}")


def _shown(value: Any) -> str:
    """A value for a message, short whatever it is (a file may hold anything)."""
    if isinstance(value, (bool, float)) or value is None:
        return repr(value)
    if isinstance(value, int):
        return str(value) if abs(value) < 10 ** 15 else "a very large number"
    if isinstance(value, (list, tuple)):
        return f"a list of {len(value)} items"
    return f"a {type(value).__name__}"


def _whole(name: str, value: Any, low: int, high: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool):
        raise ValueError(f"{name} {_shown(value)} is not a whole number")
    if not low <= value <= high:
        raise ValueError(f"{name} {_shown(value)} is outside {low}..{high}")


def _real(name: str, value: Any, low: float, high: float, low_open: bool = False) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        raise ValueError(f"{name} {_shown(value)} is not a number")
    if not (low < value if low_open else low <= value) or not value <= high:  # NaN fails both
        raise ValueError(f"{name} {_shown(value)} is outside {'(' if low_open else '['}{low:g}, {high:g}]")


def _sequence(name: str, values: Any, length: int, low: int, high: int) -> None:
    if not isinstance(values, (list, tuple)) or len(values) != length:
        raise ValueError(f"{name} {_shown(values)} is not {length} whole numbers")
    for i, v in enumerate(values):
        _whole(f"{name}[{i}]", v, low, high)


def _pairs(name: str, values: Any, length: int) -> None:
    """`length` (output channels, bottleneck width) pairs."""
    if not isinstance(values, (list, tuple)) or len(values) != length:
        raise ValueError(f"{name} {_shown(values)} is not {length} (channels, width) pairs")
    for i, pair in enumerate(values):
        _sequence(f"{name}[{i}]", pair, 2, 1, SIZE_LIMITS["channels"])
