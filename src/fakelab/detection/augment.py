"""Training augmentations of face crops: the degradations detectors must survive.

Bonettini et al. and the FaceForensics++ robustness studies train and test with
downscaling, flips, noise, blur, JPEG compression, small rotations and colour changes;
each is applied here with its own probability and strength, with a random reframing
(zoom and shift) so that a detector does not depend on one face tracker's exact boxes. Images are HxWx3 uint8 RGB;
randomness comes from the numpy Generator passed in, so an epoch can be replayed.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentationConfig:
    """Probability of each augmentation and the range of its strength."""

    flip: float = 0.5
    downscale: float = 0.2
    downscale_range: tuple[float, float] = (0.3, 0.8)  # kept fraction of the side
    noise: float = 0.2
    noise_sigma: tuple[float, float] = (2.0, 10.0)  # in 0..255 levels
    blur: float = 0.2
    blur_sigma: tuple[float, float] = (0.4, 1.6)  # pixels
    jpeg: float = 0.3
    jpeg_quality: tuple[int, int] = (40, 95)
    rotation: float = 0.3
    rotation_degrees: float = 10.0
    reframe: float = 0.5  # another crop of the same face: detectors crop faces differently
    reframe_zoom: tuple[float, float] = (0.9, 1.15)
    reframe_shift: float = 0.05  # fraction of the side
    colour: float = 0.5
    brightness: float = 0.2  # factors from 1 - b to 1 + b
    contrast: float = 0.2
    saturation: float = 0.2
    hue_degrees: float = 8.0


def flip(image: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(image[:, ::-1])


def downscale(image: np.ndarray, factor: float) -> np.ndarray:
    """Lose detail as a low-resolution video would: shrink, then enlarge back."""
    height, width = image.shape[:2]
    small = cv2.resize(image, (max(1, round(width * factor)), max(1, round(height * factor))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def add_noise(image: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    noisy = image.astype(np.float32) + rng.normal(0.0, sigma, image.shape).astype(np.float32)
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


def blur(image: np.ndarray, sigma: float) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigma)


def jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    ok, encoded = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("OpenCV failed to JPEG-encode an image")
    return np.ascontiguousarray(cv2.imdecode(encoded, cv2.IMREAD_COLOR)[:, :, ::-1])


def rotate(image: np.ndarray, degrees: float) -> np.ndarray:
    """Turn about the centre; the corners are filled by reflection, so no black wedges."""
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def reframe(image: np.ndarray, zoom: float, shift_x: float, shift_y: float) -> np.ndarray:
    """Zoom about the centre by `zoom` and move by (shift_x, shift_y) sides, as a face
    detector with another box size or position would have cropped the face."""
    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), 0.0, zoom)
    matrix[:, 2] += (shift_x * width, shift_y * height)
    return cv2.warpAffine(image, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def adjust_colour(
    image: np.ndarray, brightness: float, contrast: float, saturation: float, hue_degrees: float
) -> np.ndarray:
    """Scale brightness, contrast (about the mean grey) and saturation; turn the hue."""
    hsv = cv2.cvtColor(image, cv2.COLOR_RGB2HSV_FULL).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + hue_degrees * 256.0 / 360.0) % 256.0
    hsv[..., 1] *= saturation
    rgb = cv2.cvtColor(np.clip(hsv, 0, 255).astype(np.uint8), cv2.COLOR_HSV2RGB_FULL).astype(np.float32)
    mean = rgb.mean()
    rgb = (rgb - mean) * contrast + mean
    return np.clip(np.rint(rgb * brightness), 0, 255).astype(np.uint8)


def jitter_colour(
    image: np.ndarray, rng: np.random.Generator, brightness: float, contrast: float, saturation: float, hue_degrees: float
) -> np.ndarray:
    """`adjust_colour` by factors drawn within 1 +- each strength and a hue turn within +-hue_degrees."""
    return adjust_colour(
        image,
        brightness=rng.uniform(1 - brightness, 1 + brightness),
        contrast=rng.uniform(1 - contrast, 1 + contrast),
        saturation=rng.uniform(1 - saturation, 1 + saturation),
        hue_degrees=rng.uniform(-hue_degrees, hue_degrees),
    )


class FaceAugmentation:
    """Apply each augmentation of `config` with its probability, in a fixed order."""

    def __init__(self, config: AugmentationConfig = AugmentationConfig()):
        self.config = config

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        c = self.config
        if rng.random() < c.flip:
            image = flip(image)
        if rng.random() < c.reframe:
            image = reframe(image, rng.uniform(*c.reframe_zoom), *rng.uniform(-c.reframe_shift, c.reframe_shift, 2))
        if rng.random() < c.rotation:
            image = rotate(image, rng.uniform(-c.rotation_degrees, c.rotation_degrees))
        if rng.random() < c.colour:
            image = jitter_colour(image, rng, c.brightness, c.contrast, c.saturation, c.hue_degrees)
        if rng.random() < c.downscale:
            image = downscale(image, rng.uniform(*c.downscale_range))
        if rng.random() < c.blur:
            image = blur(image, rng.uniform(*c.blur_sigma))
        if rng.random() < c.noise:
            image = add_noise(image, rng.uniform(*c.noise_sigma), rng)
        if rng.random() < c.jpeg:
            image = jpeg(image, int(rng.integers(c.jpeg_quality[0], c.jpeg_quality[1] + 1)))
        return image
