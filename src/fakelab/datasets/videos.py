"""One video of a dataset, in any of the reference layouts.

- a folder of frame images (sorted by name),
- a single image holding all frames side by side (a "strip", `.png` or `.jpg`),
- a video file (`.mp4`, `.mov`, `.gif`).

Frames come out as HxWx3 uint8 RGB at the dataset's frame size; frames stored at
another size are resized, so a dataset need not be prepared at the training size.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from fakelab.errors import InputError
from fakelab.video import iter_frames, load_image

STRIP_SUFFIXES = (".png", ".jpg", ".jpeg")
VIDEO_SUFFIXES = (".mp4", ".mov", ".gif")
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg")


def is_video_entry(path: Path) -> bool:
    """Whether a dataset folder entry is a video in one of the supported layouts."""
    if path.name.startswith("."):
        return False
    return path.is_dir() or path.suffix.lower() in STRIP_SUFFIXES + VIDEO_SUFFIXES


def resize_frame(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize to (width, height), area-averaging when shrinking."""
    if (frame.shape[1], frame.shape[0]) == tuple(size):
        return frame
    shrinking = size[0] * size[1] < frame.shape[0] * frame.shape[1]
    resample = Image.Resampling.BOX if shrinking else Image.Resampling.BICUBIC
    return np.asarray(Image.fromarray(frame).resize(size, resample))


class VideoEntry:
    """A video in a dataset, whose frames are read when asked for."""

    def __init__(self, path: str | os.PathLike, frame_size: tuple[int, int]):
        self.path = Path(path)
        self.frame_size = frame_size  # (width, height)
        if not self.path.exists():
            raise InputError(f"dataset video {self.path} does not exist")
        if not is_video_entry(self.path):
            raise InputError(
                f"{self.path} is not a dataset video: expected a folder of frames, "
                f"an image strip ({', '.join(STRIP_SUFFIXES)}) or a video ({', '.join(VIDEO_SUFFIXES)})"
            )

    @property
    def name(self) -> str:
        return self.path.name

    def frame_files(self) -> list[Path]:
        files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES and not p.name.startswith("."))
        if not files:
            raise InputError(f"dataset video {self.path} has no frame images")
        return files

    def read(self, choose: Callable[[int], Sequence[int]] | None = None) -> np.ndarray:
        """(T, H, W, 3) uint8 frames: all of them, or those `choose(frame_count)` picks, in its order.

        Choosing from the count lets a folder of frames decode only the chosen ones.
        """
        if self.path.is_dir():
            files = self.frame_files()
            chosen = files if choose is None else [files[i] for i in choose(len(files))]
            frames = [resize_frame(load_image(file), self.frame_size) for file in chosen]
        else:
            frames = self._read_all()
            if choose is not None:
                frames = [frames[i] for i in choose(len(frames))]
        return np.stack(frames)

    def _read_all(self) -> list[np.ndarray]:
        if self.path.suffix.lower() in STRIP_SUFFIXES:
            return self._split_strip(load_image(self.path))
        return [resize_frame(frame, self.frame_size) for frame in iter_frames(self.path)]

    def _split_strip(self, strip: np.ndarray) -> list[np.ndarray]:
        """Frames side by side, each as tall as the strip and `frame_size` wide at that height."""
        height = strip.shape[0]
        width = round(height * self.frame_size[0] / self.frame_size[1])
        if strip.shape[1] % width:
            raise InputError(
                f"image strip {self.path} is {strip.shape[1]} px wide, not a whole number of "
                f"{width}x{height} frames"
            )
        return [
            resize_frame(np.ascontiguousarray(strip[:, left : left + width]), self.frame_size)
            for left in range(0, strip.shape[1], width)
        ]
