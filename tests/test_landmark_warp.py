"""The landmark-warp animation model: motion transfer rules and animation of real faces."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import shared_path

from fakelab.animation.landmark_warp import LandmarkWarpAnimator, transfer_motion
from fakelab.errors import InputError, NoFaceError
from fakelab.faces import FaceTracker, apply_crop, crop_image, largest_face, plan_video_crop
from fakelab.video import iter_frames, load_image

SQUARE = np.array([[0.0, 0.0], [10, 0], [10, 10], [0, 10]])


@pytest.fixture(scope="module")
def boy():
    """s7.jpg cropped to its face, 256x256."""
    return crop_image(load_image(shared_path("media", "s7.jpg"))).image


@pytest.fixture(scope="module")
def talking_head():
    """d12.mp4 cropped to its face, 256x256, every frame."""
    video = shared_path("media", "d12.mp4")
    return list(apply_crop(iter_frames(video), plan_video_crop(video)))


def test_relative_motion_moves_the_source_by_the_scaled_driving_displacement():
    initial = SQUARE
    driving = SQUARE + [3.0, -1.0]
    source = 2 * SQUARE + 50  # twice as large: the displacement doubles
    np.testing.assert_allclose(transfer_motion(source, initial, initial), source)
    np.testing.assert_allclose(transfer_motion(source, driving, initial), source + [6.0, -2.0])
    np.testing.assert_allclose(
        transfer_motion(source, driving, initial, adapt_scale=False), source + [3.0, -1.0]
    )
    np.testing.assert_allclose(transfer_motion(source, driving, initial, relative=False), driving)


def test_akd_of_s7_driven_by_d12_beats_the_unanimated_source(boy, talking_head):
    animator = LandmarkWarpAnimator()
    source_landmarks = largest_face(boy, "s7")
    targets = list(animator.target_landmarks(source_landmarks, talking_head))
    tracker = FaceTracker()
    animated, still = [], []
    for output, target in zip(animator.animate(boy, talking_head), targets):
        landmarks = tracker.update(output)[0].landmarks
        animated.append(np.linalg.norm(landmarks - target, axis=1).mean())
        still.append(np.linalg.norm(source_landmarks - target, axis=1).mean())
    print(f"AKD at 256 px over {len(targets)} frames: landmark-warp {np.mean(animated):.2f}, "
          f"un-animated source {np.mean(still):.2f}")
    assert len(animated) == len(talking_head)
    assert np.mean(animated) < 0.25 * np.mean(still)


def test_a_still_driving_video_leaves_the_source_as_it_is(boy):
    outputs = list(LandmarkWarpAnimator().animate(boy, [boy] * 3))
    for output in outputs:
        assert np.abs(output.astype(np.int16) - boy).mean() < 0.5


def test_driving_frames_without_a_face_hold_the_last_pose(boy, talking_head):
    grey = np.full_like(boy, 128)
    driving = [grey, talking_head[0], talking_head[60], grey, talking_head[120]]
    outputs = list(LandmarkWarpAnimator().animate(boy, driving))
    np.testing.assert_array_equal(outputs[0], boy)  # no face seen yet: the source
    np.testing.assert_array_equal(outputs[3], outputs[2])
    assert np.abs(outputs[2].astype(np.int16) - outputs[1]).mean() > 1


def test_animation_is_lazy(boy, talking_head):
    outputs = LandmarkWarpAnimator().animate(boy, itertools.repeat(talking_head[0]))
    assert next(outputs).shape == (256, 256, 3)
    assert next(outputs).dtype == np.uint8


def test_a_source_without_a_face_is_refused(talking_head):
    animator = LandmarkWarpAnimator()
    with pytest.raises(NoFaceError, match="no face found in the source image"):
        animator.animate(np.full((256, 256, 3), 90, np.uint8), talking_head[:2])


def test_frames_of_the_wrong_size_are_refused(boy):
    with pytest.raises(InputError, match="256x256x3 uint8"):
        LandmarkWarpAnimator().animate(boy[:128], [boy])
