"""Score videos, images and folders of them with a deepfake detector.

A video is scored on `frames` frames sampled evenly through it. The face is followed
across those frames by the face pipeline's tracker (a full detection now and then, a
cheap re-detection near the last box otherwise) rather than detected afresh in each
frame, and cropped as FaceForensics++ does: a square 1.3 times the face box, centred on
it. All crops go through the model in batches. The video score is the sigmoid of the
mean frame logit, i.e. frames are averaged in log-odds, as Bonettini et al. average
frame scores; the verdict is "fake" when it reaches the threshold.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from fakelab.detection.spec import DeepfakeDetector, fold_batch_norms
from fakelab.errors import FakelabError, InputError, NoFaceError
from fakelab.faces.crop import crop_frame
from fakelab.faces.detect import Box
from fakelab.faces.landmarks import find_faces, landmark_box
from fakelab.faces.tracking import FaceTracker
from fakelab.video import load_image, probe_video
from fakelab.video.reader import open_media

PathLike = str | os.PathLike

FFPP_MARGIN = 1.3
DEFAULT_FRAMES = 32
DEFAULT_THRESHOLD = 0.5
DEFAULT_BATCH = 8
SCORING_RULE = "video score = sigmoid(mean of the frame logits)"
VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv", ".gif"})
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"})


def sigmoid(x: np.ndarray | float) -> np.ndarray | float:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


@dataclass
class FaceCrops:
    """The face followed through the sampled frames of one video (or the face of an image).

    `crops` are square RGB crops at the size they were asked for; `landmarks` are the 68
    landmarks in crop pixels; `boxes` the crop squares in frame pixels; `detected` tells
    frames where the face was found from frames where the tracker held its last position.
    """

    source: Path
    is_video: bool
    frame_indices: np.ndarray  # (N,) int
    fps: float | None
    frame_count: int  # frames in the video; 1 for an image
    sampled: int  # frames looked at
    crops: list[np.ndarray]
    landmarks: np.ndarray  # (N, 68, 2)
    boxes: np.ndarray  # (N, 4) left, top, right, bottom
    detected: np.ndarray  # (N,) bool
    faces_followed: int

    def __len__(self) -> int:
        return len(self.crops)


@dataclass
class VideoScore:
    """The detector's scores for one file: per frame, and for the whole video.

    `logits` are the fake log-odds of each scored frame; `score` is the sigmoid of their
    mean, and `verdict` compares it with `threshold`.
    """

    faces: FaceCrops
    logits: np.ndarray
    threshold: float
    arch: str

    @property
    def source(self) -> Path:
        return self.faces.source

    @property
    def probabilities(self) -> np.ndarray:
        return sigmoid(self.logits)

    @property
    def mean_logit(self) -> float:
        return float(np.mean(self.logits))

    @property
    def score(self) -> float:
        return float(sigmoid(self.mean_logit))

    @property
    def is_fake(self) -> bool:
        return self.score >= self.threshold

    @property
    def verdict(self) -> str:
        return "fake" if self.is_fake else "real"

    @property
    def times(self) -> np.ndarray:
        """Seconds into the video of each scored frame (zeros for an image)."""
        fps = self.faces.fps or 0.0
        return self.faces.frame_indices / fps if fps > 0 else np.zeros(len(self.logits))

    def to_json(self) -> dict:
        faces = self.faces
        return {
            "file": str(faces.source),
            "kind": "video" if faces.is_video else "image",
            "verdict": self.verdict,
            "score": self.score,
            "mean_logit": self.mean_logit,
            "threshold": self.threshold,
            "arch": self.arch,
            "frames_in_video": faces.frame_count,
            "frames_sampled": faces.sampled,
            "frames_scored": len(self.logits),
            "faces_followed": faces.faces_followed,
            "frames": [
                {
                    "index": int(index),
                    "time": float(time),
                    "logit": float(logit),
                    "probability": float(probability),
                    "face_found": bool(found),
                }
                for index, time, logit, probability, found in zip(
                    faces.frame_indices, self.times, self.logits, self.probabilities, faces.detected
                )
            ],
        }

    def summary(self) -> str:
        faces = self.faces
        if not faces.is_video:
            return f"{faces.source}: {self.verdict.upper()} (probability fake {self.score:.3f}, threshold {self.threshold:g})"
        return (
            f"{faces.source}: {self.verdict.upper()} (score {self.score:.3f}, threshold {self.threshold:g}; "
            f"{SCORING_RULE} over {len(self.logits)} frames, face found in "
            f"{int(faces.detected.sum())} of {faces.sampled} sampled)"
        )


@dataclass
class ScanFailure:
    source: Path
    error: str

    def to_json(self) -> dict:
        return {"file": str(self.source), "error": self.error}


@dataclass
class ScanResult:
    """Scores of every file that could be scored, and why the others could not."""

    scores: list[VideoScore] = field(default_factory=list)
    failures: list[ScanFailure] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "scoring": SCORING_RULE,
            "results": [score.to_json() for score in self.scores],
            "failures": [failure.to_json() for failure in self.failures],
        }


def sample_indices(frame_count: int, count: int) -> np.ndarray:
    """`count` frame indices spread evenly from the first frame to the last (all when fewer)."""
    if count < 1:
        raise InputError(f"the number of frames to score must be at least 1, got {count}")
    if frame_count <= count:
        return np.arange(frame_count)
    return np.unique(np.round(np.linspace(0, frame_count - 1, count)).astype(np.int64))


def frames_at(path: PathLike, indices: Sequence[int]) -> Iterator[tuple[int, np.ndarray]]:
    """(index, RGB frame) for the wanted frame indices, in order.

    Every frame is decoded (H.264 cannot skip), but only the wanted ones are converted
    to RGB, which is most of the cost of a frame that is thrown away.
    """
    from fakelab.video.reader import _decoded, _to_rgb, _video_stream

    wanted = iter(sorted(set(int(i) for i in indices)))
    next_index = next(wanted, None)
    with open_media(path) as container:
        stream = _video_stream(container, path)
        for index, frame in enumerate(_decoded(container, stream, path)):
            if next_index is None:
                return
            if index == next_index:
                yield index, _to_rgb(frame, None)
                next_index = next(wanted, None)


def ffpp_crop_box(box: Box, frame_size: tuple[int, int], margin: float = FFPP_MARGIN) -> list[int]:
    """The FaceForensics++ crop of a face box: a square `margin` times the box's longer side,
    centred on it, moved to start inside the frame and cut down to end inside it."""
    width, height = frame_size
    side = int(max(box.width, box.height) * margin)
    centre_x, centre_y = (int(box.left) + int(box.right)) // 2, (int(box.top) + int(box.bottom)) // 2
    left = max(int(centre_x - side // 2), 0)
    top = max(int(centre_y - side // 2), 0)
    side = max(1, min(side, width - left, height - top))
    return [left, top, left + side, top + side]


def _crop_face(frame: np.ndarray, landmarks: np.ndarray, size: int) -> tuple[np.ndarray, list[int], np.ndarray]:
    """(crop, crop box, landmarks in crop pixels) of the face with these landmarks."""
    box = ffpp_crop_box(landmark_box(landmarks), (frame.shape[1], frame.shape[0]))
    crop = crop_frame(frame, box, size)
    in_crop = (landmarks - (box[0], box[1])) * (size / (box[2] - box[0]))
    return crop, box, in_crop


@dataclass
class _TrackCrops:
    indices: list[int] = field(default_factory=list)
    crops: list[np.ndarray] = field(default_factory=list)
    landmarks: list[np.ndarray] = field(default_factory=list)
    boxes: list[list[int]] = field(default_factory=list)
    detected: list[bool] = field(default_factory=list)

    def rank(self) -> tuple[int, int]:
        return sum(self.detected), len(self.detected)


def video_faces(
    path: PathLike,
    size: int,
    frames: int = DEFAULT_FRAMES,
    face_detector: str | None = None,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> FaceCrops:
    """Crops of the main face (the one found in most sampled frames) of a video.

    Raises NoFaceError when no face is found in any sampled frame.
    """
    path = Path(path)
    info = probe_video(path)
    indices = sample_indices(info.frame_count, frames)
    stream = frames_at(path, indices)
    return follow_face(progress(stream) if progress else stream, size, path, info.fps, info.frame_count, face_detector)


def follow_face(
    indexed_frames: Iterable[tuple[int, np.ndarray]],
    size: int,
    source: PathLike,
    fps: float | None,
    frame_count: int,
    face_detector: str | None = None,
) -> FaceCrops:
    """Crops of the main face (the one found in most frames) of (index, RGB frame) pairs
    sampled from a video, in order. Raises NoFaceError when no face is found in any."""
    # The tracker counts sampled frames, which may be far apart: a face missed in more
    # than a few samples in a row is dropped rather than held where it was.
    tracker = FaceTracker(face_detector, detect_every=16, max_hold=3)
    tracks: dict[int, _TrackCrops] = {}
    sampled = 0
    for index, frame in indexed_frames:
        sampled += 1
        for face in tracker.update(frame):
            crop, box, landmarks = _crop_face(frame, face.landmarks, size)
            track = tracks.setdefault(face.track_id, _TrackCrops())
            track.indices.append(index)
            track.crops.append(crop)
            track.landmarks.append(landmarks)
            track.boxes.append(box)
            track.detected.append(face.detected)
    if not tracks:
        raise NoFaceError(f"{source} (looked in {sampled} frames sampled through it)")
    main = max(tracks.values(), key=_TrackCrops.rank)
    return FaceCrops(
        source=Path(source),
        is_video=True,
        frame_indices=np.asarray(main.indices, dtype=np.int64),
        fps=fps,
        frame_count=frame_count,
        sampled=sampled,
        crops=main.crops,
        landmarks=np.asarray(main.landmarks, dtype=np.float64),
        boxes=np.asarray(main.boxes, dtype=np.int64),
        detected=np.asarray(main.detected, dtype=bool),
        faces_followed=len(tracks),
    )


def image_faces(path: PathLike, size: int, face_detector: str | None = None) -> FaceCrops:
    """The crop of the largest face of an image (transparency is flattened onto white)."""
    path = Path(path)
    image = load_image(path)
    faces = find_faces(image, face_detector)
    if not faces:
        raise NoFaceError(str(path))
    crop, box, landmarks = _crop_face(image, faces[0], size)
    return FaceCrops(
        source=path,
        is_video=False,
        frame_indices=np.zeros(1, dtype=np.int64),
        fps=None,
        frame_count=1,
        sampled=1,
        crops=[crop],
        landmarks=landmarks[None],
        boxes=np.asarray([box], dtype=np.int64),
        detected=np.ones(1, dtype=bool),
        faces_followed=len(faces),
    )


def is_image(path: PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def is_media(path: PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES | IMAGE_SUFFIXES


def file_faces(
    path: PathLike,
    size: int,
    frames: int = DEFAULT_FRAMES,
    face_detector: str | None = None,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> FaceCrops:
    """Face crops of a video or an image, told apart by the file's suffix."""
    if is_image(path):
        return image_faces(path, size, face_detector)
    return video_faces(path, size, frames, face_detector, progress)


