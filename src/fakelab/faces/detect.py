"""Face detection: dlib's HOG (default) or CNN detector, OpenCV's Haar cascade as a fallback."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from fakelab.errors import ConfigError
from fakelab.faces import models

DETECTORS = ("hog", "cnn", "haar")
# The smallest face (pixels) that the detectors find reliably: HOG's sliding window.
DETECTOR_WINDOW = 80


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in pixel coordinates (right and bottom exclusive)."""

    left: float
    top: float
    right: float
    bottom: float

    @classmethod
    def square(cls, centre_x: float, centre_y: float, side: float) -> Box:
        half = side / 2
        return cls(centre_x - half, centre_y - half, centre_x + half, centre_y + half)

    @property
    def width(self) -> float:
        return self.right - self.left

    @property
    def height(self) -> float:
        return self.bottom - self.top

    @property
    def centre(self) -> tuple[float, float]:
        return (self.left + self.right) / 2, (self.top + self.bottom) / 2

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    def scaled(self, factor: float) -> Box:
        """The box in an image resized by `factor`."""
        return Box(self.left * factor, self.top * factor, self.right * factor, self.bottom * factor)

    def shifted(self, dx: float, dy: float) -> Box:
        return Box(self.left + dx, self.top + dy, self.right + dx, self.bottom + dy)

    def iou(self, other: Box) -> float:
        inter = Box(
            max(self.left, other.left),
            max(self.top, other.top),
            min(self.right, other.right),
            min(self.bottom, other.bottom),
        ).area
        union = self.area + other.area - inter
        return inter / union if union > 0 else 0.0

    def contains(self, other: Box) -> bool:
        return (
            self.left <= other.left
            and self.top <= other.top
            and other.right <= self.right
            and other.bottom <= self.bottom
        )

    def as_list(self) -> list[float]:
        return [self.left, self.top, self.right, self.bottom]


def window_around(box: Box, frame_size: tuple[int, int], per_box: float) -> tuple[int, int, int, int] | None:
    """(left, top, right, bottom) pixels of a square `per_box` times `box` wide, centred on it and
    cut to a (width, height) frame; None when less than 2 pixels of it are inside."""
    width, height = frame_size
    centre_x, centre_y = box.centre
    window = Box.square(centre_x, centre_y, per_box * box.width)
    left, top = max(0, round(window.left)), max(0, round(window.top))
    right, bottom = min(width, round(window.right)), min(height, round(window.bottom))
    if right - left < 2 or bottom - top < 2:
        return None
    return left, top, right, bottom


@dataclass(frozen=True)
class Detection:
    box: Box
    score: float


def default_detector() -> str:
    return "hog" if models.dlib_available() else "haar"


def check_detector(name: str) -> str:
    if name not in DETECTORS:
        raise ConfigError(f"unknown face detector {name!r}; choose one of {', '.join(DETECTORS)}")
    return name


def detect_faces(
    image: np.ndarray, detector: str | None = None, min_face: float | None = None
) -> list[Detection]:
    """Faces in an HxWx3 uint8 RGB image, largest first.

    The image is resized so that a face of `min_face` pixels meets the detector's
    window: downscaling when faces are known to be large is what keeps this cheap.
    By default faces down to half the window are searched for.
    """
    detector = check_detector(detector or default_detector())
    scale = DETECTOR_WINDOW / (min_face or DETECTOR_WINDOW / 2)
    resized = resize_by(image, scale)
    found = _RUNNERS[detector](resized)
    found = [Detection(d.box.scaled(1 / scale), d.score) for d in found]
    return sorted(found, key=lambda d: (d.box.area, d.score), reverse=True)


def resize_by(image: np.ndarray, scale: float) -> np.ndarray:
    if abs(scale - 1) < 1e-3:
        return image
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interpolation)


def _from_dlib(rect) -> Box:
    return Box(rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1)


def _run_hog(image: np.ndarray) -> list[Detection]:
    rects, scores, _ = models.hog_detector().run(image, 0)
    return [Detection(_from_dlib(r), float(s)) for r, s in zip(rects, scores)]


def _run_cnn(image: np.ndarray) -> list[Detection]:
    return [
        Detection(_from_dlib(found.rect), float(found.confidence))
        for found in models.cnn_detector()(image, 0)
    ]


def _run_haar(image: np.ndarray) -> list[Detection]:
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    rects, _, weights = models.haar_detector().detectMultiScale3(
        gray, minSize=(DETECTOR_WINDOW // 2, DETECTOR_WINDOW // 2), outputRejectLevels=True
    )
    return [
        Detection(Box(float(x), float(y), float(x + w), float(y + h)), float(weight))
        for (x, y, w, h), weight in zip(rects, np.ravel(weights))
    ]


_RUNNERS = {"hog": _run_hog, "cnn": _run_cnn, "haar": _run_haar}
