"""The scoring pipeline: frame sampling, face crops, batching, and the video score rule."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fakelab.detection.pipeline import (
    FaceCrops,
    ffpp_crop_box,
    frames_at,
    sample_indices,
    score_faces,
    score_frames,
    sigmoid,
    video_faces,
)
from fakelab.detection.spec import DeepfakeDetector, InputSpec
from fakelab.errors import InputError, NoFaceError
from fakelab.faces.detect import Box
from fakelab.video import VideoWriter, iter_frames


class TinyDetector(DeepfakeDetector):
    """A few hundred weights: enough to give every crop its own logit."""

    arch = "tiny"
    input_spec = InputSpec(size=16, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.head = nn.Linear(8, 1)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(images)).mean(dim=(2, 3))

    def classify(self, embedding: torch.Tensor) -> torch.Tensor:
        return 3 * self.head(embedding)[:, 0]

    def fake_logit(self, images: torch.Tensor) -> torch.Tensor:
        return self.classify(self.embed(images))

    def cam_layer(self) -> nn.Module:
        return self.conv


def random_crops(count: int, size: int = 24) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [rng.integers(0, 256, (size, size, 3), dtype=np.uint8) for _ in range(count)]


def hand_made_faces(crops: list[np.ndarray]) -> FaceCrops:
    count = len(crops)
    return FaceCrops(
        source=Path("clip.mp4"),
        is_video=True,
        frame_indices=np.arange(count) * 10,
        fps=25.0,
        frame_count=10 * count,
        sampled=count,
        crops=crops,
        landmarks=np.zeros((count, 68, 2)),
        boxes=np.zeros((count, 4), dtype=np.int64),
        detected=np.ones(count, dtype=bool),
        faces_followed=1,
    )


def test_video_score_is_the_sigmoid_of_the_mean_frame_logit():
    torch.manual_seed(0)
    detector = TinyDetector()
    crops = random_crops(7)
    with torch.no_grad():
        one_by_one = [float(detector.fake_logit(detector.input_spec.prepare([crop]))[0]) for crop in crops]
    score = score_faces(detector, hand_made_faces(crops), threshold=0.5)
    np.testing.assert_allclose(score.logits, one_by_one, rtol=1e-5, atol=1e-6)
    assert np.ptp(score.logits) > 0.01, "the crops should get different logits"
    expected = 1 / (1 + np.exp(-np.mean(one_by_one)))
    assert score.score == pytest.approx(expected, rel=1e-6)
    # Not the mean of the frame probabilities: averaging happens in log-odds.
    assert score.score != pytest.approx(float(np.mean(sigmoid(np.array(one_by_one)))), rel=1e-9, abs=1e-12)
    assert score.verdict == ("fake" if expected >= 0.5 else "real")
    np.testing.assert_allclose(score.times, np.arange(7) * 10 / 25.0)


def test_verdict_flips_at_the_threshold():
    detector = TinyDetector()
    score = score_faces(detector, hand_made_faces(random_crops(3)))
    score.threshold = score.score
    assert score.verdict == "fake"
    score.threshold = np.nextafter(score.score, 2.0)
    assert score.verdict == "real"


def test_batches_give_the_same_logits_as_one_batch():
    detector = TinyDetector()
    crops = random_crops(5)
    np.testing.assert_allclose(score_frames(detector, crops, batch_size=2), score_frames(detector, crops, batch_size=16), atol=1e-6)
    assert score_frames(detector, []).shape == (0,)


def test_frames_are_sampled_evenly_from_first_to_last():
    np.testing.assert_array_equal(sample_indices(78, 4), [0, 26, 51, 77])
    np.testing.assert_array_equal(sample_indices(5, 32), np.arange(5))
    with pytest.raises(InputError, match="at least 1"):
        sample_indices(10, 0)


def test_ffpp_crop_is_1_3_times_the_box_centred_and_kept_in_the_frame():
    assert ffpp_crop_box(Box(100, 100, 200, 200), (640, 480)) == [85, 85, 215, 215]
    # Near the top-left corner the square starts at the frame's edge.
    assert ffpp_crop_box(Box(0, 10, 100, 110), (640, 480)) == [0, 0, 130, 130]
    # Near the bottom-right corner it is cut down to end inside the frame.
    left, top, right, bottom = ffpp_crop_box(Box(560, 400, 640, 480), (640, 480))
    assert right <= 640 and bottom <= 480 and right - left == bottom - top


def test_only_the_wanted_frames_are_returned(media):
    wanted = [0, 5, 77]
    got = dict(frames_at(media / "d0.mp4", wanted))
    assert sorted(got) == wanted
    for index, frame in enumerate(iter_frames(media / "d0.mp4")):
        if index in got:
            np.testing.assert_array_equal(got[index], frame)


def test_the_face_is_followed_through_sampled_frames(media):
    faces = video_faces(media / "d0.mp4", size=64, frames=4)
    np.testing.assert_array_equal(faces.frame_indices, [0, 26, 51, 77])
    assert len(faces) == 4 and faces.faces_followed == 1 and faces.detected.all()
    assert all(crop.shape == (64, 64, 3) for crop in faces.crops)
    # The FaceForensics++ margin leaves every landmark inside the crop, away from its edges.
    assert faces.landmarks.min() > 2 and faces.landmarks.max() < 62


def test_a_video_without_a_face_is_a_clear_error(tmp_path):
    video = tmp_path / "wall.mp4"
    with VideoWriter(video, 25.0) as writer:
        for shade in range(6):
            writer.write(np.full((96, 128, 3), 40 * shade, dtype=np.uint8))
    with pytest.raises(NoFaceError, match=r"^no face found in .*wall\.mp4 \(looked in 6 frames sampled through it\)$"):
        video_faces(video, size=32, frames=32)
