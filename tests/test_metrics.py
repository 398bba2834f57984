"""Reconstruction scores on hand-made cases, and through dlib on real frames."""

import numpy as np
import pytest

from fakelab.datasets import FramesDataset
from fakelab.metrics.evaluate import (
    Evaluation,
    animation_pairs,
    evaluate_animation,
    evaluate_reconstruction,
    expected_landmarks,
    markdown_table,
)
from fakelab.metrics.faces import FaceReading
from fakelab.metrics.scores import (
    ScoreTotals,
    embedding_distances,
    keypoint_distances,
    l1_error,
    missing_flags,
)
from fakelab.video import iter_frames, save_image

LANDMARKS = np.random.default_rng(0).uniform(0, 256, size=(68, 2))


def test_l1_of_identical_and_opposite_frames():
    frame = np.random.default_rng(1).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    assert l1_error(frame, frame) == 0.0
    assert l1_error(np.zeros((8, 8, 3), np.uint8), np.full((8, 8, 3), 255, np.uint8)) == 1.0
    assert l1_error(np.full((2, 2, 3), 0.25), np.full((2, 2, 3), 0.75)) == 0.5
    with pytest.raises(ValueError, match="differ in shape"):
        l1_error(frame, frame[:4])


def test_a_known_landmark_shift_gives_the_known_akd():
    assert keypoint_distances([LANDMARKS], [LANDMARKS]) == [0.0]
    shifted = LANDMARKS + (3.0, 4.0)
    assert keypoint_distances([LANDMARKS], [shifted]) == pytest.approx([5.0])
    # Half the points moved by 10 px, half not at all: the mean over points is 5.
    half = LANDMARKS.copy()
    half[:34] += (6.0, 8.0)
    assert keypoint_distances([LANDMARKS], [half]) == pytest.approx([5.0])


def test_missing_faces_count_in_mkr_not_in_akd():
    real = [LANDMARKS, LANDMARKS, None, LANDMARKS]
    generated = [LANDMARKS + (3.0, 4.0), None, LANDMARKS, LANDMARKS]
    totals = ScoreTotals(l1=[], keypoint=keypoint_distances(real, generated), missing=missing_flags(real, generated), embedding=[])
    scores = totals.scores()
    assert scores["akd"] == pytest.approx(2.5)  # frames 0 and 3 only
    assert scores["mkr"] == pytest.approx(1 / 3)  # frame 1 of the 3 real faces
    assert scores["l1"] is None and scores["aed"] is None


def test_aed_as_l2_and_as_the_references_squared_l2():
    base = np.zeros(128)
    one_away, two_away = base.copy(), base.copy()
    one_away[:2] = (0.6, 0.8)
    two_away[0] = 2.0
    distances = embedding_distances([base, base, base], [one_away, two_away, None])
    assert distances == pytest.approx([1.0, 2.0])
    scores = ScoreTotals([], [], [], distances).scores()
    assert scores["aed"] == pytest.approx(1.5)
    assert scores["aed_squared"] == pytest.approx(2.5)


def test_animation_targets_move_the_source_landmarks_with_the_driving_ones():
    source = FaceReading(LANDMARKS, None)
    driving = [FaceReading(None, None), FaceReading(LANDMARKS + 10, None), FaceReading(LANDMARKS + 13, None)]
    expected = expected_landmarks(source, driving)
    assert expected[0] is None
    assert np.allclose(expected[1], LANDMARKS) and np.allclose(expected[2], LANDMARKS + 3)


def test_markdown_table_names_every_score():
    evaluation = Evaluation("reconstruction", "fomm", scores={"l1": 0.04321, "akd": None, "mkr": 0.5, "aed": 0.2, "aed_squared": 0.05})
    table = markdown_table([evaluation]).splitlines()
    assert table[0].startswith("| model | protocol |") and "AED (squared L2)" in table[0]
    assert table[2] == "| fomm | reconstruction | 0 | 0 | 0.0432 | n/a | 0.500 | 0.200 | 0.050 |"


class Replay:
    """An 'animator' that returns the driving frames, optionally shifted right by some pixels."""

    def __init__(self, size, shift=0):
        self.size = size
        self.shift = shift

    def animate(self, source, driving):
        for frame in driving:
            yield np.roll(frame, self.shift, axis=1) if self.shift else frame


class Still:
    """An 'animator' that shows the source image for every driving frame."""

    size = (128, 128)

    def animate(self, source, driving):
        return (source for _ in driving)


@pytest.fixture(scope="module")
def face_videos(tmp_path_factory):
    """Two 128x128 test videos of different people, 4 frames each, from the shared media."""
    from conftest import shared_path

    root = tmp_path_factory.mktemp("faces")
    for name in ("d0", "d12"):
        frames = iter_frames(shared_path("media", f"{name}.mp4"), size=(128, 128))
        for index, frame in zip(range(4), frames):
            save_image(root / "test" / f"{name}#0" / f"{index}.png", frame)
    (root / "train").mkdir()
    return FramesDataset(root, (128, 128, 3), "test")


def test_identical_videos_score_zero_and_a_shift_its_size(face_videos):
    identical, shifted = evaluate_reconstruction(
        {"identical": Replay((128, 128)), "shifted": Replay((128, 128), shift=4)}, face_videos
    )
    assert identical.frames == 8
    assert identical.scores == {"l1": 0.0, "akd": 0.0, "mkr": 0.0, "aed": 0.0, "aed_squared": 0.0}
    # 4 px at 128x128 is 8 px at the 256x256 landmarks are measured at; dlib follows it closely.
    assert shifted.scores["akd"] == pytest.approx(8.0, abs=1.5)
    assert shifted.scores["mkr"] == 0.0 and shifted.scores["l1"] > 0.01


def test_animation_protocol_pairs_other_identities(face_videos):
    pairs = animation_pairs(face_videos, count=10)
    assert sorted((s.name, d.name) for s, d in pairs) == [("d0#0", "d12#0"), ("d12#0", "d0#0")]
    replay, still = evaluate_animation({"replay": Replay((128, 128)), "still": Still()}, pairs[:1], max_frames=2)
    # Replaying the driving video shows the other person; showing the source keeps its identity.
    assert replay.scores["l1"] is None
    assert replay.scores["aed"] > 0.3 and still.scores["aed"] == pytest.approx(0.0, abs=1e-9)
    assert replay.scores["mkr"] == still.scores["mkr"] == 0.0

