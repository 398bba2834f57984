"""Piecewise-affine warps driven by facial landmarks.

The control points are the 68 landmarks, a few forehead points extrapolated from
them (so that the forehead and hair move with the head) and a fixed frame of
points along the image border (so that the image edges stay put). They are
triangulated once, on the undeformed points; each triangle is then mapped by its
own affine transform.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy.spatial import Delaunay

# Forehead points sit above these brow points, by this fraction of the chin-to-nose-bridge distance.
FOREHEAD_BROWS = (17, 19, 21, 22, 24, 26)
FOREHEAD_HEIGHT = 0.45
NOSE_BRIDGE, CHIN = 27, 8
BORDER_POINTS_PER_SIDE = 5
UPPER_INNER_LIP, LOWER_INNER_LIP = [61, 62, 63], [67, 66, 65]
INNER_LIPS = slice(60, 68)
# How far the inner lips are parted, as a fraction of the mouth's width, for triangulation.
PARTED_LIPS = 0.15


def border_frame(size: tuple[int, int], per_side: int = BORDER_POINTS_PER_SIDE) -> np.ndarray:
    """Points evenly spaced along the border of a (width, height) image, corners included."""
    width, height = size
    steps = np.linspace(0, 1, per_side + 1)[:-1]
    right, bottom = width - 1, height - 1
    top = [(s * right, 0) for s in steps]
    right_side = [(right, s * bottom) for s in steps]
    bottom_side = [(right - s * right, bottom) for s in steps]
    left_side = [(0, bottom - s * bottom) for s in steps]
    return np.array(top + right_side + bottom_side + left_side, dtype=np.float64)


def forehead_points(landmarks: np.ndarray) -> np.ndarray:
    up = landmarks[NOSE_BRIDGE] - landmarks[CHIN]
    return landmarks[list(FOREHEAD_BROWS)] + FOREHEAD_HEIGHT * up


def control_points(landmarks: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Landmarks, forehead points and the fixed border frame of a (width, height) image."""
    return np.concatenate([landmarks, forehead_points(landmarks), border_frame(size)])


def parted_lips(landmarks: np.ndarray) -> np.ndarray:
    """The landmarks with the inner lips pulled apart, as if the mouth were a little open.

    Triangulating these instead of a closed mouth's nearly collinear inner lips puts
    triangles across the mouth, which then open with it rather than folding.
    """
    parted = landmarks.copy()
    mouth_width = np.linalg.norm(landmarks[54] - landmarks[48])
    down = landmarks[CHIN] - landmarks[NOSE_BRIDGE]
    down = down / (np.linalg.norm(down) + 1e-9)
    parted[UPPER_INNER_LIP] -= PARTED_LIPS / 2 * mouth_width * down
    parted[LOWER_INNER_LIP] += PARTED_LIPS / 2 * mouth_width * down
    return parted


def mouth_opening(landmarks: np.ndarray) -> float:
    """Area of the polygon of the inner lips (pixels squared)."""
    x, y = landmarks[INNER_LIPS].T
    return 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))


class PiecewiseAffineWarp:
    """Warps an image so that its control points move to new positions.

    The triangulation is made once, from `layout` (by default the control points
    themselves): points in the same order, placed so that the triangles are sound.
    """

    def __init__(self, points: np.ndarray, size: tuple[int, int], layout: np.ndarray | None = None):
        self.points = np.asarray(points, dtype=np.float64)
        self.size = size
        self.triangles = Delaunay(self.points if layout is None else layout).simplices
        width, height = size
        self._grid_x, self._grid_y = np.meshgrid(
            np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)
        )

    def __call__(self, image: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """The image with each control point moved to its target position."""
        targets = np.asarray(targets, dtype=np.float64)
        labels = self._triangle_labels(targets)
        affines = self._inverse_affines(targets)  # target pixel -> image pixel, per triangle
        covered = labels >= 0
        chosen = affines[np.where(covered, labels, 0)]
        map_x = np.where(
            covered,
            chosen[..., 0, 0] * self._grid_x + chosen[..., 0, 1] * self._grid_y + chosen[..., 0, 2],
            self._grid_x,
        ).astype(np.float32)
        map_y = np.where(
            covered,
            chosen[..., 1, 0] * self._grid_x + chosen[..., 1, 1] * self._grid_y + chosen[..., 1, 2],
            self._grid_y,
        ).astype(np.float32)
        return cv2.remap(image, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def _triangle_labels(self, targets: np.ndarray) -> np.ndarray:
        """Index of the target triangle that covers each pixel, -1 where none does."""
        width, height = self.size
        labels = np.full((height, width), -1, dtype=np.int32)
        # Sub-pixel vertices (4 fractional bits) keep neighbouring triangles seamless.
        corners = np.round(targets[self.triangles] * 16).astype(np.int32)
        for index, triangle in enumerate(corners):
            cv2.fillConvexPoly(labels, triangle, int(index), lineType=cv2.LINE_8, shift=4)
        return labels

    def _inverse_affines(self, targets: np.ndarray) -> np.ndarray:
        """(K, 2, 3) affine maps from each target triangle to its source triangle."""
        target_corners = targets[self.triangles]  # (K, 3, 2)
        source_corners = self.points[self.triangles]
        homogeneous = np.concatenate([target_corners, np.ones((len(self.triangles), 3, 1))], axis=2)
        # Degenerate (zero-area) target triangles cover no pixel; lstsq keeps them harmless.
        solution = np.array(
            [np.linalg.lstsq(h, s, rcond=None)[0] for h, s in zip(homogeneous, source_corners)]
        )  # (K, 3, 2): [x y 1] @ solution = source
        return solution.transpose(0, 2, 1)
