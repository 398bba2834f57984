"""Multi-scale patch discriminator (pix2pix style) used by the -adv configs."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fakelab.animation.fomm.keypoints import Keypoints, keypoint_gaussians


class DiscriminatorBlock(nn.Module):
    def __init__(self, in_features: int, out_features: int, norm: bool, pool: bool, sn: bool):
        super().__init__()
        conv = nn.Conv2d(in_features, out_features, kernel_size=4)
        self.conv = nn.utils.spectral_norm(conv) if sn else conv
        self.norm = nn.InstanceNorm2d(out_features, affine=True) if norm else None
        self.pool = pool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        if self.norm is not None:
            out = self.norm(out)
        out = F.leaky_relu(out, 0.2)
        return F.avg_pool2d(out, (2, 2)) if self.pool else out


class Discriminator(nn.Module):
    def __init__(
        self,
        num_channels: int = 3,
        block_expansion: int = 64,
        num_blocks: int = 4,
        max_features: int = 512,
        sn: bool = False,
        use_kp: bool = False,
        num_kp: int = 10,
        kp_variance: float = 0.01,
        **_ignored,
    ):
        super().__init__()

        def width(level: int) -> int:
            return min(max_features, block_expansion * (2**level))

        in_channels = num_channels + num_kp * use_kp
        self.down_blocks = nn.ModuleList(
            DiscriminatorBlock(
                in_channels if i == 0 else width(i), width(i + 1), norm=i != 0, pool=i != num_blocks - 1, sn=sn
            )
            for i in range(num_blocks)
        )
        conv = nn.Conv2d(width(num_blocks), 1, kernel_size=1)
        self.conv = nn.utils.spectral_norm(conv) if sn else conv
        self.use_kp = use_kp
        self.kp_variance = kp_variance

    def forward(self, x: torch.Tensor, kp: Keypoints | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
        out = x
        if self.use_kp:
            heatmaps = keypoint_gaussians(kp.value, *x.shape[2:], self.kp_variance)
            out = torch.cat([out, heatmaps], dim=1)
        feature_maps = []
        for block in self.down_blocks:
            out = block(out)
            feature_maps.append(out)
        return feature_maps, self.conv(out)


class MultiScaleDiscriminator(nn.Module):
    """One discriminator per image scale; inputs are keyed `prediction_<scale>`."""

    def __init__(self, scales=(), **kwargs):
        super().__init__()
        self.scales = scales
        self.discs = nn.ModuleDict({str(scale).replace(".", "-"): Discriminator(**kwargs) for scale in scales})

    def forward(self, pyramid: dict, kp: Keypoints | None = None) -> dict:
        out = {}
        for key, disc in self.discs.items():
            scale = key.replace("-", ".")
            feature_maps, prediction_map = disc(pyramid[f"prediction_{scale}"], kp)
            out[f"feature_maps_{scale}"] = feature_maps
            out[f"prediction_map_{scale}"] = prediction_map
        return out
