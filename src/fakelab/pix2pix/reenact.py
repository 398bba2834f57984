"""Person-specific reenactment: the driving face's landmarks, drawn as a sketch, through the person's generator.

The generator is trained (`fakelab pix2pix train` on `pix2pix pairs --kind
landmarks`) to turn landmark sketches of one person's face crops into that
person. To drive it, the driving landmarks' motion relative to the first driving
frame, scaled to the person's face, moves the person's landmarks (the same
transfer as the landmark-warp model, FOMM's relative rule); the moved landmarks
are drawn and translated. The source image sets the person's layout: a face
crop like the training frames (`--crop auto` makes one from any photo or frame).
"""

from __future__ import annotations

import os
from typing import Iterable, Iterator

import numpy as np

from fakelab.animation.landmark_warp import LandmarkWarpAnimator
from fakelab.faces.landmarks import largest_face
from fakelab.pix2pix.predict import Translator
from fakelab.pix2pix.sketch import landmark_sketch


class LandmarksToFaceAnimator:
    """Implements the Animator protocol of fakelab.animation.api."""

    def __init__(
        self,
        checkpoint: str | os.PathLike,
        device: str = "cpu",
        adapt_scale: bool = True,
        relative: bool = True,
        detector: str | None = None,
    ):
        self.translator = Translator.load(checkpoint, device)
        self.size = (self.translator.size, self.translator.size)
        self.detector = detector
        self.motion = LandmarkWarpAnimator(self.size, adapt_scale, relative, detector)

    def animate(self, source: np.ndarray, driving: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        """One frame per driving frame; the source itself until the driving face is first found.

        Raises NoFaceError if the source has no face."""
        self.motion._check_frame(source, "the source image")
        landmarks = largest_face(source, "the source image", self.detector)
        return self._frames(source, landmarks, driving)

    def sketches(self, source_landmarks: np.ndarray, driving: Iterable[np.ndarray]) -> Iterator[np.ndarray | None]:
        """The sketch of the moved landmarks per driving frame (None before the first face)."""
        for target in self.motion.target_landmarks(source_landmarks, driving):
            yield None if target is None else landmark_sketch(target, self.translator.size)

    def _frames(self, source: np.ndarray, landmarks: np.ndarray, driving) -> Iterator[np.ndarray]:
        for sketch in self.sketches(landmarks, driving):
            yield source.copy() if sketch is None else self.translator(sketch)
