"""Conditioning images for face pix2pix: landmark sketches and edge maps."""

from __future__ import annotations

import cv2
import numpy as np

# The 68 iBUG-300W points as polylines, each in its own colour (RGB), so that the
# generator can tell a brow from a lip: (first, last, closed, colour).
FACE_PARTS = (
    (0, 17, False, (255, 255, 255)),  # jaw
    (17, 22, False, (255, 128, 0)),  # right brow (image left)
    (22, 27, False, (255, 128, 0)),  # left brow
    (27, 31, False, (0, 128, 255)),  # nose bridge
    (30, 36, False, (0, 128, 255)),  # nose base, from the tip
    (36, 42, True, (0, 255, 0)),  # right eye
    (42, 48, True, (0, 255, 0)),  # left eye
    (48, 60, True, (255, 0, 0)),  # outer lips
    (60, 68, True, (255, 0, 255)),  # inner lips
)
SHIFT = 4  # sub-pixel bits for cv2's anti-aliased lines


def landmark_sketch(landmarks: np.ndarray, size: int) -> np.ndarray:
    """The 68 landmarks (in pixels of a size x size image) drawn as coloured polylines on black."""
    landmarks = np.asarray(landmarks, dtype=np.float64)
    if landmarks.shape != (68, 2):
        raise ValueError(f"landmarks must be 68 x 2, got {landmarks.shape}")
    canvas = np.zeros((size, size, 3), dtype=np.uint8)
    thickness = max(1, round(size / 128))
    points = np.round(landmarks * (1 << SHIFT)).astype(np.int32)
    for first, last, closed, colour in FACE_PARTS:
        cv2.polylines(canvas, [points[first:last]], closed, colour, thickness, cv2.LINE_AA, SHIFT)
    return canvas


def edge_sketch(image: np.ndarray, low: int = 50, high: int = 150) -> np.ndarray:
    """Canny edges of an RGB image (white on black, 3 channels), after a light blur against noise."""
    grey = cv2.GaussianBlur(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), (0, 0), max(0.5, image.shape[0] / 256))
    edges = cv2.Canny(grey, low, high)
    return np.repeat(edges[:, :, None], 3, axis=2)
