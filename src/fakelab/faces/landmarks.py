"""68-point facial landmarks (dlib's iBUG-300W predictor) and 128-d face embeddings."""

from __future__ import annotations

import numpy as np

from fakelab.errors import NoFaceError
from fakelab.faces import models
from fakelab.faces.detect import Box, detect_faces

LANDMARK_COUNT = 68
JAW = slice(0, 17)
BROWS = slice(17, 27)
# Brows, nose and eyes: they move with the head but hardly with speech or expression.
RIGID = slice(17, 48)
RIGHT_EYE = slice(36, 42)  # the subject's right eye, on the left of the image
LEFT_EYE = slice(42, 48)
# A dlib detector box relative to the rigid landmarks, measured on the test media and
# shipped portraits: side = 3.84 x their RMS radius, centre 0.2 side below their centroid.
BOX_SIDE_PER_RADIUS = 3.84
BOX_DROP_PER_SIDE = 0.2


def face_landmarks(image: np.ndarray, box: Box) -> np.ndarray:
    """The 68 (x, y) landmarks, float64, of the face that `box` frames in an RGB image."""
    import dlib

    rect = dlib.rectangle(
        round(box.left), round(box.top), round(box.right) - 1, round(box.bottom) - 1
    )
    shape = models.shape_predictor()(np.ascontiguousarray(image), rect)
    return np.array([(point.x, point.y) for point in shape.parts()], dtype=np.float64)


def landmark_box(landmarks: np.ndarray) -> Box:
    """The box dlib's detector would give for these landmarks.

    Built from the rigid points only, so that it does not move when the mouth
    opens, and steadier than the detector's own boxes, whose sizes come in
    steps of its image pyramid.
    """
    rigid = landmarks[RIGID]
    centre = rigid.mean(axis=0)
    side = BOX_SIDE_PER_RADIUS * np.sqrt(((rigid - centre) ** 2).sum(axis=1).mean())
    eye_line = landmarks[LEFT_EYE].mean(axis=0) - landmarks[RIGHT_EYE].mean(axis=0)
    down = np.array([-eye_line[1], eye_line[0]]) / (np.linalg.norm(eye_line) + 1e-9)
    centre = centre + BOX_DROP_PER_SIDE * side * down
    return Box.square(float(centre[0]), float(centre[1]), float(side))


def settled_landmarks(image: np.ndarray, box: Box) -> np.ndarray:
    """Landmarks predicted again from the box of a first prediction.

    What the predictor gives depends on the box it starts from, and the detector's
    boxes come in coarse steps of its image pyramid. Predicting again from the
    landmarks' own box converges: the same face gets the same landmarks whichever
    box found it, and a still face the same landmarks in every frame.
    """
    return face_landmarks(image, landmark_box(face_landmarks(image, box)))


def find_faces(
    image: np.ndarray, detector: str | None = None, min_face: float | None = None
) -> list[np.ndarray]:
    """Landmarks of every face in an image, largest face first."""
    return [settled_landmarks(image, found.box) for found in detect_faces(image, detector, min_face)]


def largest_face(
    image: np.ndarray, where: str, detector: str | None = None, min_face: float | None = None
) -> np.ndarray:
    """Landmarks of the largest face, or NoFaceError naming `where` the face was looked for."""
    faces = find_faces(image, detector, min_face)
    if not faces:
        raise NoFaceError(where)
    return faces[0]


def face_embedding(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """dlib's 128-d identity embedding of a face: same person when closer than about 0.6."""
    import dlib

    box = landmark_box(landmarks)
    rect = dlib.rectangle(round(box.left), round(box.top), round(box.right), round(box.bottom))
    points = dlib.points([dlib.point(round(x), round(y)) for x, y in landmarks])
    shape = dlib.full_object_detection(rect, points)
    descriptor = models.face_encoder().compute_face_descriptor(np.ascontiguousarray(image), shape)
    return np.array(descriptor, dtype=np.float64)


def normalised_landmarks(landmarks: np.ndarray) -> np.ndarray:
    """Landmarks centred on their mean and divided by the square root of their hull's area."""
    from scipy.spatial import ConvexHull

    centred = landmarks - landmarks.mean(axis=0)
    return centred / np.sqrt(ConvexHull(landmarks).volume)
