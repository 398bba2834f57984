"""The portrait model: motion without identity leak, exact neutral frame, sizes, mouth fill,
the live interface, the One-Euro filter, and `fakelab animate` end to end."""

from __future__ import annotations

import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import shared_path

from fakelab.animation.landmark_warp import transfer_motion
from fakelab.animation.portrait import (
    INNER_LIPS,
    PortraitAnimator,
    PortraitOptions,
    _Motion,
    _smoothed_pose,
    apply_affine,
    fit_similarity,
    iris_position,
)
from fakelab.faces import crop_image
from fakelab.faces.filters import OneEuroFilter
from fakelab.faces.paste import face_outline
from fakelab.video import VideoWriter, iter_frames, load_image, probe_video

LOWER_LIP = [56, 57, 58, 65, 66, 67, 5, 6, 7, 8, 9, 10, 11]


@pytest.fixture(scope="module")
def boy():
    """s7.jpg cut to its face, 256x256, and its landmarks."""
    crop = crop_image(load_image(shared_path("media", "s7.jpg")))
    return crop.image, crop.landmarks_in_crop


def similarity(angle_degrees: float, scale: float, shift) -> np.ndarray:
    a = np.radians(angle_degrees)
    return np.array([[scale * np.cos(a), -scale * np.sin(a), shift[0]], [scale * np.sin(a), scale * np.cos(a), shift[1]]])


def other_face(landmarks: np.ndarray) -> np.ndarray:
    """Another identity: bigger eyes, a longer nose, a wider mouth."""
    face = landmarks.copy()
    for eye in (slice(36, 42), slice(42, 48)):
        centre = face[eye].mean(axis=0)
        face[eye] = centre + 1.5 * (face[eye] - centre)
    face[31:36, 1] += 6
    mouth = face[48:68].mean(axis=0)
    face[48:68, 0] = mouth[0] + 1.3 * (face[48:68, 0] - mouth[0])
    return face


def test_the_neutral_frame_gives_back_the_source_exactly(boy):
    image, landmarks = boy
    portrait = PortraitAnimator().prepare(image, landmarks)
    driver = apply_affine(similarity(8, 1.7, (40, -20)), other_face(landmarks))
    frame = np.zeros((480, 640, 3), np.uint8)
    for _ in range(3):  # the first frame is the neutral one, and so is any frame like it
        output = portrait.render(frame, driver)
        np.testing.assert_array_equal(output, image)
    assert portrait.neutral_frame == 0
    talking = driver.copy()
    talking[LOWER_LIP, 1] += 12
    assert np.abs(portrait.render(frame, talking).astype(int) - image).mean() > 0.2


def test_head_pose_is_removed_so_the_drivers_face_shape_never_reaches_the_source(boy):
    image, landmarks = boy
    portrait = PortraitAnimator().prepare(image, landmarks)
    driver = other_face(landmarks)
    initial = apply_affine(similarity(5, 1.7, (30, 10)), driver)
    turned = apply_affine(similarity(15, 2.0, (45, 4)), driver)  # the same face, only the pose changed
    portrait.render(image, initial)
    moved, head, target = portrait.targets(turned)
    np.testing.assert_allclose(moved, landmarks, atol=1e-6)  # no expression
    rigid = apply_affine(fit_similarity(landmarks, target), landmarks)
    assert np.abs(rigid - target).max() < 1e-6  # the source moves as a whole, its shape kept
    # Relative motion without pose removal carries the driver's shape into the source.
    leaked = transfer_motion(landmarks, turned, initial)
    assert np.abs(apply_affine(fit_similarity(landmarks, leaked), landmarks) - leaked).max() > 1.5


def test_expression_offsets_are_scaled_to_the_source_face(boy):
    image, landmarks = boy
    portrait = PortraitAnimator().prepare(image, landmarks)
    initial = apply_affine(similarity(0, 2.0, (-50, -30)), landmarks)  # a driver twice the size
    brows_up = initial.copy()
    brows_up[17:27, 1] -= 8
    portrait.render(image, initial)
    moved, _, _ = portrait.targets(brows_up)
    np.testing.assert_allclose(moved[17:27] - landmarks[17:27], [[0, -4]] * 10, atol=0.05)


