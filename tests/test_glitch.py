"""The glitch detector: landmark jumps on hand-made landmarks, face loss on real frames."""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import shared_path

from fakelab.detection.glitch import (
    FrameGlitch,
    GlitchDetector,
    find_glitches,
    face_size,
    landmark_jump,
    similarity_transform,
)
from fakelab.errors import InputError
from fakelab.video import iter_frames


def generic_face(seed: int = 0) -> np.ndarray:
    """68 points spread like a face about 200 pixels wide (exact positions do not matter)."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-80, 80, size=(68, 2)) + (250, 250)


def moved(points: np.ndarray, angle: float, scale: float, shift: tuple[float, float]) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    return scale * points @ np.array([[c, -s], [s, c]]).T + shift


def test_similarity_transform_recovers_a_known_motion():
    face = generic_face()
    scale, rotation, translation = similarity_transform(face, moved(face, 0.2, 1.3, (5.0, -7.0)))
    assert scale == pytest.approx(1.3)
    assert math.atan2(rotation[1, 0], rotation[0, 0]) == pytest.approx(0.2)


def test_head_motion_alone_is_no_jump():
    face = generic_face()
    frames = [moved(face, 0.05 * t**2, 1 + 0.1 * t, (20.0 * t**2, -9.0 * t)) for t in range(3)]
    assert landmark_jump(*frames) < 1e-9


def test_one_point_jumping_gives_its_share_of_the_rms():
    face = generic_face()
    jumped = face.copy()
    jumped[60] += (0.0, 30.0)  # a mouth point, not a rigid one: the alignment ignores it
    expected = math.sqrt(30.0**2 / 68) / face_size(face)
    assert landmark_jump(face, face, jumped) == pytest.approx(expected, rel=1e-6)
    # The same jump seen with the head also moving is the same jump.
    assert landmark_jump(face, face, moved(jumped, 0.0, 1.0, (11.0, 3.0))) == pytest.approx(expected, rel=1e-6)


@pytest.fixture(scope="module")
def real_frames():
    frames = []
    for frame in iter_frames(shared_path("media", "d0.mp4")):
        frames.append(frame)
        if len(frames) == 12:
            return frames
    return frames


def test_real_frames_pass_and_a_lost_face_is_flagged(real_frames):
    detector = GlitchDetector()
    clean = [detector.check(frame) for frame in real_frames[:10]]
    assert [g.index for g in clean] == list(range(10))
    assert not any(g.flagged for g in clean), [g for g in clean if g.flagged]
    assert all(g.face_found and g.detector_confidence > 0.5 for g in clean)
    assert not math.isnan(clean[-1].landmark_jump)

    box = detector.landmarks.min(axis=0).astype(int), detector.landmarks.max(axis=0).astype(int)
    (left, top), (right, bottom) = box
    broken = real_frames[10].copy()
    broken[top - 20 : bottom + 10, left - 10 : right + 10] = 128  # the face melted into grey
    glitch = detector.check(broken)
    assert isinstance(glitch, FrameGlitch)
    assert glitch.index == 10 and not glitch.face_found and glitch.flagged
    assert "face lost" in glitch.reasons and glitch.score > 0.9
    # The face comes back: found again where it was.
    back = detector.check(real_frames[11])
    assert back.face_found

    detector.reset()
    assert detector.check(real_frames[0]).index == 0


def test_find_glitches_and_bad_input(real_frames):
    glitches = find_glitches([np.zeros((120, 160, 3), np.uint8), real_frames[0]], threshold=0.9)
    assert [g.index for g in glitches] == [0, 1]
    assert not glitches[0].face_found and glitches[0].flagged and glitches[1].face_found
    assert glitches[0].reasons == ("no face",) and math.isnan(glitches[0].detector_confidence)
    assert not glitches[1].flagged and glitches[1].to_json()["landmark_jump"] is None
    with pytest.raises(InputError, match="HxWx3 uint8"):
        GlitchDetector().check(np.zeros((10, 10), np.float32))
    with pytest.raises(InputError, match="between 0 and 1"):
        GlitchDetector(threshold=2.0)
