"""A classical, training-free animation model: landmark motion transfer plus a piecewise-affine warp.

The driving face's landmarks are followed frame by frame; their motion relative
to the first driving frame, scaled to the source face, moves the source's
landmarks; the source image is warped so that its landmarks land there. It needs
no weights beyond dlib's, and is the baseline row of evaluation tables. It
cannot show what the source does not: an opening mouth stretches the lips,
and turning heads only bend the face in the image plane.
"""

from __future__ import annotations

from typing import Iterable, Iterator

import cv2
import numpy as np
from scipy.spatial import ConvexHull

from fakelab.errors import InputError
from fakelab.faces.landmarks import largest_face
from fakelab.faces.tracking import FaceTracker, TrackedFace
from fakelab.faces.warp import (
    INNER_LIPS,
    PiecewiseAffineWarp,
    control_points,
    mouth_opening,
    parted_lips,
)

OUTER_LIPS = slice(48, 60)
# The inside of an opening mouth is painted in the lips' median colour times this.
MOUTH_SHADE = 0.3


def transfer_motion(
    source: np.ndarray,
    driving: np.ndarray,
    initial: np.ndarray,
    adapt_scale: bool = True,
    relative: bool = True,
) -> np.ndarray:
    """Where the source landmarks go for one driving frame (FOMM's rule, on landmarks).

    Relative: the source plus the driving landmarks' displacement from the initial
    driving frame, scaled by sqrt(hull area of source / hull area of initial) when
    `adapt_scale`. Absolute: the driving landmarks themselves.
    """
    if not relative:
        return driving.copy()
    scale = np.sqrt(ConvexHull(source).volume / ConvexHull(initial).volume) if adapt_scale else 1.0
    return source + (driving - initial) * scale


class LandmarkWarper:
    """Renders one face image with its landmarks moved anywhere."""

    def __init__(self, image: np.ndarray, landmarks: np.ndarray):
        self.image = image
        self.landmarks = landmarks
        self.size = (image.shape[1], image.shape[0])
        self._warp = PiecewiseAffineWarp(
            control_points(landmarks, self.size),
            self.size,
            layout=control_points(parted_lips(landmarks), self.size),
        )
        self._shade = MOUTH_SHADE * _lip_colour(image, landmarks)
        self._opening = mouth_opening(landmarks)

    def __call__(self, targets: np.ndarray) -> np.ndarray:
        """The image warped so that its landmarks land on `targets` (68 x 2)."""
        frame = self._warp(self.image, control_points(targets, self.size))
        return _paint_mouth(frame, targets, self._opening, self._shade)


class LandmarkWarpAnimator:
    """Implements the Animator protocol of fakelab.animation.api."""

    def __init__(
        self,
        size: tuple[int, int] = (256, 256),
        adapt_scale: bool = True,
        relative: bool = True,
        detector: str | None = None,
    ):
        self.size = tuple(size)
        self.adapt_scale = adapt_scale
        self.relative = relative
        self.detector = detector

    def animate(self, source: np.ndarray, driving: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """One output frame per driving frame, lazily.

        Raises NoFaceError if the source has no face. Driving frames where no face is
        found keep the last landmarks; frames before the first face show the source.
        The first driving frame with a face is the initial frame of relative motion.
        """
        self._check_frame(source, "the source image")
        warper = LandmarkWarper(source, largest_face(source, "the source image", self.detector))
        return self._frames(warper, driving)

    def target_landmarks(
        self, source_landmarks: np.ndarray, driving: Iterable[np.ndarray]
    ) -> Iterator[np.ndarray | None]:
        """Per driving frame, where the source landmarks go (None before the first face)."""
        tracker = FaceTracker(self.detector)
        followed: int | None = None
        initial = target = None
        for frame in driving:
            self._check_frame(frame, "a driving frame")
            face = _same_face(tracker.update(frame), followed)
            if face is not None:
                followed = face.track_id
                initial = face.landmarks if initial is None else initial
                target = transfer_motion(
                    source_landmarks, face.landmarks, initial, self.adapt_scale, self.relative
                )
            yield target

    def _frames(self, warper: LandmarkWarper, driving) -> Iterator[np.ndarray]:
        for target in self.target_landmarks(warper.landmarks, driving):
            yield warper.image.copy() if target is None else warper(target)

    def _check_frame(self, frame: np.ndarray, what: str) -> None:
        width, height = self.size
        if frame.shape != (height, width, 3) or frame.dtype != np.uint8:
            raise InputError(
                f"{what} must be a {height}x{width}x3 uint8 RGB array, got "
                f"{'x'.join(map(str, frame.shape))} {frame.dtype}"
            )


def _lip_colour(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    mask = np.zeros(image.shape[:2], dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(landmarks[OUTER_LIPS]).astype(np.int32)], 1)
    lips = image[mask > 0]
    return np.median(lips, axis=0) if len(lips) else np.zeros(3)


def _paint_mouth(
    frame: np.ndarray, target: np.ndarray, source_opening: float, shade: np.ndarray
) -> np.ndarray:
    """Darken the inside of the mouth where it is more open than the source's.

    Warping can only stretch the source's lips over an opening mouth; a dark
    interior, as opaque as the opening is new, reads as an open mouth instead.
    """
    opening = mouth_opening(target)
    if opening <= source_opening:
        return frame
    mask = np.zeros(frame.shape[:2], dtype=np.float32)
    cv2.fillPoly(mask, [np.round(target[INNER_LIPS] * 16).astype(np.int32)], 1.0, cv2.LINE_AA, 4)
    alpha = (1 - source_opening / opening) * cv2.GaussianBlur(mask, (0, 0), 1.0)[..., None]
    return np.round(frame * (1 - alpha) + shade * alpha).astype(np.uint8)


def _same_face(faces: list[TrackedFace], followed: int | None) -> TrackedFace | None:
    """The face followed so far if it is still there, else the largest one."""
    for face in faces:
        if face.track_id == followed:
            return face
    return max(faces, key=lambda face: face.box.area, default=None)
