"""Score animation models on a dataset's test videos, by the FOMM paper's protocols.

- reconstruction: each test video is animated from its own first frame with
  absolute motion, every frame reconstructed; L1 against the real frame, AKD and
  MKR from dlib's 68 landmarks of the real and generated frames, AED between
  their dlib 128-d identity embeddings.
- animation: the first frame of one video is animated by another video of a
  different identity, with relative motion (the config's normalisation). There
  is no real frame to compare with, so L1 is not given; AKD and MKR compare the
  generated landmarks with the source's landmarks moved as the driving landmarks
  move (relative to the first driving frame), and AED is the distance to the
  source's identity.

Any model with the Animator protocol (`size` and `animate(source, driving)`) can
be scored; frames are resized to the model's size and the output back.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from fakelab.datasets import FramesDataset, VideoEntry, identity_of
from fakelab.datasets.videos import resize_frame
from fakelab.errors import InputError, NoFaceError
from fakelab.metrics.faces import ANALYSIS_SIZE, FaceReading, read_faces
from fakelab.metrics.scores import (
    ScoreTotals,
    embedding_distances,
    keypoint_distances,
    l1_error,
    missing_flags,
)

SCORE_NAMES = ("l1", "akd", "mkr", "aed", "aed_squared")
DEFINITIONS = {
    "l1": "mean |generated - real| of pixel values in [0, 1] (8-bit frames)",
    "akd": f"mean Euclidean distance of dlib's 68 landmarks, in pixels of {ANALYSIS_SIZE[0]}x{ANALYSIS_SIZE[1]} frames",
    "mkr": "fraction of frames with a face in the reference where dlib finds none in the generated frame",
    "aed": "mean L2 distance of dlib's 128-d face embeddings",
    "aed_squared": "mean squared L2 distance of the embeddings (what the reference pose-evaluation reports as AED)",
}


@dataclass
class VideoResult:
    name: str
    frames: int
    scores: dict[str, float | None]
    skipped: str | None = None  # why the model could not animate it


@dataclass
class Evaluation:
    protocol: str
    model: str
    videos: list[VideoResult] = field(default_factory=list)
    scores: dict[str, float | None] = field(default_factory=dict)

    @property
    def frames(self) -> int:
        return sum(video.frames for video in self.videos if video.skipped is None)

    @property
    def scored_videos(self) -> int:
        return sum(video.skipped is None for video in self.videos)

    def to_json(self) -> dict:
        return {
            "protocol": self.protocol,
            "model": self.model,
            "videos": self.scored_videos,
            "skipped_videos": len(self.videos) - self.scored_videos,
            "frames": self.frames,
            "scores": self.scores,
            "definitions": DEFINITIONS,
            "per_video": [vars(video) for video in self.videos],
        }


def _animate(animator, source: np.ndarray, driving: Sequence[np.ndarray]) -> list[np.ndarray]:
    """The model's frames for dataset frames, at the dataset's size."""
    size = tuple(animator.size)
    frame_size = (source.shape[1], source.shape[0])
    generated = animator.animate(resize_frame(source, size), (resize_frame(frame, size) for frame in driving))
    return [resize_frame(frame, frame_size) for frame in generated]


def _landmarks(readings: Sequence[FaceReading]) -> list:
    return [reading.landmarks for reading in readings]


def _embeddings(readings: Sequence[FaceReading]) -> list:
    return [reading.embedding for reading in readings]


def reconstruction_totals(
    real: Sequence[np.ndarray], generated: Sequence[np.ndarray], real_faces: Sequence[FaceReading]
) -> ScoreTotals:
    generated_faces = read_faces(generated)
    return ScoreTotals(
        l1=[l1_error(g, r) for g, r in zip(generated, real)],
        keypoint=keypoint_distances(_landmarks(real_faces), _landmarks(generated_faces)),
        missing=missing_flags(_landmarks(real_faces), _landmarks(generated_faces)),
        embedding=embedding_distances(_embeddings(real_faces), _embeddings(generated_faces)),
    )


def expected_landmarks(source: FaceReading, driving: Sequence[FaceReading]) -> list[np.ndarray | None]:
    """The source landmarks moved by the driving landmarks' displacement from the first driving face."""
    initial = next((reading.landmarks for reading in driving if reading.landmarks is not None), None)
    if source.landmarks is None or initial is None:
        return [None] * len(driving)
    return [
        None if reading.landmarks is None else source.landmarks + reading.landmarks - initial for reading in driving
    ]


def animation_totals(
    source_face: FaceReading, driving_faces: Sequence[FaceReading], generated: Sequence[np.ndarray]
) -> ScoreTotals:
    generated_faces = read_faces(generated)
    expected = expected_landmarks(source_face, driving_faces)
    identity = [source_face.embedding] * len(generated)
    return ScoreTotals(
        l1=[],
        keypoint=keypoint_distances(expected, _landmarks(generated_faces)),
        missing=missing_flags(expected, _landmarks(generated_faces)),
        embedding=embedding_distances(identity, _embeddings(generated_faces)),
    )


def _read_clip(video: VideoEntry, max_frames: int | None) -> np.ndarray:
    if max_frames is None:
        return video.read()
    return video.read(lambda count: range(min(count, max_frames)))


Progress = Callable[[Iterable], Iterable]


