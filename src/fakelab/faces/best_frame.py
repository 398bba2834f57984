"""Pick the driving frame whose face pose is closest to the source's."""

from __future__ import annotations

from typing import Iterable

import numpy as np

from fakelab.errors import NoFaceError
from fakelab.faces.landmarks import find_faces, largest_face, normalised_landmarks

# Faces are looked for down to this fraction of a frame's short side: driving frames
# are face crops, so this is generous, and it keeps a detection per frame cheap.
SMALLEST_FACE = 1 / 4


def find_best_frame(
    source: np.ndarray, driving: Iterable[np.ndarray], detector: str | None = None
) -> int:
    """Index of the driving frame whose normalised landmarks are nearest the source's.

    As the FOMM demo does: landmarks centred on their mean and divided by the square
    root of their hull's area, compared by the sum of squared differences. Each frame
    gets its own detection, as the source does, so that equal poses give equal
    landmarks; frames without a face are skipped.
    """
    target = normalised_landmarks(
        largest_face(source, "the source image", detector, _smallest_face(source))
    )
    best, best_distance = None, np.inf
    for index, frame in enumerate(driving):
        faces = find_faces(frame, detector, _smallest_face(frame))
        if not faces:
            continue
        distance = float(((normalised_landmarks(faces[0]) - target) ** 2).sum())
        if distance < best_distance:
            best, best_distance = index, distance
    if best is None:
        raise NoFaceError("the driving video")
    return best


def _smallest_face(image: np.ndarray) -> float:
    return SMALLEST_FACE * min(image.shape[:2])
