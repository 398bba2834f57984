"""Self-blended pseudo-fakes and the training augmentations, on a synthetic face crop."""

from __future__ import annotations

import numpy as np
import pytest

from fakelab.detection.augment import (
    AugmentationConfig,
    FaceAugmentation,
    adjust_colour,
    downscale,
    flip,
    jpeg,
    reframe,
    rotate,
)
from fakelab.detection.self_blend import hull_mask, self_blend

SIZE = 96


def textured_face() -> tuple[np.ndarray, np.ndarray]:
    """A textured 96x96 image and 68 'landmarks' on an ellipse around its centre."""
    rng = np.random.default_rng(1)
    ys, xs = np.mgrid[0:SIZE, 0:SIZE]
    image = np.stack([xs * 2, ys * 2, (xs + ys)], axis=-1).astype(np.float64) + rng.normal(0, 12, (SIZE, SIZE, 3))
    angles = np.linspace(0, 2 * np.pi, 68, endpoint=False)
    landmarks = np.stack([48 + 20 * np.cos(angles), 50 + 26 * np.sin(angles)], axis=1)
    return np.clip(image, 0, 255).astype(np.uint8), landmarks


@pytest.mark.parametrize("seed", range(6))
def test_blend_differs_from_the_face_only_inside_its_mask(seed):
    image, landmarks = textured_face()
    blended, mask = self_blend(image, landmarks, np.random.default_rng(seed))
    assert blended.shape == image.shape and blended.dtype == np.uint8
    assert mask.shape == (SIZE, SIZE) and mask.min() >= 0 and mask.max() <= 1
    outside = mask == 0
    assert outside.any(), "the mask should leave the crop's corners out"
    np.testing.assert_array_equal(blended[outside], image[outside])
    changed = np.any(blended != image, axis=-1)
    assert changed.any()
    assert not (changed & outside).any()
    # The blend reaches the face's centre, where the hull is.
    assert mask[50, 48] > 0


def test_mask_follows_the_landmark_hull():
    image, landmarks = textured_face()
    hull = hull_mask(landmarks, (SIZE, SIZE))
    assert hull[50, 48] == 1 and hull[0, 0] == 0 and hull[50, 10] == 0
    # An ellipse of radii 20 and 26 has area pi * 20 * 26; the filled pixels include its outline.
    assert hull.sum() == pytest.approx(np.pi * 20 * 26, rel=0.1)


def test_without_landmarks_the_mask_is_a_central_ellipse():
    image, _ = textured_face()
    blended, mask = self_blend(image, None, np.random.default_rng(0))
    assert mask[SIZE // 2, SIZE // 2] > 0 and mask[0, 0] == 0
    np.testing.assert_array_equal(blended[mask == 0], image[mask == 0])


def test_self_blend_is_reproducible_from_its_generator():
    image, landmarks = textured_face()
    first = self_blend(image, landmarks, np.random.default_rng(5))
    second = self_blend(image, landmarks, np.random.default_rng(5))
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])


def test_augmentations_keep_shape_and_type_and_change_what_they_should():
    image, _ = textured_face()
    np.testing.assert_array_equal(flip(flip(image)), image)
    np.testing.assert_array_equal(flip(image)[:, 0], image[:, -1])
    np.testing.assert_array_equal(rotate(image, 0.0), image)
    np.testing.assert_array_equal(reframe(image, 1.0, 0.0, 0.0), image)
    for changed in (rotate(image, 8.0), jpeg(image, 30), downscale(image, 0.4), reframe(image, 1.1, 0.05, 0.0)):
        assert changed.shape == image.shape and changed.dtype == np.uint8
        assert np.abs(changed.astype(int) - image.astype(int)).mean() > 1
    brighter = adjust_colour(image, brightness=1.2, contrast=1.0, saturation=1.0, hue_degrees=0.0)
    assert brighter.mean() > image.mean() + 5


def test_augmentation_with_every_probability_zero_is_the_identity():
    image, _ = textured_face()
    never = AugmentationConfig(flip=0, downscale=0, noise=0, blur=0, jpeg=0, rotation=0, colour=0, reframe=0)
    np.testing.assert_array_equal(FaceAugmentation(never)(image, np.random.default_rng(0)), image)
    always = AugmentationConfig(flip=1, downscale=1, noise=1, blur=1, jpeg=1, rotation=1, colour=1, reframe=1)
    augmented = FaceAugmentation(always)(image, np.random.default_rng(0))
    assert augmented.shape == image.shape and augmented.dtype == np.uint8
    assert not np.array_equal(augmented, image)
