"""Live inputs: a webcam, a video file played as a camera (at its own frame rate, looped), a stream URL.

Each camera yields (index, frame) pairs: the frame's place on the camera's frame
grid (frame n is due n/fps seconds after the start) and an HxWx3 uint8 RGB image.
A frame that the camera could not deliver on time is skipped, so the index jumps;
the recorder uses the index as the frame's timestamp, which keeps gaps where they
were and the picture in step with the input's audio.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path
from typing import Iterator, Protocol

import numpy as np

from fakelab.errors import InputError
from fakelab.video import iter_frames, probe_video

# A webcam that reports no frame rate is taken to run at this one.
DEFAULT_CAMERA_FPS = 30.0
STREAM_TIMEOUT_S = 5.0


class Camera(Protocol):
    fps: float
    description: str
    audio: Path | None  # a media file whose audio belongs with the frames, when there is one

    def frames(self, stop: threading.Event) -> Iterator[tuple[int, np.ndarray]]: ...

    def close(self) -> None: ...


class FileCamera:
    """A video file played at its own frame rate, from the start again when it ends (with `loop`)."""

    def __init__(self, path: str | Path, loop: bool = True):
        self.path = Path(path)
        info = probe_video(self.path)
        self.fps = info.fps
        self.frame_count = info.frame_count
        self.audio = self.path if info.has_audio else None
        self.loop = loop
        self.description = f"{self.path.name} ({info.width}x{info.height}, {info.fps:g} fps{', looped' if loop else ''})"
        self.skipped = 0  # frames not delivered on time (the reader was starved of CPU)

    def frames(self, stop: threading.Event) -> Iterator[tuple[int, np.ndarray]]:
        return _paced(self._decoded(stop), self.fps, stop, self)

    def _decoded(self, stop: threading.Event) -> Iterator[np.ndarray]:
        while not stop.is_set():
            yield from iter_frames(self.path)
            if not self.loop:
                return

    def close(self) -> None:
        pass


class WebcamCamera:
    """A capture device through OpenCV (V4L2 on Linux, AVFoundation on macOS, DirectShow/MSMF on Windows)."""

    def __init__(self, device: int | str):
        import cv2

        self.audio = None
        # OpenCV logs each backend it tries and fails with; the error below says it in one line.
        previous = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
        try:
            self._capture = cv2.VideoCapture(device)
        finally:
            cv2.utils.logging.setLogLevel(previous)
        if not self._capture.isOpened():
            self._capture.release()
            raise InputError(f"cannot open camera {device}: no such device, or it is busy or not readable")
        self.fps = float(self._capture.get(cv2.CAP_PROP_FPS) or 0) or DEFAULT_CAMERA_FPS
        width = int(self._capture.get(cv2.CAP_PROP_FRAME_WIDTH))
        height = int(self._capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.description = f"camera {device} ({width}x{height}, {self.fps:g} fps)"
        self._device = device
        self.skipped = 0

    def frames(self, stop: threading.Event) -> Iterator[tuple[int, np.ndarray]]:
        import cv2

        start, index = time.perf_counter(), 0
        while not stop.is_set():
            ok, bgr = self._capture.read()
            if not ok:
                raise InputError(f"camera {self._device} stopped delivering frames")
            # The camera's clock, not a counter: a frame the camera dropped leaves a gap.
            index = max(index, round((time.perf_counter() - start) * self.fps))
            yield index, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            index += 1

    def close(self) -> None:
        self._capture.release()


class StreamCamera:
    """A network stream (rtsp://, http://, udp://, ...) through FFmpeg, paced by its timestamps."""

    def __init__(self, url: str):
        import av

        self.url = url
        self.audio = None
        try:
            self._container = av.open(url, timeout=STREAM_TIMEOUT_S)
        except (av.FFmpegError, OSError) as error:
            reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
            raise InputError(f"cannot open the stream {url} ({reason})") from None
        if not self._container.streams.video:
            self._container.close()
            raise InputError(f"the stream {url} has no video")
        stream = self._container.streams.video[0]
        self.fps = float(stream.average_rate or stream.guessed_rate or 0) or DEFAULT_CAMERA_FPS
        self.description = f"stream {url} ({stream.width}x{stream.height}, {self.fps:g} fps)"
        self.skipped = 0

    def frames(self, stop: threading.Event) -> Iterator[tuple[int, np.ndarray]]:
        return _paced(self._decoded(), self.fps, stop, self)

    def _decoded(self) -> Iterator[np.ndarray]:
        import av

        try:
            for frame in self._container.decode(self._container.streams.video[0]):
                yield frame.to_ndarray(format="rgb24")
        except av.FFmpegError as error:
            raise InputError(f"the stream {self.url} failed ({error})") from None

    def close(self) -> None:
        self._container.close()


def _paced(frames: Iterator[np.ndarray], fps: float, stop: threading.Event, camera) -> Iterator[tuple[int, np.ndarray]]:
    """Release frame n at n/fps seconds after the start; skip frames more than one frame late."""
    start, index = time.perf_counter(), 0
    for frame in frames:
        delay = start + index / fps - time.perf_counter()
        if delay > 0:
            if stop.wait(delay):
                return
        elif delay < -1 / fps:
            camera.skipped += 1
            index += 1
            continue
        if stop.is_set():
            return
        yield index, frame
        index += 1


def open_camera(spec: str, loop: bool = True) -> Camera:
    """`0`, `1`, ... or /dev/videoN: a webcam; a URL with a scheme: a stream; anything else: a video file."""
    if re.fullmatch(r"\d+", spec):
        return WebcamCamera(int(spec))
    if spec.startswith("/dev/video"):
        if not Path(spec).exists():
            raise InputError(f"cannot open camera {spec}: no such device")
        return WebcamCamera(spec)
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", spec) and not spec.startswith("file://"):
        return StreamCamera(spec)
    return FileCamera(spec.removeprefix("file://"), loop=loop)
