"""Video datasets in the reference FOMM layouts, their augmentations, and their preparation from raw videos."""

from fakelab.datasets.augment import ClipAugmentation, ColorJitter, FlipParams, JitterParams
from fakelab.datasets.frames import (
    FramesDataset,
    SampleKeys,
    TrainingPairs,
    identity_of,
    split_videos,
    to_tensor,
)
from fakelab.datasets.videos import VideoEntry, is_video_entry

__all__ = [
    "ClipAugmentation",
    "ColorJitter",
    "FlipParams",
    "FramesDataset",
    "JitterParams",
    "SampleKeys",
    "TrainingPairs",
    "VideoEntry",
    "identity_of",
    "is_video_entry",
    "split_videos",
    "to_tensor",
]
