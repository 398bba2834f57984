"""Facial landmarks and identity embeddings of evaluation frames (dlib, via `fakelab.faces`).

The reference protocol scores frames at 256x256, so every frame is resized to
that before dlib looks at it: landmarks (and so AKD) are in pixels of a 256x256
frame whatever the model's resolution, and small frames get a face large
enough for dlib's detector and shape predictor.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fakelab.datasets.videos import resize_frame

ANALYSIS_SIZE = (256, 256)
# Dataset frames are face crops: faces smaller than this fraction of the frame are not the subject.
SMALLEST_FACE_FRACTION = 0.25


@dataclass(frozen=True)
class FaceReading:
    """dlib's view of one frame: 68 landmarks at 256x256 and the 128-d embedding, or None without a face."""

    landmarks: np.ndarray | None
    embedding: np.ndarray | None


def read_face(frame: np.ndarray, with_embedding: bool = True) -> FaceReading:
    from fakelab.faces.detect import detect_faces
    from fakelab.faces.landmarks import face_embedding, face_landmarks

    image = resize_frame(np.ascontiguousarray(frame), ANALYSIS_SIZE)
    found = detect_faces(image, min_face=SMALLEST_FACE_FRACTION * min(ANALYSIS_SIZE))
    if not found:
        return FaceReading(None, None)
    landmarks = face_landmarks(image, found[0].box)
    embedding = face_embedding(image, landmarks) if with_embedding else None
    return FaceReading(landmarks, embedding)


def read_faces(frames, with_embedding: bool = True) -> list[FaceReading]:
    return [read_face(frame, with_embedding) for frame in frames]
