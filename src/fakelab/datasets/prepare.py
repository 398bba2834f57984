"""Turn raw videos into a training dataset: square face crops, cut into clips, split by identity.

Each input video is followed by the face pipeline (`fakelab.faces.plan_video_crop`);
every segment over which the crop box stays still becomes one clip, written as a
folder of PNG frames (the reference's vox-png layout) or an mp4, named
`<video stem>#<segment>` so that id sampling groups the clips of one video.
Whole videos (all their clips) go to train/ or test/.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from itertools import chain
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from fakelab.datasets.frames import IDENTITY_SEPARATOR
from fakelab.datasets.videos import resize_frame
from fakelab.atomic import atomic_output
from fakelab.errors import InputError, NoFaceError
from fakelab.faces import apply_crop, plan_video_crop
from fakelab.video import VideoWriter, iter_frames, probe_video, save_image

FORMATS = ("png", "mp4")
SPLIT_CHOICES = ("auto", "train", "test")
# Written in the dataset folder after each video: an interrupted run continues where it stopped.
MANIFEST_NAME = ".fakelab-prepare.json"


@dataclass
class PreparedVideo:
    source: Path
    split: str
    clips: list[Path] = field(default_factory=list)
    skipped: str | None = None
    earlier: bool = False  # prepared by an earlier run into the same folder


def assign_splits(videos: Sequence[Path], split: str, test_fraction: float, seed: int) -> dict[Path, str]:
    """`auto`: a seeded `test_fraction` of the videos (at least one, when there are two or more) go to test/."""
    if split not in SPLIT_CHOICES:
        raise InputError(f"unknown split '{split}': use {', '.join(SPLIT_CHOICES)}")
    if split != "auto":
        return {video: split for video in videos}
    if not 0 <= test_fraction < 1:
        raise InputError("the test fraction must be in [0, 1)")
    test_count = math.ceil(test_fraction * len(videos)) if len(videos) > 1 and test_fraction > 0 else 0
    test = set(np.random.default_rng(seed).permutation(len(videos))[:test_count].tolist())
    return {video: "test" if index in test else "train" for index, video in enumerate(videos)}


@contextlib.contextmanager
def _atomic_folder(target: Path) -> Iterator[Path]:
    """A folder that appears at `target` whole or not at all."""
    if target.exists():
        raise InputError(f"{target} already exists: prepare into a new dataset folder")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        yield tmp
        tmp.rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write_clip(frames: Iterable[np.ndarray], target: Path, file_format: str, fps: float) -> None:
    if file_format == "png":
        with _atomic_folder(target) as folder:
            for index, frame in enumerate(frames):
                save_image(folder / f"{index:07d}.png", frame)
        return
    if target.exists():
        raise InputError(f"{target} already exists: prepare into a new dataset folder")
    with VideoWriter(target, fps) as writer:  # written atomically
        for frame in frames:
            writer.write(frame)


def _clip_name(video: Path, segment: int) -> str:
    stem = video.stem.replace(IDENTITY_SEPARATOR, "_")
    return f"{stem}{IDENTITY_SEPARATOR}{segment:03d}"


def prepare_dataset(
    videos: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    size: int = 256,
    split: str = "auto",
    test_fraction: float = 0.2,
    min_frames: int = 16,
    file_format: str = "png",
    face_crop: bool = True,
    margin: float = 0.5,
    seed: int = 0,
    progress: Callable[[Iterable], Iterable] = lambda items: items,
    map_jobs: Callable[[Callable, list], Iterable] = map,
) -> list[PreparedVideo]:
    """Write the dataset; a video without a face (or without a long enough clip) is reported and skipped.

    `map_jobs(prepare_video, jobs)` runs the videos, in order: `map` by default, a Ray map
    with `fakelab dataset prepare --ray` (fakelab.scale.prepare)."""
    if file_format not in FORMATS:
        raise InputError(f"unknown dataset format '{file_format}': use {', '.join(FORMATS)}")
    paths = [Path(video) for video in videos]
    if len({path.stem for path in paths}) != len(paths):
        raise InputError("input videos must have distinct names: their names become the clips' identities")
    output = Path(output)
    splits = assign_splits(paths, split, test_fraction, seed)
    options = {"size": size, "format": file_format, "face_crop": face_crop, "margin": margin, "min_frames": min_frames}
    manifest = _read_manifest(output, options)
    earlier: dict[Path, PreparedVideo] = {}
    jobs = []
    for path in paths:
        done = manifest["videos"].get(_video_key(path))
        if done is not None:
            clips = [Path(clip) for clip in done["clips"]]
            earlier[path] = PreparedVideo(path, done["split"], clips, done["skipped"], True)
            continue
        _remove_clips(output, path, file_format)  # of an earlier, interrupted attempt at this video
        jobs.append(VideoJob(path, splits[path], output, size, min_frames, file_format, face_crop, margin))
    # Videos prepared by an earlier run count towards the progress bar first.
    prepared = list(earlier.values())
    for result in progress(chain(earlier.values(), map_jobs(prepare_video, jobs))):
        if result.earlier:
            continue
        prepared.append(result)
        manifest["videos"][_video_key(result.source)] = {
            "split": result.split, "clips": [str(clip) for clip in result.clips], "skipped": result.skipped
        }
        _write_manifest(output, manifest)
    order = {path: index for index, path in enumerate(paths)}
    prepared.sort(key=lambda video: order[video.source])
    if not any(video.clips for video in prepared):
        reasons = "; ".join(f"{video.source.name}: {video.skipped}" for video in prepared)
        raise InputError(f"no clip was written ({reasons})")
    return prepared


@dataclass(frozen=True)
class VideoJob:
    """One input video's share of `prepare_dataset`: independent of the others."""

    path: Path
    split: str
    output: Path
    size: int
    min_frames: int
    file_format: str
    face_crop: bool
    margin: float


