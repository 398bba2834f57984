"""Self-blended images (Shiohara & Yamasaki, "Detecting Deepfakes with Self-Blended
Images", CVPR 2022): pseudo-fakes made from real faces only.

A face crop is blended with a slightly changed copy of itself (another colour, another
sharpness, shifted and rescaled by a few percent) inside a soft mask shaped from the
convex hull of its landmarks. The result carries what face swaps and reenactments leave
behind, a blending boundary and a mismatch of colour, sharpness and position between the
face and its surroundings, without any identity or manipulation method to overfit to.
Only the source copy is changed, so the blend differs from the input only where the mask
is positive. Beyond the paper, the copy is sometimes also bent by a smooth local warp of
a few percent, the trace that landmark- or keypoint-driven reenactment leaves.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from fakelab.detection.augment import downscale, jitter_colour

BLEND_RATIOS = (0.25, 0.5, 0.75, 1.0, 1.0, 1.0)
# Without landmarks, a face crop made with the FaceForensics++ margin holds the face in
# an ellipse about this wide and high (fractions of the crop's side), slightly low.
FALLBACK_ELLIPSE = (0.30, 0.37)
FALLBACK_CENTRE_DROP = 0.04


@dataclass(frozen=True)
class SelfBlendConfig:
    colour_shift: float = 20.0  # per-channel offset, 0..255 levels
    hue_degrees: float = 10.0
    saturation: float = 0.3
    brightness: float = 0.1
    contrast: float = 0.1
    downscale_range: tuple[float, float] = (0.25, 0.5)
    shift: float = 0.03  # fraction of the side
    scale: tuple[float, float] = (0.95, 1 / 0.95)
    warp_probability: float = 0.5
    warp: float = 0.02  # smooth local displacement of the source, fraction of the side
    grow: float = 0.08  # the hull is eroded or dilated by up to this fraction of the face size
    deform: float = 0.04  # smooth displacement of the mask, fraction of the face size
    blur: tuple[float, float] = (0.02, 0.08)  # Gaussian sigma of the mask edge, fraction of the face size


def hull_mask(landmarks: np.ndarray | None, size: tuple[int, int]) -> np.ndarray:
    """A (height, width) float32 mask, 1 inside the landmarks' convex hull (or, without
    landmarks, inside the ellipse where a centred face crop has its face)."""
    width, height = size
    mask = np.zeros((height, width), dtype=np.float32)
    if landmarks is None:
        centre = (round(width / 2), round(height * (0.5 + FALLBACK_CENTRE_DROP)))
        axes = (round(width * FALLBACK_ELLIPSE[0]), round(height * FALLBACK_ELLIPSE[1]))
        cv2.ellipse(mask, centre, axes, 0, 0, 360, 1.0, -1)
        return mask
    hull = cv2.convexHull(np.round(landmarks).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, 1.0)
    return mask


def _face_size(mask: np.ndarray) -> float:
    return max(float(np.sqrt(mask.sum())), 1.0)


def random_mask(landmarks: np.ndarray | None, size: tuple[int, int], rng: np.random.Generator, config: SelfBlendConfig) -> np.ndarray:
    """The hull mask grown or shrunk, deformed smoothly, with a soft edge of random width
    and scaled by a random blend ratio: values in [0, 1], exactly 0 far from the face."""
    mask = hull_mask(landmarks, size)
    face = _face_size(mask)
    radius = round(rng.uniform(-config.grow, config.grow) * face)
    if radius:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(radius) + 1, 2 * abs(radius) + 1))
        morph = cv2.dilate if radius > 0 else cv2.erode
        grown = morph(mask, kernel)
        mask = grown if grown.any() else mask
    mask = _deform(mask, rng.uniform(0, config.deform) * face, rng, cv2.BORDER_CONSTANT)
    mask = cv2.GaussianBlur(mask, (0, 0), rng.uniform(*config.blur) * face)
    mask /= max(float(mask.max()), 1e-6)
    return (mask * rng.choice(BLEND_RATIOS)).astype(np.float32)


def _deform(image: np.ndarray, amplitude: float, rng: np.random.Generator, border: int) -> np.ndarray:
    """Move the pixels along a smooth random field (a 4x4 grid of offsets up to `amplitude`)."""
    height, width = image.shape[:2]
    offsets = rng.uniform(-amplitude, amplitude, size=(2, 4, 4)).astype(np.float32)
    dx = cv2.resize(offsets[0], (width, height), interpolation=cv2.INTER_CUBIC)
    dy = cv2.resize(offsets[1], (width, height), interpolation=cv2.INTER_CUBIC)
    xs, ys = np.meshgrid(np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32))
    return cv2.remap(image, xs + dx, ys + dy, cv2.INTER_LINEAR, borderMode=border, borderValue=0)


def transformed_source(image: np.ndarray, rng: np.random.Generator, config: SelfBlendConfig) -> np.ndarray:
    """The copy to blend in: colour changed, sharpness changed, shifted and rescaled, and
    sometimes bent by a smooth local warp, as reenactment bends a face."""
    source = image.astype(np.float32) + rng.uniform(-config.colour_shift, config.colour_shift, 3).astype(np.float32)
    source = np.clip(np.rint(source), 0, 255).astype(np.uint8)
    source = jitter_colour(source, rng, config.brightness, config.contrast, config.saturation, config.hue_degrees)
    sharpness = rng.integers(3)
    if sharpness == 1:
        source = downscale(source, rng.uniform(*config.downscale_range))
    elif sharpness == 2:
        source = _sharpen(source, rng.uniform(0.5, 1.5))
    source = _shift_scale(source, rng, config)
    if rng.random() < config.warp_probability:
        source = _deform(source, rng.uniform(0, config.warp) * max(source.shape[:2]), rng, cv2.BORDER_REFLECT_101)
    return source


def _sharpen(image: np.ndarray, amount: float) -> np.ndarray:
    blurred = cv2.GaussianBlur(image, (0, 0), 1.0).astype(np.float32)
    sharp = image.astype(np.float32) * (1 + amount) - blurred * amount
    return np.clip(np.rint(sharp), 0, 255).astype(np.uint8)


def _shift_scale(image: np.ndarray, rng: np.random.Generator, config: SelfBlendConfig) -> np.ndarray:
    height, width = image.shape[:2]
    scale = rng.uniform(*config.scale)
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), 0.0, scale)
    matrix[:, 2] += rng.uniform(-config.shift, config.shift, 2) * (width, height)
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def self_blend(
    image: np.ndarray,
    landmarks: np.ndarray | None,
    rng: np.random.Generator,
    config: SelfBlendConfig = SelfBlendConfig(),
) -> tuple[np.ndarray, np.ndarray]:
    """(blended image, mask): `image` (HxWx3 uint8 RGB face crop, landmarks (68, 2) in its
    pixels or None) with a transformed copy of itself blended in where mask > 0."""
    size = (image.shape[1], image.shape[0])
    mask = random_mask(landmarks, size, rng, config)
    source = transformed_source(image, rng, config)
    alpha = mask[..., None]
    blended = source.astype(np.float32) * alpha + image.astype(np.float32) * (1 - alpha)
    return np.clip(np.rint(blended), 0, 255).astype(np.uint8), mask
