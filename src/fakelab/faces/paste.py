"""Paste animated face crops back into the full-resolution source image."""

from __future__ import annotations

from typing import Iterable, Iterator

import cv2
import numpy as np

from fakelab.errors import InputError
from fakelab.faces.detect import Box
from fakelab.faces.landmarks import BROWS, JAW
from fakelab.faces.tracking import FaceTracker
from fakelab.faces.warp import INNER_LIPS, forehead_points

# The mask grows past the face outline, then fades, over this fraction of the face's size.
FEATHER = 0.06


def face_outline(landmarks: np.ndarray) -> np.ndarray:
    """Jaw, brows and forehead points: their hull is the whole face."""
    return np.concatenate([landmarks[JAW], landmarks[BROWS], forehead_points(landmarks)])


def paste_back(
    source: np.ndarray,
    box: Box,
    crops: Iterable[np.ndarray],
    source_landmarks: np.ndarray,
    detector: str | None = None,
) -> Iterator[np.ndarray]:
    """Full-size frames: each animated crop composited into the source where `box` was cut.

    `box` and `source_landmarks` are what `crop_image` returned for the source. The
    face is blended in with a soft mask over the union of the source face's hull and
    the animated face's hull (its landmarks followed through the crops), after
    shifting the crop's colours to match the source face. Outside the mask the
    source is left exactly as it was.
    """
    side = round(box.width)
    if side < 1 or round(box.height) != side:
        raise InputError(f"paste-back needs a square crop box, got {box}")
    skin = _skin_colour(source, source_landmarks)
    tracker = FaceTracker(detector)
    crop_landmarks = None
    for crop in crops:
        faces = tracker.update(crop)
        if faces:
            crop_landmarks = faces[0].landmarks
        scale = side / crop.shape[1]
        patch = cv2.resize(crop, (side, side), interpolation=cv2.INTER_CUBIC)
        if crop_landmarks is None:
            animated_landmarks = source_landmarks
        else:
            animated_landmarks = crop_landmarks * scale + (box.left, box.top)
        patch = _match_colour(patch, animated_landmarks - (box.left, box.top), skin)
        yield _composite(source, box, patch, source_landmarks, animated_landmarks)


def _composite(
    source: np.ndarray, box: Box, patch: np.ndarray, source_landmarks, animated_landmarks
) -> np.ndarray:
    left, top = round(box.left), round(box.top)
    height, width = source.shape[:2]
    x0, y0 = max(0, left), max(0, top)
    x1, y1 = min(width, left + patch.shape[1]), min(height, top + patch.shape[0])
    region = source[y0:y1, x0:x1].astype(np.float32)
    offset = np.array([x0, y0])
    face_size = np.ptp(source_landmarks[:, 0])
    mask = _soft_mask(
        region.shape[:2],
        [face_outline(source_landmarks) - offset, face_outline(animated_landmarks) - offset],
        FEATHER * face_size,
    )
    placed = patch[y0 - top : y1 - top, x0 - left : x1 - left].astype(np.float32)
    out = source.copy()
    out[y0:y1, x0:x1] = np.round(region + mask[..., None] * (placed - region)).astype(np.uint8)
    return out


def _soft_mask(shape: tuple[int, int], outlines: list[np.ndarray], feather: float) -> np.ndarray:
    """1 inside the outlines' hulls and a little past them, fading to 0 over `feather`."""
    mask = np.zeros(shape, dtype=np.uint8)
    for outline in outlines:
        cv2.fillConvexPoly(mask, cv2.convexHull(np.round(outline).astype(np.int32)), 1)
    radius = max(1, round(feather))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    grown = cv2.dilate(mask, kernel).astype(np.float32)
    soft = cv2.GaussianBlur(grown, (0, 0), radius / 2)
    # The blur's far tail is cut so that pixels well away from the face stay exact.
    return np.where(soft < 1 / 255, 0, soft)


def _inner_face_mask(shape: tuple[int, int], landmarks: np.ndarray) -> np.ndarray:
    """Cheeks, nose and brows: the face inside its outline, without the mouth's interior."""
    mask = np.zeros(shape, dtype=np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(landmarks[JAW.start : BROWS.stop]).astype(np.int32)), 1)
    cv2.fillPoly(mask, [np.round(landmarks[INNER_LIPS]).astype(np.int32)], 0)
    return mask > 0


def _skin_colour(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    return _lab(image)[_inner_face_mask(image.shape[:2], landmarks)].mean(axis=0)


def _match_colour(patch: np.ndarray, landmarks: np.ndarray, skin: np.ndarray) -> np.ndarray:
    """Shift the patch's colours (in Lab) so that its face's mean matches the source's."""
    face = _inner_face_mask(patch.shape[:2], landmarks)
    if not face.any():
        return patch
    lab = _lab(patch)
    lab += skin - lab[face].mean(axis=0)
    rgb = cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)
    return np.clip(np.round(rgb * 255), 0, 255).astype(np.uint8)


def _lab(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)
