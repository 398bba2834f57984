"""Where live frames go: a recording, a virtual camera, a JSONL log of failure flags.

Every sink has `send(frame, shown)` (called by the output stage for every frame
shown) and `close()`. The preview page lives in fakelab.live.preview.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path

import numpy as np

from fakelab.atomic import atomic_output
from fakelab.errors import FakelabError
from fakelab.video import VideoWriter


class VirtualCameraError(FakelabError):
    """No virtual camera can be opened here."""


class Recorder:
    """Writes every frame shown to a video at the input's frame rate, with the input's audio.

    Each frame sits at its capture time on the input's frame grid, so frames that
    were dropped leave the previous frame on screen for longer instead of
    shifting the rest: the picture stays in step with the audio. The file appears
    (atomically) when the recorder is closed.
    """

    def __init__(self, path: str | Path, fps: float, audio: Path | None = None, signing: dict | None = None):
        """`signing`: the arguments of `Stamp.sign` (inputs, description, parameters) when the
        recording carries fakelab's provenance: every frame watermarked, the file signed on close."""
        from fakelab.provenance import Stamp

        self.path = Path(path)
        self._stamp = Stamp.new(enabled=signing is not None)
        self._signing = signing
        self._writer = VideoWriter(self.path, fps, audio=audio, live=True)
        self._writer.__enter__()
        self._first_index: int | None = None
        self.audio = audio
        self.frames_written = 0

    def send(self, frame: np.ndarray, shown) -> None:
        if self._first_index is None:
            self._first_index = shown.capture_index
        # With audio the input's frame grid is kept from its start, where the audio starts.
        start = 0 if self.audio is not None else self._first_index
        self._writer.write(self._stamp.mark(frame), index=shown.capture_index - start)
        self.frames_written = self._writer.frames_written

    def close(self) -> None:
        writer, self._writer = self._writer, None
        if writer is None:
            return
        if writer.frames_written == 0:  # nothing shown: no file rather than an error
            writer.__exit__(FakelabError, FakelabError("no frames"), None)
            return
        writer.__exit__(None, None, None)
        if self._signing is not None:
            self._stamp.sign(self.path, [*self._signing["inputs"], self.audio], **{
                key: value for key, value in self._signing.items() if key != "inputs"})


class VirtualCamera:
    """A virtual webcam (pyvirtualcam: v4l2loopback on Linux, OBS elsewhere) that video-call apps can pick."""

    def __init__(self, size: tuple[int, int], fps: float, device: str | None = None):
        try:
            import pyvirtualcam
        except ImportError:
            raise VirtualCameraError(
                "the virtual camera needs pyvirtualcam: pip install 'fakelab[live]'"
            ) from None
        width, height = size
        try:
            self._camera = pyvirtualcam.Camera(width, height, fps, fmt=pyvirtualcam.PixelFormat.RGB, device=device)
        except Exception as error:  # pyvirtualcam raises RuntimeError for every missing backend
            detail = " ".join(str(error).split())
            raise VirtualCameraError(
                f"no virtual camera available ({detail}); on Linux load v4l2loopback "
                "(sudo modprobe v4l2loopback exclusive_caps=1), on Windows/macOS install OBS Studio and start "
                "its virtual camera once"
            ) from None
        self.description = f"virtual camera {self._camera.device} ({self._camera.backend})"

    def send(self, frame: np.ndarray, shown) -> None:
        self._camera.send(np.ascontiguousarray(frame))

    def close(self) -> None:
        self._camera.close()


class GlitchLog:
    """One JSON line per output frame checked by the glitch detector (written atomically on close)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self._stack = contextlib.ExitStack()
        temp = self._stack.enter_context(atomic_output(self.path))
        self._file = self._stack.enter_context(open(temp, "w"))
        self.lines = 0

    def __call__(self, shown, glitch) -> None:
        self._file.write(json.dumps(glitch_record(shown, glitch)) + "\n")
        self.lines += 1

    def close(self) -> None:
        self._stack.close()

    def send(self, frame, shown) -> None:  # a sink too, so that the session closes it
        pass


def glitch_record(shown, glitch) -> dict:
    def number(value: float):
        return None if value is None or (isinstance(value, float) and not math.isfinite(value)) else round(float(value), 4)

    return {
        "frame": shown.number,
        "capture_index": shown.capture_index,
        "flagged": bool(glitch.flagged),
        "score": number(glitch.score),
        "reasons": list(glitch.reasons),
        "face_found": bool(glitch.face_found),
        "detector_confidence": number(glitch.detector_confidence),
        "landmark_jump": number(glitch.landmark_jump),
    }
