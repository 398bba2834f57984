"""Detector architectures by name, and telling them apart from a state_dict."""

from __future__ import annotations

from typing import Callable, Mapping

import torch

from fakelab.detection.efficientnet import efficientnet_b4, efficientnet_b4_att, efficientnet_lite0
from fakelab.detection.inception import InceptionV3Detector
from fakelab.detection.spec import DeepfakeDetector
from fakelab.detection.xception import XceptionDetector
from fakelab.errors import ConfigError

ARCHITECTURES: dict[str, Callable[[], DeepfakeDetector]] = {
    "xception": XceptionDetector,
    "efficientnet-b4": efficientnet_b4,
    "efficientnet-b4-att": efficientnet_b4_att,
    "efficientnet-lite0": efficientnet_lite0,
    "inception-v3": InceptionV3Detector,
}

# Output channels of `_conv_head`, which tell the EfficientNet sizes apart.
_HEAD_CHANNELS = {1792: "efficientnet-b4", 1280: "efficientnet-lite0"}


def build_detector(arch: str) -> DeepfakeDetector:
    """A detector with freshly initialised weights."""
    if arch not in ARCHITECTURES:
        raise ConfigError(f"unknown detector architecture {arch!r}; known: {', '.join(ARCHITECTURES)}")
    return ARCHITECTURES[arch]()


def guess_architecture(state: Mapping[str, torch.Tensor]) -> str | None:
    """The architecture whose key layout `state` has, or None when it looks like none of them."""
    if "model.block1.rep.0.conv1.weight" in state:
        return "xception"
    if "Mixed_7c.branch_pool.conv.weight" in state:
        return "inception-v3"
    if "efficientnet.attconv.weight" in state:
        return "efficientnet-b4-att"
    head = state.get("efficientnet._conv_head.weight")
    return None if head is None else _HEAD_CHANNELS.get(head.shape[0])
