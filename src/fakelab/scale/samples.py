"""A folder of short clips cut from longer videos: for trying out and benchmarking scans."""

from __future__ import annotations

import os
from itertools import islice
from pathlib import Path
from typing import Sequence

from PIL import Image
import numpy as np

from fakelab.video import VideoWriter, iter_frames, probe_video


def cut_clips(
    videos: Sequence[str | os.PathLike],
    folder: str | os.PathLike,
    count: int,
    frames: int = 8,
    size: int = 256,
    broken: int = 0,
) -> list[Path]:
    """`count` clips of `frames` frames, `size` pixels square, taken in turn from the videos at
    spread-out starting points, written to `folder` as clip-NNN.mp4; the last `broken` of them
    are cut short mid-file (unreadable), as a damaged download would be."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for index in range(count):
        video = Path(videos[index % len(videos)])
        round_ = index // len(videos)
        info = probe_video(video)
        rounds = -(-count // len(videos))
        start = (info.frame_count - frames) * round_ // max(1, rounds)
        path = folder / f"clip-{index:03d}.mp4"
        with VideoWriter(path, info.fps) as writer:
            for frame in islice(iter_frames(video), start, start + frames):
                writer.write(np.asarray(Image.fromarray(frame).resize((size, size), Image.Resampling.BILINEAR)))
        written.append(path)
    for path in written[len(written) - broken :] if broken else []:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
    return written
