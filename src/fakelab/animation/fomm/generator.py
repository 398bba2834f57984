"""Occlusion-aware generator: encodes the source, warps its features by the dense motion, decodes."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fakelab.animation.fomm.blocks import DownBlock2d, ResBlock2d, SameBlock2d, UpBlock2d
from fakelab.animation.fomm.dense_motion import DenseMotionNetwork, MotionSource
from fakelab.animation.fomm.keypoints import Keypoints


@dataclass
class PreparedSource:
    """Everything the generator derives from the source image alone.

    Animating many driving frames from one source computes this once.
    """

    image: torch.Tensor
    features: torch.Tensor
    motion: MotionSource | None


def _resize_like(tensor: torch.Tensor, height: int, width: int) -> torch.Tensor:
    if tensor.shape[2:] == (height, width):
        return tensor
    return F.interpolate(tensor, size=(height, width), mode="bilinear", align_corners=False)


def warp(image: torch.Tensor, deformation: torch.Tensor) -> torch.Tensor:
    """Sample `image` (B,C,H,W) at `deformation` (B,h,w,2), resizing the flow to H,W first."""
    height, width = image.shape[2:]
    flow = _resize_like(deformation.permute(0, 3, 1, 2), height, width).permute(0, 2, 3, 1)
    if image.shape[0] != flow.shape[0]:
        image = image.expand(flow.shape[0], *image.shape[1:])
    return F.grid_sample(image, flow, align_corners=False)


class OcclusionAwareGenerator(nn.Module):
    def __init__(
        self,
        num_channels: int,
        num_kp: int,
        block_expansion: int,
        max_features: int,
        num_down_blocks: int,
        num_bottleneck_blocks: int,
        estimate_occlusion_map: bool = False,
        dense_motion_params: dict | None = None,
        estimate_jacobian: bool = False,
    ):
        super().__init__()
        self.dense_motion_network = (
            DenseMotionNetwork(
                num_kp=num_kp,
                num_channels=num_channels,
                estimate_occlusion_map=estimate_occlusion_map,
                **dense_motion_params,
            )
            if dense_motion_params is not None
            else None
        )
        self.first = SameBlock2d(num_channels, block_expansion, kernel_size=(7, 7), padding=(3, 3))

        def width(level: int) -> int:
            return min(max_features, block_expansion * (2**level))

        self.down_blocks = nn.ModuleList(
            DownBlock2d(width(i), width(i + 1), kernel_size=(3, 3), padding=(1, 1)) for i in range(num_down_blocks)
        )
        self.up_blocks = nn.ModuleList(
            UpBlock2d(width(num_down_blocks - i), width(num_down_blocks - i - 1), kernel_size=(3, 3), padding=(1, 1))
            for i in range(num_down_blocks)
        )
        self.bottleneck = nn.Sequential()
        for i in range(num_bottleneck_blocks):
            self.bottleneck.add_module(f"r{i}", ResBlock2d(width(num_down_blocks), kernel_size=(3, 3), padding=(1, 1)))
        self.final = nn.Conv2d(block_expansion, num_channels, kernel_size=(7, 7), padding=(3, 3))
        self.num_channels = num_channels

    def prepare(self, source_image: torch.Tensor, kp_source: Keypoints) -> PreparedSource:
        features = self.first(source_image)
        for block in self.down_blocks:
            features = block(features)
        motion = (
            self.dense_motion_network.prepare(source_image, kp_source)
            if self.dense_motion_network is not None
            else None
        )
        return PreparedSource(source_image, features, motion)

    def forward(self, source_image: torch.Tensor, kp_driving: Keypoints, kp_source: Keypoints) -> dict:
        return self.render(self.prepare(source_image, kp_source), kp_driving)

    def render(self, source: PreparedSource, kp_driving: Keypoints, with_deformed: bool = True) -> dict:
        """Animate a prepared source to a batch of driving keypoints.

        `with_deformed` adds the source image warped by the dense motion, which only
        visualisation and tests need.
        """
        out: dict = {}
        features = source.features
        if self.dense_motion_network is not None:
            motion = self.dense_motion_network.forward_prepared(source.motion, kp_driving)
            out.update(motion)
            features = warp(features, motion["deformation"])
            if "occlusion_map" in motion:
                features = features * _resize_like(motion["occlusion_map"], *features.shape[2:])
            if with_deformed:
                out["deformed"] = warp(source.image, motion["deformation"])
        features = self.bottleneck(features)
        for block in self.up_blocks:
            features = block(features)
        out["prediction"] = torch.sigmoid(self.final(features))
        return out