def test_extreme_poses_are_clamped(boy):
    image, landmarks = boy
    options = PortraitOptions()
    portrait = PortraitAnimator(options=options).prepare(image, landmarks)
    portrait.render(image, landmarks)
    centre = landmarks.mean(axis=0)
    wild = apply_affine(similarity(70, 1.6, (0, 0)), landmarks - centre) + centre + (300, 0)
    _, head, _ = portrait.targets(wild)
    scale = np.hypot(*head[:, 0])
    angle = np.degrees(np.arctan2(head[1, 0], head[0, 0]))
    assert abs(angle) <= options.max_angle and scale <= options.max_scale
    shift = apply_affine(head, portrait.centre[None])[0] - portrait.centre
    assert np.linalg.norm(shift) <= options.max_shift * portrait.face_size + 1e-6


def test_ordinary_poses_pass_unchanged(boy):
    # The clamps bend only extreme poses: a 20 degree roll, a lean in and a shift of a
    # fifth of a face reach the source exactly (the landmark error AKD counts).
    image, landmarks = boy
    portrait = PortraitAnimator().prepare(image, landmarks)
    portrait.render(image, landmarks)
    centre = portrait.centre
    pose = similarity(20, 1.15, (0, 0))
    moved = apply_affine(pose, landmarks - centre) + centre + (0.2 * portrait.face_size, 0)
    _, _, target = portrait.targets(moved)
    assert np.abs(target - moved).max() < 1e-6


def test_outside_the_face_the_field_is_smoothed_but_the_face_follows(boy):
    # dlib's landmarks come in whole pixels: a still driver jitters by a pixel. The
    # face passes that on (it must follow a real driver without lag), the hair and
    # background around it hardly move.
    image, landmarks = boy
    random = np.random.default_rng(0)
    jittered = [landmarks] + [landmarks + random.integers(-1, 2, size=(1, 2)) for _ in range(24)]

    def jitter(options):
        portrait = PortraitAnimator(options=options).prepare(image, landmarks)
        frames = np.stack([portrait.render(image, lm) for lm in jittered]).astype(np.float32)
        second = np.abs(frames[2:] - 2 * frames[1:-1] + frames[:-2]).mean(axis=(0, 3))
        still = portrait.still_region()
        face = np.zeros(image.shape[:2], np.uint8)
        cv2.fillConvexPoly(face, cv2.convexHull(np.round(face_outline(landmarks)).astype(np.int32)), 1)
        # Past the band where the face's field gives way to the outer one.
        band = round((options.outer_margin + options.outer_band) * portrait.face_size) + 2
        grown = cv2.dilate(face, np.ones((2 * band + 1, 2 * band + 1), np.uint8)) > 0
        return second[face > 0].mean(), second[~grown & ~still].mean()

    face, outside = jitter(PortraitOptions())
    face_unfiltered, outside_unfiltered = jitter(PortraitOptions(outer_min_cutoff=1000.0))
    assert outside < 0.15 * outside_unfiltered
    assert face > 0.9 * face_unfiltered


def test_a_quick_head_move_does_not_leave_the_hair_behind(boy):
    # The slow outer field trails the face's by at most outer_lag: a quick move shifts
    # the hair almost with the face instead of tearing the band between them.
    image, landmarks = boy
    shifted = landmarks + (0.3 * (np.ptp(landmarks[:, 0])), 0)

    def after_move(options):
        portrait = PortraitAnimator(options=PortraitOptions(gaze=False, **options)).prepare(image, landmarks)
        portrait.render(image, landmarks)
        return portrait.render(image, shifted).astype(np.float32)

    # (Over the narrow band of old between face and hair: the wide one hides the bound.)
    follows = after_move({"outer_min_cutoff": 1000.0, "outer_band": 0.03})
    limited = np.abs(after_move({"outer_band": 0.03}) - follows).mean()
    unlimited = np.abs(after_move({"outer_lag": 10.0, "outer_band": 0.03}) - follows).mean()
    assert limited < 0.6 * unlimited


