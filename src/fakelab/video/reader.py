"""Read videos: probe their properties and stream their frames as RGB arrays."""

from __future__ import annotations

import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import av
import numpy as np
from av.video.reformatter import Interpolation

from fakelab.errors import InputError

PathLike = str | os.PathLike


@dataclass(frozen=True)
class VideoInfo:
    width: int  # as displayed, i.e. after rotation metadata
    height: int
    fps: float
    frame_count: int  # exact when the container records it, else duration * fps
    duration: float  # seconds of video
    has_audio: bool
    audio_duration: float | None


def open_media(path: PathLike, what: str = "video") -> av.container.InputContainer:
    """Open a media file for reading, or raise InputError naming it as an unreadable `what`."""
    file = Path(path)
    if not file.is_file():
        raise InputError(f"{path} is not a readable {what} (no such file)")
    if file.stat().st_size == 0:
        raise InputError(f"{path} is not a readable {what} (empty file)")
    try:
        return av.open(str(file))
    except (av.FFmpegError, OSError, UnicodeDecodeError) as exc:
        raise unreadable(path, what, exc) from None


def unreadable(path: PathLike, what: str, exc: Exception) -> InputError:
    if isinstance(exc, av.EOFError):
        reason = "it ends before any media data"
    else:
        reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
    return InputError(f"{path} is not a readable {what} ({reason})")


def has_audio(path: PathLike) -> bool:
    """Whether the media file at `path` has an audio stream."""
    with open_media(path, "media file") as container:
        return bool(container.streams.audio)


def probe_video(path: PathLike) -> VideoInfo:
    """Read a video's properties, decoding its first frame to prove it decodes and to orient it."""
    with open_media(path) as container:
        stream = _video_stream(container, path)
        first = next(_decoded(container, stream, path), None)
        if first is None:
            raise InputError(f"{path} is not a readable video (no decodable frames)")
        width, height = _displayed_size(first)
        fps = float(stream.average_rate or stream.guessed_rate or 0)
        if fps <= 0:
            raise InputError(f"{path} is not a readable video (unknown frame rate)")
        duration = _stream_seconds(stream) or _container_seconds(container)
        audio = container.streams.audio[0] if container.streams.audio else None
        return VideoInfo(
            width=width,
            height=height,
            fps=fps,
            frame_count=stream.frames or round(duration * fps),
            duration=duration,
            has_audio=audio is not None,
            audio_duration=None
            if audio is None
            else _stream_seconds(audio) or _container_seconds(container),
        )


def iter_frames(path: PathLike, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    """Stream the frames of a video as HxWx3 uint8 RGB arrays, upright, optionally resized.

    The file is opened (and checked) at once; frames are decoded one at a time as
    the iterator is consumed, so memory stays constant whatever the length.
    `size` is (width, height) of the upright output frames.
    """
    if size is not None and (len(size) != 2 or min(size) < 1):
        raise ValueError(f"size must be (width, height) with positive values, got {size}")
    container = open_media(path)
    try:
        stream = _video_stream(container, path)
    except InputError:
        container.close()
        raise
    return _rgb_frames(container, stream, path, size)


def _rgb_frames(container, stream, path, size) -> Iterator[np.ndarray]:
    with container:
        count = 0
        for frame in _decoded(container, stream, path):
            yield _to_rgb(frame, size)
            count += 1
        if count == 0:
            raise InputError(f"{path} is not a readable video (no decodable frames)")


def _decoded(container, stream, path) -> Iterator[av.VideoFrame]:
    stream.thread_type = "AUTO"
    try:
        yield from container.decode(stream)
    except av.FFmpegError as exc:
        raise unreadable(path, "video", exc) from None


def _video_stream(container, path) -> av.video.stream.VideoStream:
    if not container.streams.video:
        raise InputError(f"{path} is not a readable video (no video stream)")
    return container.streams.video[0]


def _quarter_turns(frame: av.VideoFrame) -> int:
    """Counter-clockwise quarter turns that the display matrix asks for."""
    return round(frame.rotation / 90) % 4


def _displayed_size(frame: av.VideoFrame) -> tuple[int, int]:
    if _quarter_turns(frame) % 2:
        return frame.height, frame.width
    return frame.width, frame.height


def _to_rgb(frame: av.VideoFrame, size: tuple[int, int] | None) -> np.ndarray:
    turns = _quarter_turns(frame)
    width, height = size or _displayed_size(frame)
    if turns % 2:  # scale before turning, so the scaled frame has the pre-turn shape
        width, height = height, width
    shrinking = width * height < frame.width * frame.height
    rgb = frame.to_ndarray(
        width=width,
        height=height,
        format="rgb24",
        interpolation=Interpolation.AREA if shrinking else Interpolation.BILINEAR,
    )
    # A copy, so callers get a plain writable array that no longer borrows the frame's buffer.
    return np.rot90(rgb, turns).copy()


def _stream_seconds(stream) -> float:
    if stream.duration is None or stream.time_base is None:
        return 0.0
    return float(stream.duration * Fraction(stream.time_base))


def _container_seconds(container) -> float:
    return container.duration / av.time_base if container.duration else 0.0