def detector_device(detector: torch.nn.Module) -> torch.device:
    return next(detector.parameters()).device


def ready_for_inference(detector: DeepfakeDetector, device: str | torch.device = "cpu") -> DeepfakeDetector:
    """The detector on `device`, in eval mode, its batch norms folded into the convolutions
    before them, its weights in channels-last order: on CPU the depthwise convolutions of
    EfficientNets run several times faster on batches that way."""
    return fold_batch_norms(detector.eval()).to(device=device, memory_format=torch.channels_last)


def score_frames(detector: DeepfakeDetector, face_crops: Sequence[np.ndarray], batch_size: int = DEFAULT_BATCH) -> np.ndarray:
    """Fake log-odds (float64, one per crop) of uint8 RGB face crops, in batches, no gradients.

    The crops are resized and normalised as the detector's `input_spec` says. For
    gradients (attacks, Grad-CAM), call `detector.fake_logit(detector.input_spec.prepare(crops))`.
    """
    if len(face_crops) == 0:
        return np.zeros(0)
    device = detector_device(detector)
    was_training = detector.training
    detector.eval()
    logits = []
    try:
        with torch.inference_mode():
            for start in range(0, len(face_crops), batch_size):
                batch = detector.input_spec.prepare(face_crops[start : start + batch_size])
                batch = batch.to(device, memory_format=torch.channels_last)
                logits.append(detector.fake_logit(batch).double().cpu().numpy())
    finally:
        detector.train(was_training)
    return np.concatenate(logits)


