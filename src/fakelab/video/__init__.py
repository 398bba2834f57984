"""Video and image I/O: probe and stream videos, write H.264 or GIF (with audio), images."""

from fakelab.video.images import load_image, save_image
from fakelab.video.reader import VideoInfo, has_audio, iter_frames, probe_video
from fakelab.video.writer import VideoWriter

__all__ = [
    "VideoInfo",
    "VideoWriter",
    "has_audio",
    "iter_frames",
    "load_image",
    "probe_video",
    "save_image",
]
