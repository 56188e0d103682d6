"""The asymmetric, dilated stacked-hourglass keypoint network (stage 2 of the pipeline).

Stage 1 of the stack is a heavy ResNet-style bottleneck encoder and a light decoder:

    stem (7x7/2 conv + 3x3/2 max-pool)                 -> 1/4
    group 1: out(width) = widths[0], stride 1          -> 1/4   (skip to the decoder)
    group 2: widths[1], stride 2                        -> 1/8
    group 3: widths[2], dilation 2 (no striding)        -> 1/8
    group 4: widths[3], dilation 4 (no striding)        -> 1/8
    decoder: 1x1 + 3x3 conv, upsample x2, + 1x1 skip from group 1, 3x3 conv -> 1/4

With the seed widths ((256,64), (256,128), (512,128), (512,128)) this is the champion's
"64 -> 32 -> 32 -> 32" plan for a 256 crop; with torchvision widths it is a dilated
ResNet whose encoder accepts ImageNet weights from a local file.

Every later stage is a lighter encoder-decoder (refine_widths, e.g. 256(64) -> 512(64) ->
512(64) at 1/4 -> 1/8 -> 1/8 dilated) fed with the previous stage's decoder features and
its predictions; its features are added to the previous ones (residual refinement).

Output of every stage: a (B, 72, H/4, W/4) tensor, for K = 24 keypoints:
    channels [0, K)        heatmap logits, one per keypoint (disk membership, see targets.py)
    channels K + 2k        x offset of keypoint k, in units of the disk radius R
    channels K + 2k + 1    y offset of keypoint k, in units of R
`forward` returns the list of all stages' outputs (all are supervised); the last is the
prediction. `split_output` separates heatmaps (B, K, h, w) and offsets (B, K, 2, h, w).

Hints (issue 32 (b), `NetConfig.hint_channels` = K): `forward(x, hints)` also takes one heatmap
per keypoint set by hand (B, K, H, W), zero where none is set (`engine.model.hints`). They enter
twice, each through a convolution initialized to zero: beside the stem's 7x7 convolution (added
to its output before the BatchNorm) and, max-pooled to 1/4, into every later stage's entry (added
after it). So a net that gains hint channels computes exactly what it did before until it is
trained with them (`with_hint_channels`), and `forward(x)` without hints is the plain net.
"""

from __future__ import annotations

import logging
import math
import os

import torch
import torch.nn.functional as F
from torch import nn

from engine.model.presets import NetConfig

log = logging.getLogger(__name__)

OUTPUT_STRIDE = 4
# Prior probability of "inside the disk" used to initialize the heatmap bias: starting near
# the true positive rate keeps the first steps from being spent on the background.
_HEATMAP_PRIOR = 0.02


