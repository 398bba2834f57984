"""Head pose from 68 landmarks, and the inconsistency between two estimates of it.

Yang, Li and Lyu ("Exposing Deep Fakes Using Inconsistent Head Poses", ICASSP 2019)
observe that a face swap splices a synthesised central face into a real head: the head's
3-D pose estimated from all 68 landmarks and the pose estimated from the central ones
then disagree, while on a real face they agree (they report AUC 0.89 on UADFV with an
SVM on the two poses). Here each pose comes from OpenCV's `solvePnP` with a generic 3-D
face and a pinhole camera whose focal length is the frame's width; the inconsistency is
the cosine distance between the two facing directions (the rotated optical axis).

The generic face is made here, not taken from a 3-D scan: the x, y of each point are the
mirror-symmetrised mean frontal landmarks of a real talking head (units: the distance
between the outer eye corners, about 9 cm), and the depth z is a hand-set shape: the
face as an elliptic cylinder (centre line 0.7 units in front of the jaw's ends), the nose
standing out towards its tip, the eyes a little sunk. It is rough, and that is enough:
both estimates use the same model, so its errors largely cancel in their difference.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

# x right, y down, in outer-eye-corner distances from the point between the outer eye corners.
_FRONTAL_XY = np.array([
    [-0.886, 0.011], [-0.871, 0.249], [-0.844, 0.488], [-0.801, 0.725], [-0.715, 0.94], [-0.578, 1.127],
    [-0.408, 1.282], [-0.217, 1.402], [0.0, 1.439], [0.217, 1.402], [0.408, 1.282], [0.578, 1.127],
    [0.715, 0.94], [0.801, 0.725], [0.844, 0.488], [0.871, 0.249], [0.886, 0.011], [-0.68, -0.197],
    [-0.582, -0.297], [-0.444, -0.328], [-0.302, -0.31], [-0.172, -0.251], [0.172, -0.251], [0.302, -0.31],
    [0.444, -0.328], [0.582, -0.297], [0.68, -0.197], [0.0, -0.024], [0.0, 0.138], [0.0, 0.296],
    [0.0, 0.456], [-0.178, 0.562], [-0.09, 0.59], [0.0, 0.615], [0.09, 0.59], [0.178, 0.562],
    [-0.5, 0.0], [-0.409, -0.053], [-0.306, -0.047], [-0.22, 0.027], [-0.316, 0.034], [-0.418, 0.029],
    [0.22, 0.027], [0.306, -0.047], [0.409, -0.053], [0.5, 0.0], [0.418, 0.029], [0.316, 0.034],
    [-0.351, 0.851], [-0.231, 0.78], [-0.095, 0.753], [0.0, 0.773], [0.095, 0.753], [0.231, 0.78],
    [0.351, 0.851], [0.238, 0.999], [0.104, 1.065], [0.0, 1.076], [-0.104, 1.065], [-0.238, 0.999],
    [-0.307, 0.856], [-0.097, 0.838], [0.0, 0.845], [0.097, 0.838], [0.307, 0.856], [0.099, 0.946],
    [0.0, 0.958], [-0.099, 0.946],
])
_FACE_HALF_WIDTH = 0.93  # a little wider than the jaw's ends, so they sit near the cylinder's side
_FACE_DEPTH = 0.7
# Extra depth towards the camera (units as above) of the nose bridge to the tip, the nostrils, the lips.
_NOSE = {27: 0.1, 28: 0.2, 29: 0.3, 30: 0.42, 31: 0.12, 32: 0.18, 33: 0.22, 34: 0.18, 35: 0.12}
_EYE_SINK = 0.06
_LIPS_OUT = 0.05


def generic_face() -> np.ndarray:
    """The generic 3-D face (68 x 3, camera axes: x right, y down, z away from the camera)."""
    x, y = _FRONTAL_XY.T
    towards = _FACE_DEPTH * np.sqrt(np.clip(1 - (x / _FACE_HALF_WIDTH) ** 2, 0, None))
    for index, extra in _NOSE.items():
        towards[index] += extra
    towards[36:48] -= _EYE_SINK
    towards[48:68] += _LIPS_OUT
    return np.stack([x, y, -towards], axis=1)


GENERIC_FACE = generic_face()
ALL_POINTS = np.arange(68)
# Everything inside the jaw line: what a face swap replaces, the outline staying real.
CENTRAL_POINTS = np.arange(17, 68)


def camera_matrix(frame_size: tuple[int, int]) -> np.ndarray:
    """A pinhole camera for a (width, height) frame: focal length = width, centre = the middle."""
    width, height = frame_size
    return np.array([[width, 0, width / 2], [0, width, height / 2], [0, 0, 1]], dtype=np.float64)


def head_pose(
    landmarks: np.ndarray, frame_size: tuple[int, int], points: np.ndarray = ALL_POINTS
) -> tuple[np.ndarray, np.ndarray]:
    """(rotation 3x3, translation 3) of the generic face that projects onto these landmarks,
    fitted on the landmark indices `points` with `cv2.solvePnP` (iterative, least squares)."""
    model = GENERIC_FACE[points].astype(np.float64)
    image = np.ascontiguousarray(landmarks[points], dtype=np.float64)
    camera = camera_matrix(frame_size)
    # Start from a frontal face at the distance its size implies: the iterative solver then
    # settles in the right minimum instead of, now and then, a face seen from behind.
    spread = np.sqrt(((image - image.mean(axis=0)) ** 2).sum(axis=1).mean())
    model_spread = np.sqrt(((model[:, :2] - model[:, :2].mean(axis=0)) ** 2).sum(axis=1).mean())
    depth = camera[0, 0] * model_spread / max(spread, 1e-6)
    centre = (image.mean(axis=0) - camera[:2, 2]) * depth / camera[0, 0]
    start = np.array([centre[0] - model[:, 0].mean(), centre[1] - model[:, 1].mean(), depth - model[:, 2].mean()])
    ok, rotation_vector, translation = cv2.solvePnP(
        model, image, camera, None, np.zeros((3, 1)), start.reshape(3, 1).copy(),
        useExtrinsicGuess=True, flags=cv2.SOLVEPNP_ITERATIVE,
    )
    if not ok:
        return np.full((3, 3), np.nan), np.full(3, np.nan)
    return cv2.Rodrigues(rotation_vector)[0], translation.reshape(3)


def facing(rotation: np.ndarray) -> np.ndarray:
    """The direction the face looks along: the model's -z axis in camera axes."""
    return rotation @ np.array([0.0, 0.0, -1.0])


def yaw_pitch_roll(rotation: np.ndarray) -> tuple[float, float, float]:
    """Degrees: yaw (turn left/right), pitch (nod), roll (tilt in the image plane)."""
    yaw = math.degrees(math.asin(max(-1.0, min(1.0, -rotation[2, 0]))))
    pitch = math.degrees(math.atan2(rotation[2, 1], rotation[2, 2]))
    roll = math.degrees(math.atan2(rotation[1, 0], rotation[0, 0]))
    return yaw, pitch, roll


def pose_inconsistency(landmarks: np.ndarray, frame_size: tuple[int, int]) -> float:
    """Cosine distance (0 = same direction) between the facing directions of the head pose
    from all 68 landmarks and from the central ones (Yang, Li and Lyu's cue)."""
    whole, _ = head_pose(landmarks, frame_size, ALL_POINTS)
    central, _ = head_pose(landmarks, frame_size, CENTRAL_POINTS)
    if np.isnan(whole).any() or np.isnan(central).any():
        return math.nan
    return float(1.0 - np.clip(facing(whole) @ facing(central), -1.0, 1.0))
