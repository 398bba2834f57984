"""Keypoints and the coordinate conventions shared by every FOMM module."""

from __future__ import annotations

from typing import NamedTuple

import torch


class Keypoints(NamedTuple):
    """Keypoint positions (B,K,2) as (x, y) in [-1, 1], and optional local Jacobians (B,K,2,2).

    `jacobian` is None for the zeroth-order (Monkey-Net style) model.
    """

    value: torch.Tensor
    jacobian: torch.Tensor | None = None

    def detach(self) -> Keypoints:
        return Keypoints(self.value.detach(), None if self.jacobian is None else self.jacobian.detach())


def coordinate_grid(height: int, width: int, like: torch.Tensor) -> torch.Tensor:
    """(H, W, 2) grid of (x, y) pixel-centre coordinates spanning [-1, 1] corner to corner."""
    xs = 2 * (torch.arange(width, dtype=like.dtype, device=like.device) / (width - 1)) - 1
    ys = 2 * (torch.arange(height, dtype=like.dtype, device=like.device) / (height - 1)) - 1
    return torch.stack(
        [xs.view(1, width).expand(height, width), ys.view(height, 1).expand(height, width)], dim=-1
    )


def keypoint_gaussians(kp_value: torch.Tensor, height: int, width: int, variance: float) -> torch.Tensor:
    """(B, K, H, W) unnormalised Gaussians centred on each keypoint."""
    grid = coordinate_grid(height, width, kp_value)
    offsets = grid.view(1, 1, height, width, 2) - kp_value.view(*kp_value.shape[:2], 1, 1, 2)
    return torch.exp(-0.5 * (offsets**2).sum(-1) / variance)
