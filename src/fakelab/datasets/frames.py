"""Datasets of videos in the reference layout, and the training pairs drawn from them.

A dataset folder holds `train/` and `test/` folders of videos (see
`fakelab.datasets.videos` for the video layouts); a folder without them is
split 80/20 at random (seeded). Video names may start with an identity and a
`#` (`id10001#clip3.mp4`): with id sampling, training draws an identity
uniformly, then one of its videos, so that people with many videos don't
dominate.

Training samples are keyed by a global sample number. The number alone fixes
which video, which frames and which augmentations a sample gets, so a run that
resumes at step N sees exactly the samples an uninterrupted run would have seen,
whatever the number of data-loading workers or processes.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from fakelab.datasets.augment import ClipAugmentation
from fakelab.datasets.videos import VideoEntry, is_video_entry
from fakelab.errors import InputError

IDENTITY_SEPARATOR = "#"
SPLITS = ("train", "test")
RANDOM_TEST_FRACTION = 0.2


def identity_of(video_name: str) -> str:
    return video_name.split(IDENTITY_SEPARATOR)[0]


def _video_paths(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if is_video_entry(p))


def split_videos(root: str | os.PathLike, split: str, seed: int = 0) -> list[Path]:
    """The videos of one split: from `root/<split>/`, or a seeded 80/20 split of `root/` itself."""
    if split not in SPLITS:
        raise InputError(f"unknown split '{split}': use train or test")
    root = Path(root)
    if not root.is_dir():
        raise InputError(f"dataset folder {root} does not exist")
    if (root / "train").is_dir() or (root / "test").is_dir():
        folder = root / split
        if not folder.is_dir():
            raise InputError(f"dataset {root} has no {split}/ folder")
        videos = _video_paths(folder)
    else:
        everything = _video_paths(root)
        order = np.random.default_rng(seed).permutation(len(everything))
        test_count = math.ceil(RANDOM_TEST_FRACTION * len(everything))
        chosen = order[:test_count] if split == "test" else order[test_count:]
        videos = [everything[i] for i in sorted(chosen)]
    if not videos:
        other = "test" if split == "train" else "train"
        elsewhere = _video_paths(root / other) if (root / other).is_dir() else []
        hint = f" (its {len(elsewhere)} video(s) are all in {other}/: prepare more videos)" if elsewhere else ""
        raise InputError(f"dataset {root} has no {split} videos{hint}")
    return videos


class FramesDataset:
    """The videos of one split, grouped by identity when `id_sampling` is on."""

    def __init__(
        self,
        root: str | os.PathLike,
        frame_shape: tuple[int, ...] = (256, 256, 3),
        split: str = "train",
        id_sampling: bool = False,
        seed: int = 0,
    ):
        self.root = Path(root)
        self.frame_size = (int(frame_shape[1]), int(frame_shape[0]))
        self.split = split
        self.id_sampling = id_sampling
        self.videos = [VideoEntry(path, self.frame_size) for path in split_videos(root, split, seed)]
        groups: dict[str, list[VideoEntry]] = {}
        for video in self.videos:
            key = identity_of(video.name) if id_sampling else video.name
            groups.setdefault(key, []).append(video)
        self.groups = [groups[key] for key in sorted(groups)]

    def __len__(self) -> int:
        """Number of sampling units: identities with id sampling, videos otherwise."""
        return len(self.groups)

    def draw_pair(self, unit: int, rng: np.random.Generator) -> np.ndarray:
        """Two frames (2, H, W, 3) of one video of a unit, in time order (equal indices allowed)."""
        group = self.groups[unit]
        video = group[rng.integers(len(group))]
        return video.read(lambda count: np.sort(rng.integers(count, size=2)).tolist())


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 to (T, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255)


class TrainingPairs(Dataset):
    """(source, driving) frame pairs keyed by global sample number.

    Key k falls in pass k // N over the N sampling units, which visits them in a
    seeded random order; its frames and augmentations come from a generator
    seeded by (seed, k).
    """

    def __init__(self, frames: FramesDataset, augmentation: ClipAugmentation | None = None, seed: int = 0):
        self.frames = frames
        self.augmentation = augmentation
        self.seed = seed
        self._order_pass = -1
        self._order = np.empty(0, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.frames)

    def unit_of(self, key: int) -> int:
        visit, position = divmod(key, len(self.frames))
        if visit != self._order_pass:
            self._order = np.random.default_rng([self.seed, visit]).permutation(len(self.frames))
            self._order_pass = visit
        return int(self._order[position])

    def __getitem__(self, key: int) -> dict[str, torch.Tensor]:
        rng = np.random.default_rng([self.seed, 1, key])
        clip = to_tensor(self.frames.draw_pair(self.unit_of(key), rng))
        if self.augmentation is not None:
            clip = self.augmentation(clip, rng)
        return {"source": clip[0], "driving": clip[1]}


class SampleKeys(Sampler[int]):
    """The endless stream of sample keys one process trains on, from step `start_step`.

    Step s uses keys [s * B, (s + 1) * B) for the global batch size B; process
    `rank` of `world_size` takes its contiguous share of them.
    """

    def __init__(self, batch_per_process: int, start_step: int = 0, rank: int = 0, world_size: int = 1):
        self.batch = batch_per_process
        self.start_step = start_step
        self.rank = rank
        self.world_size = world_size

    def __iter__(self) -> Iterator[int]:
        step = self.start_step
        while True:
            first = (step * self.world_size + self.rank) * self.batch
            yield from range(first, first + self.batch)
            step += 1