def split_output(out: torch.Tensor, num_keypoints: int = 24) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 3K, h, w) stage output -> heatmap logits (B, K, h, w), offsets (B, K, 2, h, w)."""
    b, _, h, w = out.shape
    heat = out[:, :num_keypoints]
    offsets = out[:, num_keypoints:].reshape(b, num_keypoints, 2, h, w)
    return heat, offsets


class Bottleneck(nn.Module):
    """ResNet bottleneck (torchvision's layout and parameter names, so weights load)."""

    def __init__(self, in_ch: int, out_ch: int, width: int, stride: int = 1, dilation: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.relu = nn.ReLU(inplace=True)
        self.downsample: nn.Module | None = None
        if stride != 1 or in_ch != out_ch:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + identity)


def _group(in_ch: int, out_ch: int, width: int, blocks: int, stride: int, dilation: int) -> nn.Sequential:
    # As in torchvision's dilated ResNet, the first block of a dilated group uses half the
    # dilation (it bridges from the previous group's receptive field).
    first_dilation = max(1, dilation // 2)
    layers = [Bottleneck(in_ch, out_ch, width, stride=stride, dilation=first_dilation)]
    layers += [Bottleneck(out_ch, out_ch, width, dilation=dilation) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


def _conv_bn_relu(in_ch: int, out_ch: int, k: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(in_ch, out_ch, k, padding=k // 2, bias=False), nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True))


class Encoder(nn.Module):
    """Stage-1 encoder: stem + four bottleneck groups, 1/4 -> 1/8 -> 1/8 -> 1/8 (dilated)."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        (c1, w1), (c2, w2), (c3, w3), (c4, w4) = cfg.widths
        stem = cfg.stem_channels
        self.conv1 = nn.Conv2d(3, stem, 7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        n1, n2, n3, n4 = cfg.blocks
        self.layer1 = _group(stem, c1, w1, n1, stride=1, dilation=1)
        self.layer2 = _group(c1, c2, w2, n2, stride=2, dilation=1)
        self.layer3 = _group(c2, c3, w3, n3, stride=1, dilation=2)
        self.layer4 = _group(c3, c4, w4, n4, stride=1, dilation=4)
        self.hint_conv: nn.Conv2d | None = None
        if cfg.hint_channels:
            self.hint_conv = nn.Conv2d(cfg.hint_channels, stem, 7, stride=2, padding=3, bias=False)
            nn.init.zeros_(self.hint_conv.weight)

    def forward(self, x: torch.Tensor, hints: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.conv1(x)
        if hints is not None and self.hint_conv is not None:
            x = x + self.hint_conv(hints.to(x.dtype))
        x = self.maxpool(self.relu(self.bn1(x)))
        skip = self.layer1(x)
        deep = self.layer4(self.layer3(self.layer2(skip)))
        return skip, deep


class Decoder(nn.Module):
    """Light decoder: reduce the 1/8 features, upsample x2, add the 1/4 skip, one 3x3 conv."""

    def __init__(self, deep_ch: int, skip_ch: int, out_ch: int):
        super().__init__()
        self.reduce = nn.Sequential(_conv_bn_relu(deep_ch, out_ch, 1), _conv_bn_relu(out_ch, out_ch, 3))
        self.skip = nn.Sequential(nn.Conv2d(skip_ch, out_ch, 1, bias=False), nn.BatchNorm2d(out_ch))
        self.fuse = _conv_bn_relu(out_ch, out_ch, 3)

    def forward(self, skip: torch.Tensor, deep: torch.Tensor) -> torch.Tensor:
        up = F.interpolate(self.reduce(deep), size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.fuse(up + self.skip(skip))


class Head(nn.Module):
    """1x1 conv to 3K channels: K heatmap logits then K (dx, dy) offset pairs."""

    def __init__(self, in_ch: int, num_keypoints: int):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, 3 * num_keypoints, 1)
        nn.init.normal_(self.conv.weight, std=0.01)
        with torch.no_grad():
            self.conv.bias.zero_()
            self.conv.bias[:num_keypoints] = -math.log((1 - _HEATMAP_PRIOR) / _HEATMAP_PRIOR)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class RefineStage(nn.Module):
    """A later stage: a lighter encoder-decoder over the previous features and predictions."""

    def __init__(self, cfg: NetConfig):
        super().__init__()
        (a, wa), (b, wb), (c, wc) = cfg.refine_widths
        na, nb, nc = cfg.refine_blocks
        d = cfg.decoder_channels
        self.enter = _conv_bn_relu(d + 3 * cfg.num_keypoints, a, 1)
        self.group_a = _group(a, a, wa, na, stride=1, dilation=1)
        self.group_b = _group(a, b, wb, nb, stride=2, dilation=1)
        self.group_c = _group(b, c, wc, nc, stride=1, dilation=2)
        self.decoder = Decoder(c, a, d)
        self.head = Head(d, cfg.num_keypoints)
        self.hint_enter: nn.Conv2d | None = None
        if cfg.hint_channels:
            self.hint_enter = nn.Conv2d(cfg.hint_channels, a, 1, bias=False)
            nn.init.zeros_(self.hint_enter.weight)

    def forward(self, features: torch.Tensor, prediction: torch.Tensor,
                hints: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """`hints` (B, K, h, w) at the features' resolution, or None."""
        entered = self.enter(torch.cat([features, prediction], dim=1))
        if hints is not None and self.hint_enter is not None:
            entered = entered + self.hint_enter(hints.to(entered.dtype))
        skip = self.group_a(entered)
        deep = self.group_c(self.group_b(skip))
        features = features + self.decoder(skip, deep)
        return features, self.head(features)


class KeypointNet(nn.Module):
    """Stacked hourglass: `forward(x)` returns a list of (B, 3K, H/4, W/4), one per stage."""

    def __init__(self, config: NetConfig):
        super().__init__()
        self.config = config
        c1 = config.widths[0][0]
        c4 = config.widths[3][0]
        self.encoder = Encoder(config)
        self.decoder = Decoder(c4, c1, config.decoder_channels)
        self.head = Head(config.decoder_channels, config.num_keypoints)
        self.refine = nn.ModuleList(RefineStage(config) for _ in range(config.num_stages - 1))

    @property
    def takes_hints(self) -> bool:
        return bool(self.config.hint_channels)

    def forward(self, x: torch.Tensor, hints: torch.Tensor | None = None) -> list[torch.Tensor]:
        """`hints` (B, K, H, W) at the input's resolution (`engine.model.hints.hint_heatmaps`), or
        None: no point set (the same as all-zero hints). A net without hint channels ignores them."""
        if not self.takes_hints:
            hints = None
        skip, deep = self.encoder(x, hints)
        features = self.decoder(skip, deep)
        outputs = [self.head(features)]
        small = None
        if hints is not None and len(self.refine):
            small = F.adaptive_max_pool2d(hints, features.shape[-2:])
        for stage in self.refine:
            features, out = stage(features, outputs[-1], small)
            outputs.append(out)
        return outputs


def with_hint_channels(net: KeypointNet) -> KeypointNet:
    """A copy of `net` that takes hints, its hint weights zero: with or without hints it computes
    exactly what `net` does (in the same train/eval mode) until it is trained with them."""
    from dataclasses import replace

    if net.takes_hints:
        raise ValueError("the network takes hints already")
    hinted = KeypointNet(replace(net.config, hint_channels=net.config.num_keypoints))
    missing, unexpected = hinted.load_state_dict(net.state_dict(), strict=False)
    assert not unexpected and all(".hint_" in k for k in missing), (missing, unexpected)
    return hinted.to(next(net.parameters()).device).train(net.training)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, input_size: int) -> int:
    """Forward FLOPs for one image (torch.utils.flop_counter: 2 FLOPs per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 3, input_size, input_size))
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


class EncoderWeightsError(Exception):
    """Encoder weights could not be loaded from the given file (the message says why)."""


def load_encoder_weights(model: KeypointNet, path: str | os.PathLike) -> list[str]:
    """Load ImageNet ResNet weights (a torchvision state dict file) into the encoder.

    Only tensors whose names and shapes match are loaded; returns the loaded names. Raises
    EncoderWeightsError when the file is unreadable or nothing fits (e.g. the seed widths,
    which no ImageNet ResNet has: use the torchvision-width variant for pretrained weights).
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise EncoderWeightsError(f"{path}: encoder weights file not found") from None
    except Exception as e:  # corrupt, truncated, or holding non-tensor objects
        raise EncoderWeightsError(f"{path}: not a loadable weights file ({type(e).__name__}: {e})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise EncoderWeightsError(f"{path}: expected a state dict, found {type(state).__name__}")
    own = model.encoder.state_dict()
    fitting = {}
    for name, tensor in state.items():
        key = name.removeprefix("module.").removeprefix("backbone.").removeprefix("encoder.")
        if key in own and isinstance(tensor, torch.Tensor) and tensor.shape == own[key].shape:
            fitting[key] = tensor
    # Scalar BatchNorm counters fit anything; only real weights show the file fits this encoder.
    if not any(t.ndim > 0 for t in fitting.values()):
        raise EncoderWeightsError(
            f"{path}: no tensor matches the encoder's names and shapes "
            "(ImageNet weights need the torchvision-width variant, --widths torchvision)"
        )
    model.encoder.load_state_dict(fitting, strict=False)
    missing = sorted(set(own) - set(fitting) - {k for k in own if k.endswith("num_batches_tracked")})
    log.info("loaded %d encoder tensors from %s (%d left at their initial values)", len(fitting), path, len(missing))
    return sorted(fitting)
