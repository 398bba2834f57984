"""Random affine + thin-plate-spline warps for the equivariance losses (FOMM Sec. 3.3).

A warp T maps coordinates of the warped image to coordinates of the original
one: the warped image at z shows the original at T(z). Keypoints that follow the
content therefore satisfy kp(original) = T(kp(warped)), and their Jacobians
J(original) = dT(kp(warped)) J(warped).

Coordinates are (x, y) in [-1, 1], pixel centres at the ends, as the keypoints
are (`fakelab.animation.fomm.keypoints.coordinate_grid`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fakelab.animation.fomm.keypoints import coordinate_grid
from fakelab.training.params import TransformParams

# Keeps log() finite at the control points, as the reference does.
LOG_EPSILON = 1e-6


class RandomWarp:
    """One random warp per batch element: identity + Gaussian affine noise + a TPS bump field.

    The TPS radial basis uses the L1 distance to each control point, U(r) = r^2 log r,
    and adds the same displacement to x and y, as in the reference.
    """

    def __init__(self, batch: int, params: TransformParams, generator: torch.Generator | None = None):
        noise = torch.randn(batch, 2, 3, generator=generator) * params.sigma_affine
        self.theta = noise + torch.eye(2, 3).unsqueeze(0)
        points = params.points_tps
        self.control_points = coordinate_grid(points, points, self.theta).view(-1, 2)
        self.control_weights = torch.randn(batch, points * points, generator=generator) * params.sigma_tps

    def to(self, device: torch.device) -> RandomWarp:
        self.theta = self.theta.to(device)
        self.control_points = self.control_points.to(device)
        self.control_weights = self.control_weights.to(device)
        return self

    def _offsets(self, coordinates: torch.Tensor) -> torch.Tensor:
        """(B, N, P, 2): coordinates minus each control point."""
        return coordinates.unsqueeze(2) - self.control_points.to(coordinates.dtype).view(1, 1, -1, 2)

    def __call__(self, coordinates: torch.Tensor) -> torch.Tensor:
        """Warp (B, N, 2) coordinates."""
        theta = self.theta.to(coordinates.dtype)
        warped = coordinates @ theta[:, :, :2].transpose(1, 2) + theta[:, :, 2].unsqueeze(1)
        distances = self._offsets(coordinates).abs().sum(-1)
        bumps = distances**2 * torch.log(distances + LOG_EPSILON)
        displacement = (bumps * self.control_weights.to(coordinates.dtype).unsqueeze(1)).sum(-1, keepdim=True)
        return warped + displacement

    def jacobian(self, coordinates: torch.Tensor) -> torch.Tensor:
        """(B, N, 2, 2) derivatives of the warp at (B, N, 2) coordinates, rows = output x, y."""
        theta = self.theta.to(coordinates.dtype)
        offsets = self._offsets(coordinates)
        distances = offsets.abs().sum(-1, keepdim=True)
        # d/dr (r^2 log(r + eps)) times d r / d(x, y) = sign of each offset.
        slope = 2 * distances * torch.log(distances + LOG_EPSILON) + distances**2 / (distances + LOG_EPSILON)
        weights = self.control_weights.to(coordinates.dtype).view(*self.control_weights.shape, 1)
        gradient = (slope * torch.sign(offsets) * weights.unsqueeze(1)).sum(2)  # (B, N, 2)
        return theta[:, :, :2].unsqueeze(1) + gradient.unsqueeze(2)

    def warp_images(self, images: torch.Tensor) -> torch.Tensor:
        """The warped images: each output pixel z samples the input at T(z), reflecting at the borders."""
        batch, _, height, width = images.shape
        grid = coordinate_grid(height, width, images).view(1, -1, 2).expand(batch, -1, -1)
        sample_at = self(grid).view(batch, height, width, 2)
        return F.grid_sample(images, sample_at, padding_mode="reflection", align_corners=True)
