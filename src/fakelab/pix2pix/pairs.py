"""Training pairs from talking-head videos: a sketch of the face (A) against the face crop (B).

Each video's main face is followed and cropped as `fakelab crop` does (one still
box per segment, DEFAULT_MARGIN around the face). Frames where the face was not
found are skipped. The last `test_fraction` of each video's frames go to the
test split, so held-out frames are not neighbours of training frames.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import numpy as np

from fakelab.errors import InputError
from fakelab.pix2pix.sketch import edge_sketch, landmark_sketch
from fakelab.video import iter_frames, probe_video, save_image

KINDS = ("landmarks", "edges")


@dataclass(frozen=True)
class PairsResult:
    folder: Path
    train: int
    test: int
    skipped: int  # frames without a face

    def summary(self) -> str:
        return f"wrote {self.train} training and {self.test} test pairs to {self.folder} ({self.skipped} frames without a face skipped)"


def crop_landmarks(landmarks: np.ndarray, box: Sequence[float], size: int) -> np.ndarray:
    """Landmarks in frame pixels to pixels of the size x size crop of square `box`."""
    left, top, right, _ = box
    return (np.asarray(landmarks, dtype=np.float64) - (left, top)) * (size / (right - left))


def sketch_for(kind: str, crop: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    if kind == "landmarks":
        return landmark_sketch(landmarks, crop.shape[0])
    if kind == "edges":
        return edge_sketch(crop)
    raise InputError(f"unknown kind of pairs '{kind}': use one of {', '.join(KINDS)}")


def make_pairs(
    videos: Iterable[str | os.PathLike],
    output: str | os.PathLike,
    kind: str = "landmarks",
    size: int = 256,
    test_fraction: float = 0.1,
    every: int = 1,
    detector: str | None = None,
    progress: Callable[[Iterable, str, int], Iterable] | None = None,
) -> PairsResult:
    """Write aligned A|B pairs (`train/`, `test/`) to the new folder `output`; it appears only when complete."""
    from fakelab.faces import apply_crop, plan_video_crop

    videos = [Path(video) for video in videos]
    output = Path(output)
    if kind not in KINDS:
        raise InputError(f"unknown kind of pairs '{kind}': use one of {', '.join(KINDS)}")
    if not videos:
        raise InputError("give at least one video")
    if not 0 <= test_fraction < 1:
        raise InputError(f"the test fraction must be in [0, 1), got {test_fraction}")
    if every < 1 or size < 16:
        raise InputError("--every must be at least 1 and --size at least 16")
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise InputError(f"{output} already exists and is not an empty folder")
    infos = [probe_video(video) for video in videos]  # every input is checked before the slow part
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".partial", dir=output.parent))
    counts = {"train": 0, "test": 0}
    skipped = 0
    try:
        for video, info in zip(videos, infos):
            plan = plan_video_crop(video, size, detector=detector)
            landmarks = plan.face.landmarks
            first_test = int(round(plan.frame_count * (1 - test_fraction))) if test_fraction else plan.frame_count
            frames = enumerate(apply_crop(iter_frames(video), plan))
            if progress:
                frames = progress(frames, video.name, info.frame_count)
            for index, crop in frames:
                if index % every:
                    continue
                if not plan.found[index]:
                    skipped += 1
                    continue
                split = "test" if index >= first_test else "train"
                sketch = sketch_for(kind, crop, crop_landmarks(landmarks[index], plan.boxes[index], size))
                save_image(staging / split / f"{video.stem}_{index:05d}.png", np.concatenate([sketch, crop], axis=1))
                counts[split] += 1
        if not counts["train"]:
            raise InputError("no training pairs: no face was found in the videos' training frames")
        if output.exists():
            output.rmdir()
        os.replace(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return PairsResult(output, counts["train"], counts["test"], skipped)