def evaluate_reconstruction(
    models: dict[str, object],
    dataset: FramesDataset,
    max_videos: int | None = None,
    max_frames: int | None = None,
    progress: Progress = lambda items: items,
) -> list[Evaluation]:
    """Score each model (name -> animator) on the same test videos; the real frames are read by dlib once."""
    evaluations = {name: Evaluation("reconstruction", name) for name in models}
    totals = {name: ScoreTotals.empty() for name in models}
    for video in progress(dataset.videos[:max_videos]):
        frames = _read_clip(video, max_frames)
        real_faces = read_faces(frames)
        for name, animator in models.items():
            try:
                generated = _animate(animator, frames[0], frames)
            except NoFaceError as error:
                evaluations[name].videos.append(VideoResult(video.name, len(frames), {}, skipped=str(error)))
                continue
            video_totals = reconstruction_totals(frames, generated, real_faces)
            totals[name].add(video_totals)
            evaluations[name].videos.append(VideoResult(video.name, len(frames), video_totals.scores()))
    for name, evaluation in evaluations.items():
        evaluation.scores = totals[name].scores()
    return list(evaluations.values())


def animation_pairs(dataset: FramesDataset, count: int, seed: int = 0) -> list[tuple[VideoEntry, VideoEntry]]:
    """Up to `count` (source, driving) pairs of videos of different identities, drawn without repeats."""
    candidates = [
        (source, driving)
        for source in dataset.videos
        for driving in dataset.videos
        if identity_of(source.name) != identity_of(driving.name)
    ]
    if not candidates:
        raise InputError(f"the {dataset.split} videos of {dataset.root} show a single identity: no cross-identity pairs")
    order = np.random.default_rng(seed).permutation(len(candidates))[:count]
    return [candidates[i] for i in sorted(order)]


def read_pairs_list(path: str | os.PathLike, dataset: FramesDataset) -> list[tuple[VideoEntry, VideoEntry]]:
    """Pairs from a reference pairs CSV (a header naming `source` and `driving` columns)."""
    try:
        text = Path(path).read_text()
    except UnicodeDecodeError:
        raise InputError(f"{path} is not a pairs list (not a text file)") from None
    lines = [line.strip().split(",") for line in text.splitlines() if line.strip()]
    if not lines or "source" not in lines[0] or "driving" not in lines[0]:
        raise InputError(f"{path} is not a pairs list: its header must name 'source' and 'driving' columns")
    source_column, driving_column = lines[0].index("source"), lines[0].index("driving")
    by_name = {video.name: video for video in dataset.videos}
    pairs = []
    for number, row in enumerate(lines[1:], start=2):
        if len(row) <= max(source_column, driving_column):
            raise InputError(f"{path} line {number} has {len(row)} column(s), not a source and a driving video")
        missing = [name for name in (row[source_column], row[driving_column]) if name not in by_name]
        if missing:
            raise InputError(f"{path} line {number} names video '{missing[0]}', which the dataset does not have")
        pairs.append((by_name[row[source_column]], by_name[row[driving_column]]))
    if not pairs:
        raise InputError(f"{path} lists no pairs")
    return pairs


def evaluate_animation(
    models: dict[str, object],
    pairs: Sequence[tuple[VideoEntry, VideoEntry]],
    max_frames: int | None = None,
    progress: Progress = lambda items: items,
) -> list[Evaluation]:
    """Score each model on cross-identity (source video, driving video) pairs."""
    evaluations = {name: Evaluation("animation", name) for name in models}
    totals = {name: ScoreTotals.empty() for name in models}
    for source_video, driving_video in progress(pairs):
        source = _read_clip(source_video, 1)[0]
        driving = _read_clip(driving_video, max_frames)
        source_face = read_faces([source])[0]
        driving_faces = read_faces(driving, with_embedding=False)
        label = f"{source_video.name} <- {driving_video.name}"
        for name, animator in models.items():
            try:
                generated = _animate(animator, source, driving)
            except NoFaceError as error:
                evaluations[name].videos.append(VideoResult(label, len(driving), {}, skipped=str(error)))
                continue
            pair_totals = animation_totals(source_face, driving_faces, generated)
            totals[name].add(pair_totals)
            evaluations[name].videos.append(VideoResult(label, len(driving), pair_totals.scores()))
    for name, evaluation in evaluations.items():
        evaluation.scores = totals[name].scores()
    return list(evaluations.values())


def _cell(value: float | None, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown_table(evaluations: Sequence[Evaluation]) -> str:
    """One row per model; AKD in pixels at 256x256, AED as L2 and as squared L2 (the reference's)."""
    header = "| model | protocol | clips | frames | L1 | AKD (px @256) | MKR | AED (L2) | AED (squared L2) |"
    rule = "|---|---|---:|---:|---:|---:|---:|---:|---:|"
    rows = []
    for evaluation in evaluations:
        s = evaluation.scores
        rows.append(
            f"| {evaluation.model} | {evaluation.protocol} | {evaluation.scored_videos} | {evaluation.frames} | "
            f"{_cell(s.get('l1'), 4)} | {_cell(s.get('akd'), 3)} | {_cell(s.get('mkr'), 3)} | "
            f"{_cell(s.get('aed'), 3)} | {_cell(s.get('aed_squared'), 3)} |"
        )
    return "\n".join([header, rule, *rows])
