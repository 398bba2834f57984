"""Xception (Chollet 2017) with the FaceForensics++ detector head.

Module names follow the widely used PyTorch port, so the state_dict of `XceptionDetector`
has exactly the keys of the FaceForensics++ release (`model.conv1.weight`, ...,
`model.last_linear.1.bias`). Class 1 of the two logits is "fake".
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fakelab.detection.spec import DeepfakeDetector, InputSpec

FFPP_INPUT = InputSpec(size=299, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))


class SeparableConv2d(nn.Module):
    """Depthwise 3x3 convolution (`conv1`) followed by a pointwise 1x1 one."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, in_channels, 3, padding=1, groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pointwise(self.conv1(x))


class Block(nn.Module):
    """`reps` (ReLU, separable conv, batch norm) units, an optional strided max-pool, and a
    residual shortcut (a strided 1x1 conv + BN when the shape changes).

    `rep` keeps the port's Sequential numbering: ReLUs and the pool take indices too.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        reps: int,
        stride: int = 1,
        start_with_relu: bool = True,
        grow_first: bool = True,
    ):
        super().__init__()
        if out_channels != in_channels or stride != 1:
            self.skip = nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False)
            self.skipbn = nn.BatchNorm2d(out_channels)
        else:
            self.skip = None
        layers: list[nn.Module] = []
        for unit_in, unit_out in _unit_channels(in_channels, out_channels, reps, grow_first):
            layers += [nn.ReLU(), SeparableConv2d(unit_in, unit_out), nn.BatchNorm2d(unit_out)]
        if not start_with_relu:
            layers = layers[1:]
        if stride != 1:
            layers.append(nn.MaxPool2d(3, stride, 1))
        self.rep = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.skip is None else self.skipbn(self.skip(x))
        return self.rep(x) + shortcut


def _unit_channels(in_channels: int, out_channels: int, reps: int, grow_first: bool) -> list[tuple[int, int]]:
    """(in, out) channels of each separable conv; the width changes at the first or the last."""
    if grow_first:
        return [(in_channels, out_channels)] + [(out_channels, out_channels)] * (reps - 1)
    return [(in_channels, in_channels)] * (reps - 1) + [(in_channels, out_channels)]


# (in, out, reps, stride, start_with_relu, grow_first) of block1 .. block12
_BLOCKS = (
    (64, 128, 2, 2, False, True),
    (128, 256, 2, 2, True, True),
    (256, 728, 2, 2, True, True),
    *[(728, 728, 3, 1, True, True)] * 8,
    (728, 1024, 2, 2, True, False),
)


class Xception(nn.Module):
    """The Xception network with `last_linear = Sequential(Dropout, Linear(2048, classes))`."""

    def __init__(self, num_classes: int = 2, dropout: float = 0.5):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, stride=2, bias=False)
        self.bn1 = nn.BatchNorm2d(32)
        self.conv2 = nn.Conv2d(32, 64, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        for index, block_args in enumerate(_BLOCKS, start=1):
            self.add_module(f"block{index}", Block(*block_args))
        self.conv3 = SeparableConv2d(1024, 1536)
        self.bn3 = nn.BatchNorm2d(1536)
        self.conv4 = SeparableConv2d(1536, 2048)
        self.bn4 = nn.BatchNorm2d(2048)
        self.last_linear = nn.Sequential(nn.Dropout(dropout), nn.Linear(2048, num_classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised images -> the 2048-channel map before the final ReLU."""
        x = F.relu(self.bn1(self.conv1(x)))
        x = F.relu(self.bn2(self.conv2(x)))
        for index in range(1, len(_BLOCKS) + 1):
            x = getattr(self, f"block{index}")(x)
        x = F.relu(self.bn3(self.conv3(x)))
        return self.bn4(self.conv4(x))

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(F.relu(self.features(x)), 1).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.last_linear(self.pooled(x))


class XceptionDetector(DeepfakeDetector):
    """The FaceForensics++ detector: Xception held as `model`, two logits, class 1 = fake."""

    arch = "xception"
    input_spec = FFPP_INPUT

    def __init__(self):
        super().__init__()
        self.model = Xception(num_classes=2, dropout=0.5)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, 299, 299) normalised images -> (N, 2) logits [real, fake]."""
        return self.model(images)

    def fake_logit(self, images: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(images))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.pooled(images)

    def classify(self, embedding: torch.Tensor) -> torch.Tensor:
        logits = self.model.last_linear(embedding)
        # softmax(l)[1] == sigmoid(l[1] - l[0]), so this difference is the fake log-odds.
        return logits[:, 1] - logits[:, 0]

    def cam_layer(self) -> nn.Module:
        return self.model.bn4