def test_a_quick_head_move_does_not_fold_the_hair(boy, monkeypatch):
    # While the outer field trails the face's, the band between them takes up the
    # difference. Over 0.03 face sizes it folded over (the backward map's Jacobian
    # went negative: straight-line folds in s7's quiff); over outer_band it does not.
    image, landmarks = boy
    remap, maps = cv2.remap, []

    def spy(source, map_x, map_y, *args, **kwargs):
        maps.append((map_x.copy(), map_y.copy()))
        return remap(source, map_x, map_y, *args, **kwargs)

    monkeypatch.setattr(cv2, "remap", spy)

    def smallest_jacobian(options) -> float:
        portrait = PortraitAnimator(options=PortraitOptions(gaze=False, **options)).prepare(image, landmarks)
        portrait.render(image, landmarks)
        moved = landmarks + (0.1 * np.ptp(landmarks[:, 0]), 0)  # 2.5 face widths a second
        for _ in range(3):
            maps.clear()
            portrait.render(image, moved)
        map_x, map_y = (m for m in maps[-1])
        jacobian = np.gradient(map_x, axis=1) * np.gradient(map_y, axis=0) - np.gradient(map_x, axis=0) * np.gradient(
            map_y, axis=1
        )
        return float(jacobian.min())

    assert smallest_jacobian({}) > 0.1
    assert smallest_jacobian({"outer_band": 0.03}) < 0


def test_the_chin_reaches_its_target_when_the_jaw_opens(boy):
    # The head mask is 1 over the whole face hull: the chin moves in full.
    image, landmarks = boy
    portrait = PortraitAnimator().prepare(image, landmarks)
    portrait.render(image, landmarks)
    opened = landmarks.copy()
    opened[5:12, 1] += 6
    opened[55:60, 1] += 6
    opened[64:68, 1] += 5
    for _ in range(10):  # let the filters settle
        portrait.render(image, opened)
    moved, head, target = portrait.targets(opened)
    field_at = portrait._sample_weight(target[5:12])
    assert np.all(field_at > 0.999)


def test_output_keeps_the_exact_source_size_and_never_squashes_a_wide_source(boy):
    image, landmarks = boy
    wide = cv2.copyMakeBorder(image, 0, 0, 100, 300, cv2.BORDER_REFLECT)  # 256 x 656
    square = PortraitAnimator().prepare(image, landmarks)
    widened = PortraitAnimator().prepare(wide, landmarks + (100, 0))
    talking = landmarks * 1.5 + 20
    talking_open = talking.copy()
    talking_open[LOWER_LIP, 1] += 10
    talking_open[17:27, 1] -= 4
    frame = np.full((300, 300, 3), 90, np.uint8)
    for portrait in (square, widened):
        portrait.render(frame, talking)
    out_square, out_wide = square.render(frame, talking_open), widened.render(frame, talking_open)
    assert out_square.shape == image.shape and out_wide.shape == wide.shape
    # The same face, pixel for pixel where the face is: nothing was resized.
    face = (slice(60, 230), slice(50, 200))
    wide_face = (face[0], slice(150, 300))
    assert np.abs(out_wide[wide_face].astype(int) - out_square[face]).mean() < 1.5
    assert np.abs(out_square[face].astype(int) - image[face]).mean() > 0.5
    # Far from the head the source is left exactly as it was: no seam to hide.
    left, top, right, bottom = widened.region
    assert right < wide.shape[1]
    np.testing.assert_array_equal(out_wide[:, right:], wide[:, right:])


