"""Head pose (yaw, pitch, roll in degrees) from 68 facial landmarks, by solvePnP.

Six landmarks (nose tip, chin, the outer eye corners, the mouth corners) are matched to a
generic 3D face (millimetre-like units, x to the image's right, y down, z away from the
camera) seen by a pinhole camera whose focal length is the image width. A frontal face
gives about (0, 0, 0). Good to a few degrees: enough to sort frames by pose gap, not to
measure a person's pose.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

POSE_LANDMARKS = (30, 8, 36, 45, 48, 54)
GENERIC_FACE = np.array(
    [
        (0.0, 0.0, 0.0),  # nose tip
        (0.0, 330.0, 65.0),  # chin
        (-225.0, -170.0, 135.0),  # outer corner of the eye on the image's left
        (225.0, -170.0, 135.0),  # outer corner of the eye on the image's right
        (-150.0, 150.0, 125.0),  # mouth corners
        (150.0, 150.0, 125.0),
    ]
)


def head_pose(landmarks: np.ndarray, image_size: tuple[int, int]) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a face with these landmarks in a (width, height) image."""
    width, height = image_size
    camera = np.array([[width, 0, width / 2], [0, width, height / 2], [0, 0, 1]], dtype=np.float64)
    points = np.asarray(landmarks, dtype=np.float64)[list(POSE_LANDMARKS)]
    ok, rotation, _ = cv2.solvePnP(GENERIC_FACE, points, camera, np.zeros(4), flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        return (math.nan, math.nan, math.nan)
    matrix, _ = cv2.Rodrigues(rotation)
    yaw = math.degrees(math.asin(float(np.clip(-matrix[2, 0], -1, 1))))
    pitch = math.degrees(math.atan2(matrix[2, 1], matrix[2, 2]))
    roll = math.degrees(math.atan2(matrix[1, 0], matrix[0, 0]))
    return yaw, pitch, roll


def pose_gap(first: tuple[float, float, float], second: tuple[float, float, float]) -> float:
    """The yaw/pitch distance of two poses, in degrees (roll is an in-plane turn that 2D
    warps follow; yaw and pitch are what an image animation cannot invent)."""
    return math.hypot(first[0] - second[0], first[1] - second[1])
