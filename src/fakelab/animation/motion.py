"""Motion transfer: turn driving keypoints into keypoints for the source.

Relative mode moves the source keypoints by the driving keypoints' displacement
from an initial driving frame (optionally scaled by the ratio of the keypoint
hulls' sizes); absolute mode uses the driving keypoints as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import ConvexHull, QhullError

from fakelab.animation.fomm import Keypoints


@dataclass(frozen=True)
class MotionTransfer:
    relative: bool = True
    adapt_scale: bool = True
    relative_jacobian: bool = True


def hull_area(points: torch.Tensor) -> float:
    """Area of the convex hull of (K, 2) points; 0 when they are (nearly) collinear."""
    try:
        return float(ConvexHull(points.detach().cpu().double().numpy()).volume)
    except QhullError:
        return 0.0


def movement_scale(kp_source: Keypoints, kp_initial: Keypoints) -> float:
    """sqrt(source hull area / initial driving hull area): makes motion proportional to the face size."""
    driving_area = hull_area(kp_initial.value[0])
    if driving_area == 0.0:
        return 1.0
    return float(np.sqrt(hull_area(kp_source.value[0])) / np.sqrt(driving_area))


class KeypointTransfer:
    """Maps each batch of driving keypoints to source keypoints, with the per-animation constants fixed."""

    def __init__(
        self,
        mode: MotionTransfer,
        kp_source: Keypoints,
        kp_initial: Keypoints | None,
        scale: float | torch.Tensor | None = None,
        initial_inverse: torch.Tensor | None = None,
    ):
        """`scale` and `initial_inverse` are computed unless given (an exported per-frame
        graph takes them as inputs, so that one export serves every source)."""
        self.mode = mode
        self.kp_source = kp_source
        self.kp_initial = kp_initial
        if scale is None:
            scale = movement_scale(kp_source, kp_initial) if mode.relative and mode.adapt_scale else 1.0
        self.scale = scale
        if self.uses_initial_jacobian:
            self.initial_inverse = torch.inverse(kp_initial.jacobian) if initial_inverse is None else initial_inverse

    @property
    def uses_initial_jacobian(self) -> bool:
        return self.mode.relative and self.mode.relative_jacobian and self.kp_source.jacobian is not None

    def __call__(self, kp_driving: Keypoints) -> Keypoints:
        if not self.mode.relative:
            return kp_driving
        value = (kp_driving.value - self.kp_initial.value) * self.scale + self.kp_source.value
        jacobian = kp_driving.jacobian
        if self.mode.relative_jacobian and jacobian is not None:
            jacobian = torch.matmul(torch.matmul(jacobian, self.initial_inverse), self.kp_source.jacobian)
        return Keypoints(value, jacobian)
