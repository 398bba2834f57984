"""Dense motion network: blends per-keypoint affine motions into one flow with an occlusion map."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fakelab.animation.fomm.blocks import AntiAliasInterpolation2d, Hourglass
from fakelab.animation.fomm.keypoints import Keypoints, coordinate_grid, keypoint_gaussians


@dataclass
class MotionSource:
    """What the dense motion network needs from the source alone, computed once per source."""

    image: torch.Tensor  # (B, C, h, w) source at the motion network's resolution
    kp: Keypoints
    gaussians: torch.Tensor  # (B, K, h, w)
    grid: torch.Tensor  # (h, w, 2) identity sampling grid


def inverse_2x2(matrices: torch.Tensor) -> torch.Tensor:
    """torch.inverse, or the closed form while exporting to ONNX, which has no matrix inverse."""
    if not torch.onnx.is_in_onnx_export():
        return torch.inverse(matrices)
    a, b, c, d = matrices[..., 0, 0], matrices[..., 0, 1], matrices[..., 1, 0], matrices[..., 1, 1]
    adjugate = torch.stack([torch.stack([d, -b], -1), torch.stack([-c, a], -1)], -2)
    return adjugate / (a * d - b * c)[..., None, None]


def _expand_batch(tensor: torch.Tensor, batch: int) -> torch.Tensor:
    return tensor if tensor.shape[0] == batch else tensor.expand(batch, *tensor.shape[1:])


class DenseMotionNetwork(nn.Module):
    def __init__(
        self,
        block_expansion: int,
        num_blocks: int,
        max_features: int,
        num_kp: int,
        num_channels: int,
        estimate_occlusion_map: bool = False,
        scale_factor: float = 1,
        kp_variance: float = 0.01,
    ):
        super().__init__()
        self.hourglass = Hourglass(block_expansion, (num_kp + 1) * (num_channels + 1), num_blocks, max_features)
        self.mask = nn.Conv2d(self.hourglass.out_filters, num_kp + 1, kernel_size=(7, 7), padding=(3, 3))
        self.occlusion = (
            nn.Conv2d(self.hourglass.out_filters, 1, kernel_size=(7, 7), padding=(3, 3))
            if estimate_occlusion_map
            else None
        )
        self.num_kp = num_kp
        self.scale_factor = scale_factor
        self.kp_variance = kp_variance
        if scale_factor != 1:
            self.down = AntiAliasInterpolation2d(num_channels, scale_factor)

    def prepare(self, source_image: torch.Tensor, kp_source: Keypoints) -> MotionSource:
        image = self.down(source_image) if self.scale_factor != 1 else source_image
        height, width = image.shape[2:]
        return MotionSource(
            image=image,
            kp=kp_source,
            gaussians=keypoint_gaussians(kp_source.value, height, width, self.kp_variance),
            grid=coordinate_grid(height, width, image),
        )

    def forward(self, source_image: torch.Tensor, kp_driving: Keypoints, kp_source: Keypoints) -> dict:
        return self.forward_prepared(self.prepare(source_image, kp_source), kp_driving)

    def forward_prepared(self, source: MotionSource, kp_driving: Keypoints) -> dict:
        """Motion for a batch of driving keypoints; a single source broadcasts over the batch."""
        batch = kp_driving.value.shape[0]
        channels, height, width = source.image.shape[1:]
        heatmaps = self._heatmap_differences(source, kp_driving)
        sparse_motions = self._sparse_motions(source, kp_driving)
        sparse_deformed = self._deform_per_keypoint(source.image, sparse_motions)
        hourglass_input = torch.cat([heatmaps.unsqueeze(2), sparse_deformed], dim=2)
        prediction = self.hourglass(hourglass_input.view(batch, -1, height, width))

        mask = F.softmax(self.mask(prediction), dim=1)
        deformation = (sparse_motions.permute(0, 1, 4, 2, 3) * mask.unsqueeze(2)).sum(dim=1)
        out = {
            "sparse_deformed": sparse_deformed,
            "mask": mask,
            "deformation": deformation.permute(0, 2, 3, 1),
        }
        if self.occlusion is not None:
            out["occlusion_map"] = torch.sigmoid(self.occlusion(prediction))
        return out

    def _heatmap_differences(self, source: MotionSource, kp_driving: Keypoints) -> torch.Tensor:
        """(B, K+1, h, w): driving minus source Gaussians, with a zero background channel first."""
        height, width = source.gaussians.shape[2:]
        driving = keypoint_gaussians(kp_driving.value, height, width, self.kp_variance)
        differences = driving - source.gaussians
        background = differences.new_zeros(differences.shape[0], 1, height, width)
        return torch.cat([background, differences], dim=1)

    def _sparse_motions(self, source: MotionSource, kp_driving: Keypoints) -> torch.Tensor:
        """(B, K+1, h, w, 2): for each keypoint, where each driving pixel comes from in the source.

        First-order Taylor expansion around the keypoints:
        z -> kp_source + J_source J_driving^-1 (z - kp_driving); identity for the background.
        """
        batch = kp_driving.value.shape[0]
        height, width = source.grid.shape[:2]
        grid = source.grid.view(1, 1, height, width, 2)
        offsets = grid - kp_driving.value.view(batch, self.num_kp, 1, 1, 2)
        if kp_driving.jacobian is not None:
            jacobian = torch.matmul(source.kp.jacobian, inverse_2x2(kp_driving.jacobian))
            offsets = torch.matmul(jacobian.view(-1, self.num_kp, 1, 1, 2, 2), offsets.unsqueeze(-1)).squeeze(-1)
        kp_source_value = source.kp.value.view(-1, self.num_kp, 1, 1, 2)
        driving_to_source = offsets + kp_source_value
        identity = grid.expand(batch, 1, height, width, 2)
        return torch.cat([identity, driving_to_source], dim=1)

    def _deform_per_keypoint(self, image: torch.Tensor, sparse_motions: torch.Tensor) -> torch.Tensor:
        """(B, K+1, C, h, w): the source warped by each sparse motion."""
        batch, num_motions, height, width, _ = sparse_motions.shape
        channels = image.shape[1]
        repeated = _expand_batch(image, batch).unsqueeze(1).expand(batch, num_motions, channels, height, width)
        warped = F.grid_sample(
            repeated.reshape(batch * num_motions, channels, height, width),
            sparse_motions.reshape(batch * num_motions, height, width, 2),
            align_corners=False,
        )
        return warped.view(batch, num_motions, channels, height, width)