def prepare_video(job: VideoJob) -> PreparedVideo:
    """Cut one video into clips under `job.output / job.split`; an unreadable or faceless video is
    reported as skipped (its partial clips removed), so the other videos go on."""
    result = PreparedVideo(job.path, job.split)
    try:
        result.clips = _prepare_video(job)
    except InputError as error:
        _remove_clips(job.output, job.path, job.file_format)
        result.skipped = str(error)
    else:
        if not result.clips:
            result.skipped = f"no clip of at least {job.min_frames} frames"
    return result


def _prepare_video(job: VideoJob) -> list[Path]:
    path = job.path
    info = probe_video(path)
    if job.face_crop:
        try:
            plan = plan_video_crop(path, size=job.size, margin=job.margin)
        except NoFaceError as error:
            raise InputError(str(error)) from None
        segments = plan.segments
        frames = apply_crop(iter_frames(path), plan)
    else:
        segments = [(0, info.frame_count)]
        frames = (_centre_square(frame, job.size) for frame in iter_frames(path))
    folder = job.output / job.split
    return _write_segments(frames, segments, path, folder, job.file_format, info.fps, job.min_frames)


def _video_key(path: Path) -> str:
    """A video in the manifest: its resolved path, size and modification time (a changed file is redone)."""
    status = path.stat()
    return f"{path.resolve()}|{status.st_size}|{status.st_mtime_ns}"


def _read_manifest(output: Path, options: dict) -> dict:
    path = output / MANIFEST_NAME
    if not path.is_file():
        return {"format": "fakelab-prepare/1", "options": options, "videos": {}}
    try:
        manifest = json.loads(path.read_text())
        manifest["videos"].items()
    except (ValueError, KeyError, TypeError, AttributeError, OSError):
        raise InputError(f"{path} is damaged: delete it (and the dataset folder) to start over") from None
    if manifest.get("options") != options:
        raise InputError(
            f"{output} was prepared with other options ({manifest.get('options')}): use the same ones to continue, "
            "or a new folder"
        )
    return manifest


def _write_manifest(output: Path, manifest: dict) -> None:
    with atomic_output(output / MANIFEST_NAME) as tmp:
        tmp.write_text(json.dumps(manifest, indent=1))


def _remove_clips(output: Path, video: Path, file_format: str) -> None:
    """Clips of `video` left in either split by a run that stopped before finishing it."""
    if not (output / MANIFEST_NAME).is_file():
        return  # a folder this version did not start: never delete there
    suffix = "" if file_format == "png" else f".{file_format}"
    prefix = _clip_name(video, 0)[:-3]
    for split in ("train", "test"):
        for clip in (output / split).glob(f"{glob_escape(prefix)}[0-9][0-9][0-9]{suffix}"):
            if clip.is_dir():
                shutil.rmtree(clip)
            else:
                clip.unlink()


def glob_escape(text: str) -> str:
    import glob

    return glob.escape(text)


def _write_segments(
    frames: Iterable[np.ndarray],
    segments: Sequence[tuple[int, int]],
    video: Path,
    folder: Path,
    file_format: str,
    fps: float,
    min_frames: int,
) -> list[Path]:
    """Stream the frames once, writing each segment of at least `min_frames` as a clip."""
    frame_iter = iter(frames)
    suffix = "" if file_format == "png" else f".{file_format}"
    clips = []
    for index, (start, end) in enumerate(segments):
        segment = (frame for _, frame in zip(range(end - start), frame_iter))
        if end - start < min_frames:
            for _ in segment:  # skip it
                pass
            continue
        target = folder / f"{_clip_name(video, index)}{suffix}"
        _write_clip(segment, target, file_format, fps)
        clips.append(target)
    return clips


def _centre_square(frame: np.ndarray, size: int) -> np.ndarray:
    height, width = frame.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return resize_frame(np.ascontiguousarray(frame[top : top + side, left : left + side]), (size, size))
