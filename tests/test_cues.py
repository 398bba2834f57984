"""Forensic cues on hand-made landmarks and images; lip-sync offsets on a real clip."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
from conftest import shared_path

from fakelab.detection.cues import (
    CUE_NAMES,
    CueModel,
    background_motion,
    count_blinks,
    eye_aspect_ratio,
    load_cue_model,
    mouth_interior,
    score_video_cues,
    seam_energy,
)
from fakelab.detection.glitch import GlitchDetector
from fakelab.detection.headpose import GENERIC_FACE, camera_matrix, head_pose, pose_inconsistency, yaw_pitch_roll
from fakelab.detection.lipsync import lip_sync, mouth_opening, mouth_shape
from fakelab.errors import NoFaceError
from fakelab.video import iter_frames, probe_video
from fakelab.video.audio import decode_audio

FRAME = (400, 400)


def frontal_landmarks(scale: float = 100.0, centre=(200.0, 170.0)) -> np.ndarray:
    """The generic face seen from the front, mouth closed: 68 hand-made landmarks, face about 180 px wide."""
    landmarks = GENERIC_FACE[:, :2] * scale + centre
    landmarks[[67, 66, 65]] = landmarks[[61, 62, 63]]  # lower inner lip on the upper one
    return landmarks


def project(rotation_vector, translation=(0.0, 0.2, 8.0)) -> np.ndarray:
    points, _ = cv2.projectPoints(
        GENERIC_FACE, np.array(rotation_vector, float), np.array(translation, float), camera_matrix(FRAME), None
    )
    return points.reshape(-1, 2)


def test_eye_aspect_ratio_of_hand_made_eyes():
    landmarks = frontal_landmarks()
    for eye in (slice(36, 42), slice(42, 48)):
        # corners 6 apart, both lids 1.5 above and below the corner line: EAR = (3 + 3) / (2 * 6)
        x0 = landmarks[eye][0, 0]
        landmarks[eye] = [(x0, 0), (x0 + 2, -1.5), (x0 + 4, -1.5), (x0 + 6, 0), (x0 + 4, 1.5), (x0 + 2, 1.5)]
    assert eye_aspect_ratio(landmarks) == pytest.approx(0.5)
    ear = np.array([0.3] * 10 + [0.1, 0.05, 0.1] + [0.3] * 10 + [0.12] + [np.nan] * 3 + [0.3] * 5)
    assert count_blinks(ear) == 2


def test_mouth_measures_of_hand_made_lips():
    landmarks = frontal_landmarks()
    closed = mouth_opening(landmarks)
    opened = landmarks.copy()
    opened[[65, 66, 67]] += (0, 20)  # the lower inner lip drops 20 px
    side = 3.84 * np.sqrt(((landmarks[17:48] - landmarks[17:48].mean(0)) ** 2).sum(1).mean())
    assert closed == 0.0
    assert mouth_opening(opened) == pytest.approx(20 / side, rel=1e-3)
    assert mouth_shape(opened)[1] == pytest.approx(mouth_shape(landmarks)[1])  # outer lips did not move


def test_teeth_brightness_and_texture_inside_an_open_mouth():
    landmarks = frontal_landmarks()
    landmarks[[65, 66, 67]] += (0, 12)
    landmarks[[55, 56, 57, 58, 59]] += (0, 12)
    image = np.full((400, 400), 40.0, np.float32)  # skin lightness 40
    mouth = np.zeros((400, 400), np.uint8)
    cv2.fillPoly(mouth, [np.round(landmarks[60:68]).astype(np.int32)], 1)
    stripes = np.where((np.arange(400) // 2) % 2 == 0, 90.0, 70.0)[None, :]
    textured = np.where(mouth > 0, stripes, image).astype(np.float32)
    brightness, texture = mouth_interior(textured, landmarks)
    assert brightness == pytest.approx(90 / 40)
    assert texture > 5  # stripes against flat skin
    flat = np.where(mouth > 0, 90.0, image).astype(np.float32)
    assert mouth_interior(flat, landmarks)[1] < texture
    assert all(math.isnan(v) for v in mouth_interior(textured, frontal_landmarks()))  # closed mouth


def test_seam_energy_and_background_motion():
    landmarks = frontal_landmarks()
    rng = np.random.default_rng(0)
    noise = rng.normal(128, 10, (400, 400)).astype(np.float32)
    face = np.zeros((400, 400), np.uint8)
    from fakelab.faces.paste import face_outline

    cv2.fillConvexPoly(face, cv2.convexHull(np.round(face_outline(landmarks)).astype(np.int32)), 1)
    pasted = np.clip(noise + 60.0 * face, 0, 255).astype(np.uint8)  # a hard-edged paste
    assert seam_energy(pasted, landmarks) > 1.3 * seam_energy(noise.astype(np.uint8), landmarks)
    still = noise.astype(np.uint8)
    moved_inside = np.where(face > 0, 255 - still, still).astype(np.uint8)
    assert background_motion(still, moved_inside, landmarks) < 0.01
    everywhere = (255 - still).astype(np.uint8)
    assert background_motion(still, everywhere, landmarks) == pytest.approx(1.0, rel=0.05)


def test_head_pose_recovers_a_turn_and_finds_a_spliced_centre():
    landmarks = project((0.0, math.radians(25), 0.0))
    rotation, translation = head_pose(landmarks, FRAME)
    yaw, pitch, roll = yaw_pitch_roll(rotation)
    assert yaw == pytest.approx(25, abs=0.01) and abs(pitch) < 0.01 and abs(roll) < 0.01
    assert translation == pytest.approx([0.0, 0.2, 8.0], abs=1e-6)
    assert pose_inconsistency(landmarks, FRAME) < 1e-9
    spliced = landmarks.copy()
    spliced[17:] += (5.0, 0.0)  # the central face shifted against its real outline
    assert pose_inconsistency(spliced, FRAME) > 1e-3


def test_cue_model_adds_contributions_and_ignores_missing_cues():
    model = CueModel(("face_lost", "blink_rate"), np.array([0.1, 10.0]), np.array([0.1, 5.0]), np.array([2.0, -1.0]), 0.5)
    cues = {"face_lost": 0.3, "blink_rate": math.nan}
    assert model.contributions(cues) == pytest.approx({"face_lost": 4.0, "blink_rate": 0.0})
    assert model.logit(cues) == pytest.approx(4.5)
    shipped = load_cue_model()
    assert set(shipped.names) <= set(CUE_NAMES)


@pytest.fixture(scope="module")
def d11_mouth():
    """Mouth shapes of every frame of d11 (9 s, speech), followed by the glitch detector."""
    path = shared_path("media", "d11.mp4")
    detector = GlitchDetector()
    mouth = []
    for frame in iter_frames(path):
        glitch = detector.check(frame)
        mouth.append(mouth_shape(detector.landmarks) if glitch.face_found else np.full(3, np.nan))
    return np.array(mouth), decode_audio(path, 16000), probe_video(path).fps


def shifted(samples: np.ndarray, frames: int, fps: float, rate: int = 16000) -> np.ndarray:
    """The audio delayed by `frames` video frames (advanced when negative), same length."""
    k = round(frames * rate / fps)
    if k >= 0:
        return np.concatenate([np.zeros(k, samples.dtype), samples])[: len(samples)]
    return np.concatenate([samples[-k:], np.zeros(-k, samples.dtype)])


def test_lip_sync_measures_a_shifted_audio_track(d11_mouth):
    mouth, samples, fps = d11_mouth
    base = lip_sync(mouth, samples, 16000, fps)
    print("d11 as it is:", base.summary())
    # The clip itself measures about -2 frames: the mouth opens a little before the sound.
    assert abs(base.offset) <= 3 and base.confidence > 0.05
    for shift in (5, -8):
        measured = lip_sync(mouth, shifted(samples, shift, fps), 16000, fps)
        print(f"audio shifted {shift:+d} frames:", measured.summary())
        assert abs(measured.offset - base.offset - shift) <= 1
    assert len(base.windows) >= 5 and all(w.stop - w.start == round(3 * fps) for w in base.windows)


def test_lip_sync_without_usable_audio_says_so(d11_mouth):
    mouth, samples, fps = d11_mouth
    assert lip_sync(mouth, None, 16000, fps).summary() == "lip-sync: not measured (no audio stream)"
    silent = lip_sync(mouth, np.zeros_like(samples), 16000, fps)
    assert not silent.has_audio and silent.reason == "the audio is silent" and silent.to_json()["offset"] is None


def test_score_video_cues_on_frames():
    frames = [frame for _, frame in zip(range(20), iter_frames(shared_path("media", "d0.mp4")))]
    verdict = score_video_cues(frames, fps=25)
    assert 0 <= verdict.probability_fake <= 1 and verdict.verdict in ("real", "fake")
    assert set(verdict.cues) == set(CUE_NAMES)
    assert math.isnan(verdict.cues["lip_sync_confidence"]) and "no audio stream" in verdict.summary()
    assert all(len(series) == 20 for series in verdict.timeline.values())
    assert verdict.cues["face_lost"] == 0 and verdict.cues["detector_confidence"] > 1
    document = verdict.to_json()
    assert document["method"] == "cues" and len(document["timeline"]["time"]) == 20
    noise = np.random.default_rng(0).normal(0, 0.1, 16000).astype(np.float32)  # 1 s of sound at 16 kHz
    dubbed = score_video_cues(frames, audio=(noise[::2], 8000), fps=25)  # resampled to 16 kHz
    assert dubbed.lip_sync.has_audio and dubbed.lip_sync.video is not None
    assert not math.isnan(dubbed.cues["lip_sync_confidence"])
    with pytest.raises(NoFaceError, match="no face found in frames"):
        score_video_cues([np.zeros((64, 64, 3), np.uint8)] * 3)