def test_the_mouth_is_filled_from_the_driving_frame_only_when_it_opens(boy):
    image, landmarks = boy
    driver = landmarks * 1.5 + 20
    opened = driver.copy()
    opened[LOWER_LIP, 1] += 14

    def driving_frame(rim: bool) -> np.ndarray:
        """Red lips; in the open mouth white teeth, and with `rim` the dark edge that a
        real open mouth shows just past dlib's inner-lip points."""
        frame = np.full((320, 320, 3), 120, np.uint8)
        cv2.fillPoly(frame, [np.round(opened[48:60]).astype(np.int32)], (170, 60, 60))
        inner = np.zeros(frame.shape[:2], np.uint8)
        cv2.fillPoly(inner, [np.round(opened[INNER_LIPS]).astype(np.int32)], 1)
        if rim:
            frame[cv2.dilate(inner, np.ones((7, 7), np.uint8)) > 0] = (35, 15, 15)
        frame[inner > 0] = (250, 250, 250)
        return frame

    frame = driving_frame(rim=True)
    smile = driver.copy()
    smile[[48, 54], 1] -= 3  # lips move, the mouth stays closed

    def run(fill: bool, target: np.ndarray) -> tuple[np.ndarray, object]:
        portrait = PortraitAnimator(options=PortraitOptions(mouth_fill=fill, gaze=False)).prepare(image, landmarks)
        portrait.render(frame, driver)
        return portrait.render(frame, target), portrait

    np.testing.assert_array_equal(run(True, smile)[0], run(False, smile)[0])
    filled, portrait = run(True, opened)
    plain, _ = run(False, opened)
    _, _, target = portrait.targets(opened)
    mouth = np.zeros(image.shape[:2], np.uint8)
    cv2.fillPoly(mouth, [np.round(target[INNER_LIPS]).astype(np.int32)], 1)
    inside = mouth > 0
    assert filled[inside].mean() > plain[inside].mean() + 25  # the teeth show
    lips = target[48:60]
    x0, y0 = np.floor(lips.min(axis=0)).astype(int) - 2
    x1, y1 = np.ceil(lips.max(axis=0)).astype(int) + 2
    outside = np.ones(image.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    np.testing.assert_array_equal(filled[outside], plain[outside])
    # The opening reaches a little past dlib's inner-lip points (which sit inside the
    # dark edge of a real open mouth); with mouth_grow 0 it stops at them.
    ring = (cv2.dilate(mouth, np.ones((5, 5), np.uint8)) > 0) & ~(cv2.erode(mouth, np.ones((3, 3), np.uint8)) > 0)
    ring &= ~inside
    grown = np.abs(filled[ring].astype(int) - plain[ring]).mean()
    assert grown > 10
    portrait = PortraitAnimator(options=PortraitOptions(gaze=False, mouth_grow=0.0)).prepare(image, landmarks)
    portrait.render(frame, driver)
    tight = portrait.render(frame, opened)
    assert np.abs(tight[ring].astype(int) - plain[ring]).mean() < 0.5 * grown


def _motions(poses, segments=None) -> list:
    frame = np.zeros((4, 4, 3), np.uint8)
    segments = [0] * len(poses) if segments is None else segments
    return [_Motion(frame, segment, pose=np.asarray(pose, float)) for pose, segment in zip(poses, segments)]


def test_a_whole_video_smooths_the_head_pose_without_lag():
    # A steady turn measured with jitter: the smoothed pose stays on the line (no lag:
    # a causal filter would trail it by its delay) and jitters less.
    random = np.random.default_rng(1)
    frames = np.arange(60)
    truth = np.stack([0.004 * frames, np.zeros(60), 0.003 * frames, np.zeros(60)], axis=1)
    measured = truth + random.normal(0, 0.004, truth.shape)
    motions = _motions(measured)
    smoothed = np.array([_smoothed_pose(motions, i, 3, 1.5, 0.01) for i in range(3, 57)])
    error = smoothed - truth[3:57]
    assert np.abs(error.mean(axis=0)).max() < 0.001  # no lag
    assert np.abs(error).mean() < 0.6 * np.abs(measured[3:57] - truth[3:57]).mean()
    # A quick shake of the head is motion, not jitter: it passes (a fixed-width
    # smoothing of the same reach keeps a third of it).
    shake = np.zeros((30, 4))
    shake[:, 2] = 0.2 * np.sin(2 * np.pi * np.arange(30) / 5)
    motions = _motions(shake)
    passed = np.array([_smoothed_pose(motions, i, 3, 1.5, 0.01) for i in range(3, 27)])
    assert np.abs(passed - shake[3:27]).max() < 0.02
    fixed = np.array([_smoothed_pose(motions, i, 3, 1.5, 0.0) for i in range(3, 27)])
    assert np.abs(fixed - shake[3:27]).max() > 0.1
    # Never across a scene cut: the last pose before one is not pulled towards the next.
    poses = [[0, 0, 0, 0]] * 10 + [[0, 0, 0.3, 0]] * 10
    motions = _motions(poses, [0] * 10 + [1] * 10)
    np.testing.assert_allclose(_smoothed_pose(motions, 9, 3, 1.5, 0.01), [0, 0, 0, 0], atol=1e-9)


def test_render_stream_renders_every_frame_and_without_smoothing_is_render(boy):
    image, landmarks = boy
    random = np.random.default_rng(2)
    frame = np.zeros((256, 256, 3), np.uint8)
    driving = [landmarks] + [
        apply_affine(similarity(0.3 * i, 1.0, (0.5 * i, 0)), landmarks) + random.normal(0, 0.7, (1, 2))
        for i in range(1, 12)
    ]
    plain = PortraitAnimator(options=PortraitOptions(pose_smoothing=0.0, gaze=False))
    stepped = plain.prepare(image, landmarks)
    one_by_one = [stepped.render(frame, lm) for lm in driving]
    streamed = list(plain.prepare(image, landmarks).render_stream([frame] * len(driving), driving))
    for a, b in zip(one_by_one, streamed, strict=True):
        np.testing.assert_array_equal(a, b)
    smoothed = list(PortraitAnimator(options=PortraitOptions(gaze=False)).prepare(image, landmarks).render_stream(
        [frame] * len(driving), driving))
    assert len(smoothed) == len(driving)  # the look-ahead is flushed at the end
    np.testing.assert_array_equal(smoothed[0], image)  # the neutral frame is still the source
    assert any(np.abs(a.astype(int) - b).max() > 0 for a, b in zip(smoothed[1:], streamed[1:]))


def test_recalibrate_makes_a_frame_the_neutral_one(boy):
    image, landmarks = boy
    portrait = PortraitAnimator().prepare(image, landmarks)
    driver = landmarks + 5
    portrait.render(image, driver)
    talking = driver.copy()
    talking[LOWER_LIP, 1] += 10
    assert not np.array_equal(portrait.render(image, talking), image)
    portrait.recalibrate(image, talking)
    np.testing.assert_array_equal(portrait.render(image, talking), image)


def test_iris_position_follows_a_dark_disc():
    eye = np.array([[20, 30], [30, 24], [40, 24], [50, 30], [40, 36], [30, 36]], float)
    positions = []
    for centre_x in (28, 35, 42):
        frame = np.full((60, 70, 3), 230, np.uint8)
        cv2.circle(frame, (centre_x, 30), 5, (30, 30, 30), -1)
        positions.append(iris_position(frame, eye)[0])
    assert positions[0] < -0.1 and abs(positions[1]) < 0.05 and positions[2] > 0.1


def test_one_euro_filter_smooths_jitter_and_restarts_at_a_cut():
    rng = np.random.default_rng(0)
    noisy = 5 + rng.normal(0, 1, 200)
    smoothing = OneEuroFilter(25, min_cutoff=1.0, beta=0.0)
    smoothed = np.array([smoothing(value) for value in noisy])
    assert smoothed[20:].std() < 0.4 * noisy[20:].std()
    smoothing.reset()
    assert smoothing(np.array(100.0)) == 100.0  # after a cut the first value passes as it is
    with pytest.raises(ValueError):
        OneEuroFilter(0)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "fakelab", *args], capture_output=True, text=True)


