"""The face pipeline on real faces: detection, tracking, cropping, undoing the crop, paste-back."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import shared_path

from fakelab.animation.landmark_warp import LandmarkWarpAnimator
from fakelab.cli import main
from fakelab.demo import astronaut, grace_hopper
from fakelab.errors import InputError, NoFaceError
from fakelab.faces import (
    Box,
    crop_image,
    crop_video,
    detect_faces,
    face_embedding,
    find_best_frame,
    find_faces,
    largest_face,
    landmark_box,
    paste_back,
    read_boxes,
    track_faces,
)
from fakelab.video import VideoWriter, has_audio, iter_frames, load_image, probe_video

VIDEOS = ("d0", "d12", "d13")
STILL_HEADS = ("d0", "d13")
# Where the astronaut's face is, as dlib's HOG detector frames it.
ASTRONAUT_FACE = Box(176.5, 77.0, 266.5, 167.0)


@pytest.fixture(scope="module")
def crops(tmp_path_factory):
    """Each test video cropped once, with `fakelab.faces.crop_video`."""
    out = tmp_path_factory.mktemp("crops")
    return {
        name: crop_video(shared_path("media", f"{name}.mp4"), out / f"{name}.mp4") for name in VIDEOS
    }


@pytest.fixture(scope="module")
def crop_frames(crops):
    return {name: list(iter_frames(result.video)) for name, result in crops.items()}


@pytest.mark.parametrize("detector", ["hog", "cnn", "haar"])
def test_each_detector_finds_the_astronaut(detector):
    # Faces of 80+ pixels: the image is not enlarged, which keeps the CNN detector quick.
    found = detect_faces(astronaut(), detector, min_face=80)
    best = max(ASTRONAUT_FACE.iou(d.box) for d in found)
    print(f"{detector}: {len(found)} detection(s), best IoU with the face {best:.2f}")
    assert best > 0.5


def test_landmarks_frame_the_face_like_the_detector():
    landmarks = largest_face(astronaut(), "the astronaut")
    assert landmarks.shape == (68, 2)
    assert ASTRONAUT_FACE.iou(landmark_box(landmarks)) > 0.6


def test_embeddings_tell_people_apart():
    image, other = astronaut(), grace_hopper()
    mirrored = np.ascontiguousarray(image[:, ::-1])
    embedding = face_embedding(image, largest_face(image, "the astronaut"))
    same = np.linalg.norm(embedding - face_embedding(mirrored, largest_face(mirrored, "mirror")))
    different = np.linalg.norm(embedding - face_embedding(other, largest_face(other, "hopper")))
    print(f"embedding distance: same person {same:.2f}, different people {different:.2f}")
    assert embedding.shape == (128,)
    assert same < 0.6 < different


def test_an_image_without_a_face_raises_no_face_error():
    with pytest.raises(NoFaceError, match="no face found in the grey image"):
        largest_face(np.full((200, 200, 3), 128, np.uint8), "the grey image")


@pytest.mark.parametrize("name", VIDEOS)
def test_a_face_is_found_in_almost_every_frame(crops, name):
    plan = crops[name].plan
    print(f"{name}: face found in {100 * plan.found_fraction:.1f}% of {plan.frame_count} frames, gaps {plan.gaps()}")
    assert plan.found_fraction >= 0.98


@pytest.mark.parametrize("name", VIDEOS)
def test_the_crop_keeps_the_whole_face(crops, crop_frames, name):
    frames = crop_frames[name]
    info = probe_video(crops[name].video)
    assert (info.width, info.height) == (256, 256)
    assert len(frames) == crops[name].plan.frame_count
    whole = 0
    for frame in frames:
        faces = find_faces(frame, min_face=64)
        whole += bool(faces) and bool(((faces[0] >= 0) & (faces[0] <= 255)).all())
    print(f"{name}: all 68 landmarks inside the crop in {100 * whole / len(frames):.1f}% of frames")
    assert whole / len(frames) >= 0.98


def test_crop_of_a_portrait_video_keeps_frame_count_fps_and_audio(crops):
    portrait = shared_path("media", "d13.mp4")
    source, cropped = probe_video(portrait), probe_video(crops["d13"].video)
    assert (source.width, source.height) == (720, 1280)
    assert (cropped.width, cropped.height) == (256, 256)
    assert sum(1 for _ in iter_frames(crops["d13"].video)) == sum(1 for _ in iter_frames(portrait))
    assert cropped.fps == pytest.approx(source.fps)
    assert has_audio(crops["d12"].video) and not has_audio(crops["d13"].video)


@pytest.mark.parametrize("name", STILL_HEADS)
def test_boxes_of_a_still_head_do_not_jitter(crops, name):
    face = crops[name].plan.face
    centres = (face.boxes[:, :2] + face.boxes[:, 2:]) / 2
    sides = face.boxes[:, 2] - face.boxes[:, 0]
    jitter = np.linalg.norm(np.diff(centres, axis=0), axis=1) / sides[1:]
    print(f"{name}: face box centre moves {100 * jitter.mean():.2f}% of its size per frame on average "
          f"(max {100 * jitter.max():.2f}%); {len(crops[name].plan.segments)} still crop box(es)")
    assert jitter.mean() < 0.01
    assert len(crops[name].plan.segments) == 1


def test_the_boxes_json_undoes_the_crop(crops, crop_frames):
    result = crops["d0"]
    plan = read_boxes(result.boxes)
    assert plan.frame_count == result.plan.frame_count
    assert (plan.boxes[:, 2] - plan.boxes[:, 0] == plan.boxes[:, 3] - plan.boxes[:, 1]).all()
    box = plan.box(0)
    in_crop = largest_face(crop_frames["d0"][0], "the first crop")
    in_source = in_crop * box.width / plan.size + (box.left, box.top)
    error = np.linalg.norm(in_source - result.plan.face.landmarks[0], axis=1).mean()
    print(f"landmarks mapped back through the crop box land {error:.1f} px from the original ones")
    assert error < 0.02 * box.width


def test_crop_of_a_video_without_a_face_fails_and_writes_nothing(tmp_path, capsys):
    noise = tmp_path / "noise.mp4"
    rng = np.random.default_rng(0)
    with VideoWriter(noise, 10) as writer:
        for _ in range(8):
            writer.write(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8))
    out = tmp_path / "out" / "crop.mp4"
    assert main(["crop", str(noise), "-o", str(out)]) == 1
    assert "no face found" in capsys.readouterr().err
    assert not out.parent.exists() or not any(out.parent.iterdir())


def test_crop_source_mode_writes_the_face_and_its_box(tmp_path, capsys):
    source = shared_path("media", "s7.jpg")
    out = tmp_path / "s7.png"
    assert main(["crop", "--source", str(source), "-o", str(out)]) == 0
    assert str(out) in capsys.readouterr().out
    crop = load_image(out)
    assert crop.shape == (256, 256, 3)
    boxes = json.loads((tmp_path / "s7.boxes.json").read_text())
    left, top, right, bottom = boxes["box"]
    assert right - left == bottom - top
    assert len(boxes["landmarks"]) == 68


def test_best_frame_is_the_one_with_the_source_pose(crop_frames):
    frames = crop_frames["d12"][::2]
    assert find_best_frame(frames[45], frames) == 45


def test_paste_back_changes_only_the_face(crop_frames, tmp_path):
    source = load_image(shared_path("media", "s0.jpg"))
    crop = crop_image(source)
    left, top, right, bottom = (int(v) for v in crop.box.as_list())
    outside = np.ones(source.shape[:2], dtype=bool)
    outside[max(top, 0) : bottom, max(left, 0) : right] = False
    animated = LandmarkWarpAnimator().animate(crop.image, crop_frames["d0"][::2])
    out = tmp_path / "pasted.mp4"
    face_changes = []
    with VideoWriter(out, 25) as writer:
        for frame in paste_back(source, crop.box, animated, crop.landmarks):
            difference = np.abs(frame.astype(np.int16) - source)
            assert not difference[outside].any()
            face_changes.append(difference[~outside].mean())
            writer.write(frame)
    encoded_differences = []
    for frame in iter_frames(out):
        assert frame.shape == source.shape
        encoded_differences.append(np.abs(frame.astype(np.int16) - source)[outside].mean())
    print(f"paste-back: the video differs from the source by {np.mean(encoded_differences):.2f}/255 "
          f"on average outside the face box; the face box changes by up to {max(face_changes):.1f}/255")
    assert np.mean(encoded_differences) < 2
    assert max(face_changes) > 2


def two_people(frames: int, astronaut_away: range) -> list[np.ndarray]:
    """Grace Hopper on the left throughout, the astronaut on the right except in `astronaut_away`."""
    left = crop_image(grace_hopper(), 200).image
    right = crop_image(astronaut(), 160).image
    video = []
    for index in range(frames):
        frame = np.full((240, 480, 3), 100, np.uint8)
        frame[20:220, 10:210] = left
        if index not in astronaut_away:
            frame[40:200, 300:460] = right
        video.append(frame)
    return video


def test_tracking_follows_several_faces_and_reports_gaps():
    tracking = track_faces(two_people(30, range(10, 20)), detect_every=5, max_hold=3)
    assert len(tracking.tracks) == 2  # the astronaut's return continues her track
    hopper, astronaut_face = tracking.face(0), tracking.face(1)
    assert hopper.found_fraction == 1.0 and hopper.boxes[0, 0] < 240
    assert astronaut_face.gaps() == [(10, 20)] and astronaut_face.boxes[0, 0] > 240
    np.testing.assert_array_equal(astronaut_face.boxes[10:20], astronaut_face.boxes[[9] * 10])
    with pytest.raises(InputError, match="no face 2"):
        tracking.face(2)
