"""The stress perturbations: level 0 and identity settings give the input back, levels grow
in a simple measure, the same seed gives the same frames, and the DeeperForensics-1.0
definitions hold in numbers."""

from __future__ import annotations

from itertools import islice

import cv2
import numpy as np
import pytest

from conftest import shared_path
from fakelab.errors import InputError
from fakelab.stress import perturbations as P
from fakelab.stress.perturbations import DEEPERFORENSICS, PERTURBATIONS, clip_landmarks, perturb
from fakelab.video import iter_frames

SIZE = 160


@pytest.fixture(scope="module")
def clip():
    frames = [
        cv2.resize(frame, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
        for frame in islice(iter_frames(shared_path("media", "d12.mp4")), 6)
    ]
    landmarks = clip_landmarks(frames)
    assert all(marks is not None for marks in landmarks)
    return frames, landmarks


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        a = cv2.resize(a, (b.shape[1], b.shape[0]), interpolation=cv2.INTER_LINEAR)
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def clip_psnr(out, frames) -> float:
    return float(np.mean([min(psnr(o, f), 99.0) for o, f in zip(out, frames)]))


def changed_pixels(out, frames) -> int:
    return int(sum((o != f).any(axis=-1).sum() for o, f in zip(out, frames)))


def frozen_frames(out, frames) -> int:
    return sum(np.array_equal(a, b) for a, b in zip(out[1:], out[:-1]))


# The measure in which each perturbation's levels must be ordered: larger = more perturbed.
MEASURES = {
    "hand": changed_pixels,
    "object": changed_pixels,
    "eyes-closed": changed_pixels,
    "teeth-hidden": changed_pixels,
    "frame-drop": frozen_frames,
}


def test_the_registry_has_the_deeperforensics_set_at_its_published_levels():
    assert DEEPERFORENSICS == ("saturation", "contrast", "block", "noise", "blur", "pixelation", "compression")
    published = {
        "saturation": (0.4, 0.3, 0.2, 0.1, 0.0),
        "contrast": (0.85, 0.725, 0.6, 0.475, 0.35),
        "block": (16, 32, 48, 64, 80),
        "noise": (0.001, 0.002, 0.005, 0.01, 0.05),
        "blur": (7, 9, 13, 17, 21),
        "pixelation": (2, 3, 4, 5, 6),
        "compression": (30, 32, 35, 38, 40),
    }
    assert {name: PERTURBATIONS[name].parameters for name in DEEPERFORENSICS} == published
    assert PERTURBATIONS["bitrate"].parameters[0] == 8000 and 1000 in PERTURBATIONS["bitrate"].parameters
    assert PERTURBATIONS["bitrate"].parameters[-1] == 110


@pytest.mark.parametrize("name", list(PERTURBATIONS))
def test_level_zero_returns_the_input(clip, name):
    frames, landmarks = clip
    before = [f.copy() for f in frames]
    out = perturb(name, frames, 0, seed=3, landmarks=landmarks)
    assert len(out) == len(frames)
    assert all(np.array_equal(o, f) and o is not f for o, f in zip(out, frames))
    # and the input is never changed by any level
    perturb(name, frames, len(PERTURBATIONS[name].parameters), seed=3, landmarks=landmarks)
    assert all(np.array_equal(a, b) for a, b in zip(frames, before))


def test_identity_settings_return_the_input(clip):
    frame = clip[0][0]
    rng = np.random.default_rng(0)
    assert np.array_equal(P.saturation(frame, 1.0), frame)
    assert np.array_equal(P.contrast(frame, 1.0), frame)
    assert np.array_equal(P.blocks(frame, 0, rng), frame)
    assert np.array_equal(P.colour_noise(frame, 0.0, rng), frame)
    assert np.array_equal(P.blur(frame, 1), frame)
    assert np.array_equal(P.pixelate(frame, 1), frame)
    assert np.array_equal(P.rotate(frame, 0.0), frame)
    assert np.array_equal(P.flip(P.flip(frame)), frame)
    assert np.array_equal(P.downscale(frame, 1.0), frame)
    assert all(np.array_equal(a, b) for a, b in zip(P.drop_frames(clip[0], 0.0, seed=1), clip[0]))


@pytest.mark.parametrize("name", [n for n in PERTURBATIONS if len(PERTURBATIONS[n].parameters) > 1])
def test_levels_grow_in_a_simple_measure(clip, name):
    frames, landmarks = clip
    measure = MEASURES.get(name)
    values = []
    for level in range(0, len(PERTURBATIONS[name].parameters) + 1):
        out = perturb(name, frames, level, seed=5, landmarks=landmarks)
        values.append(measure(out, frames) if measure else -clip_psnr(out, frames))
    assert all(b >= a for a, b in zip(values, values[1:])), (name, values)
    assert values[-1] > values[0], (name, values)


@pytest.mark.parametrize("name", list(PERTURBATIONS))
def test_the_same_seed_gives_the_same_frames(clip, name):
    frames, landmarks = clip
    level = len(PERTURBATIONS[name].parameters)
    first = perturb(name, frames, level, seed=11, landmarks=landmarks)
    second = perturb(name, frames, level, seed=11, landmarks=landmarks)
    assert all(np.array_equal(a, b) for a, b in zip(first, second))


@pytest.mark.parametrize("name", ["block", "noise", "low-light", "frame-drop"])
def test_another_seed_gives_other_frames(clip, name):
    frames, landmarks = clip
    first = perturb(name, frames, 3, seed=1, landmarks=landmarks)
    second = perturb(name, frames, 3, seed=2, landmarks=landmarks)
    assert any(not np.array_equal(a, b) for a, b in zip(first, second))


def test_colour_noise_has_the_deeperforensics_strength():
    grey = np.full((200, 200, 3), 128, dtype=np.uint8)
    noisy = P.colour_noise(grey, 0.001, np.random.default_rng(0)).astype(np.float64)
    luma = noisy @ np.array([0.299, 0.587, 0.114])
    # variance 0.001 in studio-range [0, 1] units: sqrt(0.001) * 255 * 255 / 219 = 9.39 levels
    assert luma.std() == pytest.approx(9.39, rel=0.05)


def test_blocks_are_grey_eight_pixel_squares_scaled_by_frame_size():
    black = np.zeros((512, 300, 3), dtype=np.uint8)  # short side 300: 300 // 256 = 1 times the count
    out = P.blocks(black, 16, np.random.default_rng(0))
    grey = (out == 128).all(axis=-1)
    assert set(np.unique(out)) == {0, 128}
    assert 0.7 * 16 * 64 <= grey.sum() <= 16 * 64
    big = P.blocks(np.zeros((600, 600, 3), np.uint8), 16, np.random.default_rng(0))  # 600 // 256 = 2
    assert (big == 128).all(axis=-1).sum() > 16 * 64


def test_saturation_zero_is_grey_and_contrast_truncates_like_the_reference():
    frame = np.array([[[200, 100, 50]]], dtype=np.uint8)
    grey = P.saturation(frame, 0.0)
    assert grey[0, 0, 0] == grey[0, 0, 1] == grey[0, 0, 2] == round(0.299 * 200 + 0.587 * 100 + 0.114 * 50)
    assert P.contrast(frame, 0.35).tolist() == [[[70, 35, 17]]]


def test_bitrate_lowers_quality_and_frame_drops_keep_the_length(clip):
    frames, _ = clip
    high = perturb("bitrate", frames, 1)
    low = perturb("bitrate", frames, 5)
    assert len(high) == len(low) == len(frames) and high[0].shape == frames[0].shape
    assert clip_psnr(high, frames) > clip_psnr(low, frames) + 3
    dropped = perturb("frame-drop", frames, 5, seed=0)
    assert len(dropped) == len(frames) and np.array_equal(dropped[0], frames[0])


def test_face_perturbations_paint_on_the_face_only(clip):
    frames, landmarks = clip
    marks = landmarks[0]
    closed = P.close_eyes(frames[0], 1.0, marks)
    changed = np.argwhere((closed != frames[0]).any(axis=-1))
    eyes = marks[36:48]
    assert len(changed)
    assert changed[:, 1].min() >= eyes[:, 0].min() - 6 and changed[:, 1].max() <= eyes[:, 0].max() + 6
    assert np.array_equal(P.close_eyes(frames[0], 1.0, None), frames[0])


def test_bad_requests_are_clear(clip):
    frames, _ = clip
    with pytest.raises(InputError, match="unknown perturbation 'fog'"):
        perturb("fog", frames, 1)
    with pytest.raises(InputError, match="blur has levels 0 to 5, got 6"):
        perturb("blur", frames, 6)
    with pytest.raises(ValueError, match="needs one landmark array"):
        perturb("eyes-closed", frames, 1)