def test_animate_without_a_model_or_checkpoint_uses_the_portrait_model(media, tmp_path):
    driving = tmp_path / "short.mp4"
    frames = [frame for _, frame in zip(range(6), iter_frames(media / "d0.mp4"))]
    with VideoWriter(driving, fps=25) as writer:
        for frame in frames:
            writer.write(frame)
    output = tmp_path / "out.mp4"
    # Without the provenance watermark, so that frame 0 can be compared with the source itself.
    result = run_cli("animate", str(media / "s0.jpg"), str(driving), "-o", str(output), "--no-provenance")
    assert result.returncode == 0, result.stderr
    info = probe_video(output)
    assert (info.width, info.height, info.frame_count) == (600, 704, 6)  # s0.jpg's own size, not squashed
    assert "model portrait" in result.stdout and "driving frame 0" in result.stdout
    assert "of the 600x704 source" in result.stdout
    first = next(iter_frames(output)).astype(int)
    assert np.abs(first - load_image(media / "s0.jpg")).mean() < 3  # frame 0 is the source (after H.264)

    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((200, 300, 3), 128, np.uint8))
    failed = run_cli("animate", str(blank), str(driving), "-o", str(tmp_path / "none.mp4"))
    assert failed.returncode == 1
    assert "no face found in the source image" in failed.stderr
    assert "Traceback" not in failed.stderr and failed.stderr.count("\n") == 1
    assert not (tmp_path / "none.mp4").exists()