def score_faces(detector: DeepfakeDetector, faces: FaceCrops, threshold: float = DEFAULT_THRESHOLD) -> VideoScore:
    logits = score_frames(detector, faces.crops)
    if not np.isfinite(logits).all():
        # A verdict from NaN would read "REAL (score nan)": refuse it instead.
        raise InputError(f"the detector gives non-finite scores on {faces.source}: its weights are unusable")
    return VideoScore(faces, logits, threshold, detector.arch)


def score_file(
    detector: DeepfakeDetector,
    path: PathLike,
    frames: int = DEFAULT_FRAMES,
    threshold: float = DEFAULT_THRESHOLD,
    face_detector: str | None = None,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> VideoScore:
    """Score one video or image (see the module's docstring for how)."""
    faces = file_faces(path, detector.input_spec.size, frames, face_detector, progress)
    return score_faces(detector, faces, threshold)


def media_files(folder: PathLike, recursive: bool = False) -> list[Path]:
    """The videos and images in a folder (and its subfolders when `recursive`), by path;
    hidden files are left out. Raises InputError when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"{folder} is not a folder")
    entries = folder.rglob("*") if recursive else folder.iterdir()
    found = sorted(p for p in entries if p.is_file() and not p.name.startswith(".") and is_media(p))
    if not found:
        raise InputError(f"{folder} holds no videos or images")
    return found


def scan(
    detector: DeepfakeDetector,
    paths: Iterable[PathLike],
    frames: int = DEFAULT_FRAMES,
    threshold: float = DEFAULT_THRESHOLD,
    face_detector: str | None = None,
    on_result: Callable[[VideoScore | ScanFailure], None] | None = None,
) -> ScanResult:
    """Score file after file; a file that cannot be scored (unreadable, no face) is recorded
    as a failure and the scan goes on."""
    result = ScanResult()
    for path in paths:
        try:
            outcome: VideoScore | ScanFailure = score_file(detector, path, frames, threshold, face_detector)
            result.scores.append(outcome)
        except FakelabError as error:
            outcome = ScanFailure(Path(path), str(error))
            result.failures.append(outcome)
        if on_result:
            on_result(outcome)
    return result
