"""Write RGB frames to an H.264 video or an animated GIF, optionally with audio."""

from __future__ import annotations

import contextlib
import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.video.reformatter import Colorspace, ColorPrimaries, ColorRange, ColorTrc
from PIL import Image

from fakelab.atomic import atomic_output
from fakelab.errors import InputError
from fakelab.video.audio import AudioTrack, require_audio
from fakelab.video.reader import PathLike

H264_SUFFIXES = {".mp4", ".mov", ".mkv"}
GIF_SUFFIX = ".gif"


class VideoWriter:
    """Context manager writing HxWx3 uint8 RGB frames to `path` at `fps`.

    The suffix picks the output: .mp4/.mov/.mkv give H.264 (yuv420p, BT.709) with
    AAC audio; .gif gives an animated GIF. The file appears only when the `with`
    block exits without an exception. `audio` names a media file whose first audio
    stream is re-encoded and muxed from t=0, cut or padded with silence to the video's
    length (`full_audio=True` keeps all of it instead).
    H.264 needs even sizes: frames with an odd width or height are padded by
    repeating their last column or row, so the file is one pixel larger there.
    `lossless` writes H.264 in RGB at qp 0 (libx264rgb) instead, any size, which decodes
    to exactly the frames written; few players show it. `bitrate` (bits per second)
    encodes H.264 at that average rate instead of at constant quality `crf`.
    `live` is for recording as frames arrive: x264's veryfast preset with no look-ahead
    (each frame is encoded at once, so closing is instant and the encoder keeps pace),
    and the audio ends where the video does.
    """

    def __init__(
        self,
        path: PathLike,
        fps: float,
        audio: PathLike | None = None,
        crf: int = 18,
        lossless: bool = False,
        full_audio: bool = False,
        bitrate: int | None = None,
        live: bool = False,
    ):
        self._full_audio = full_audio
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix not in H264_SUFFIXES | {GIF_SUFFIX}:
            supported = ", ".join(sorted(H264_SUFFIXES | {GIF_SUFFIX}))
            raise InputError(f"cannot write a video to {path} (use one of {supported})")
        if not (fps > 0 and math.isfinite(fps)):
            raise ValueError(f"fps must be a positive number, got {fps}")
        self._is_gif = suffix == GIF_SUFFIX
        if lossless and self._is_gif:
            raise InputError(f"{path} is a GIF, which cannot be lossless: use .mkv")
        self._lossless = lossless
        if bitrate is not None and not bitrate > 0:
            raise ValueError(f"bitrate must be a positive number of bits per second, got {bitrate}")
        self._bitrate = bitrate
        self._live = live
        if audio is not None:
            if self._is_gif:
                raise InputError(f"{path} is a GIF, which cannot carry the audio of {audio}")
            if Path(audio).resolve() == self.path.resolve():
                raise InputError(f"{path} would overwrite its own audio source")
            require_audio(audio)
        self._audio_source = audio
        self._rate = _exact_rate(fps)
        self._crf = crf
        self._frames_written = 0
        self._next_index = 0
        self._frame_shape: tuple[int, ...] | None = None
        self._stack: contextlib.ExitStack | None = None
        self._container: av.container.OutputContainer | None = None
        self._stream = None
        self._audio: AudioTrack | None = None

    @property
    def frames_written(self) -> int:
        return self._frames_written

    def __enter__(self) -> VideoWriter:
        stack = contextlib.ExitStack()
        try:
            self._temp_path = stack.enter_context(atomic_output(self.path))
            # Runs before atomic_output's exit, which renames or deletes the file.
            stack.callback(self._close)
        except BaseException:  # an interrupt here would skip __exit__: clean up now
            stack.close()
            raise
        self._stack = stack
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        stack, self._stack = self._stack, None
        if exc_type is not None:
            return stack.__exit__(exc_type, exc, tb)
        with stack:
            self._finish()
        return False

    def write(self, frame: np.ndarray, index: int | None = None) -> None:
        """Append a frame; `index` places it on the frame-rate grid (default: right after the last).

        A later index leaves a gap during which the previous frame stays on screen, as
        in a live recording that dropped frames: the video keeps time with its audio.
        """
        if self._stack is None:
            raise RuntimeError("VideoWriter.write() must be called inside its `with` block")
        self._check_frame(frame)
        position = self._next_index if index is None else index
        if position < self._next_index:
            raise ValueError(f"frame index {index} is not after the last one ({self._next_index - 1})")
        if self._container is None:
            self._open(frame.shape[1], frame.shape[0])
        encoded = self._stream.encode(self._to_video_frame(frame, position))
        self._container.mux(encoded)
        self._frames_written += 1
        self._next_index = position + 1
        if self._audio is not None:
            self._audio.write_until(self._next_index / self._rate)

    def _check_frame(self, frame: np.ndarray) -> None:
        if not (isinstance(frame, np.ndarray) and frame.dtype == np.uint8 and frame.ndim == 3
                and frame.shape[2] == 3):
            described = getattr(frame, "shape", type(frame).__name__), getattr(frame, "dtype", "")
            raise ValueError(f"frames must be HxWx3 uint8 RGB arrays, got {described}")
        if self._frame_shape is None:
            self._frame_shape = frame.shape
        elif frame.shape != self._frame_shape:
            raise ValueError(
                f"all frames must have one size: first was {self._frame_shape}, got {frame.shape}"
            )

    def _open(self, width: int, height: int) -> None:
        self._container = av.open(str(self._temp_path), mode="w")
        if self._is_gif:
            self._stream = self._container.add_stream("gif", rate=self._rate)
            self._stream.pix_fmt = "pal8"
        elif self._lossless:
            self._stream = self._container.add_stream("libx264rgb", rate=self._rate, options={"qp": "0"})
            self._stream.pix_fmt = "rgb24"
        else:
            options = {} if self._bitrate else {"crf": str(self._crf)}
            if self._live:
                options.update(preset="veryfast", tune="zerolatency")
            self._stream = self._container.add_stream("libx264", rate=self._rate, options=options)
            if self._bitrate:
                self._stream.bit_rate = int(self._bitrate)
            self._stream.pix_fmt = "yuv420p"
            width, height = width + width % 2, height + height % 2
            context = self._stream.codec_context
            context.colorspace = Colorspace.ITU709.value
            context.color_range = ColorRange.MPEG.value
            context.color_primaries = ColorPrimaries.BT709.value
            context.color_trc = ColorTrc.BT709.value
        self._stream.width, self._stream.height = width, height
        self._stream.time_base = 1 / self._rate
        if self._audio_source is not None:
            self._audio = AudioTrack(self._audio_source, self._container)

    def _to_video_frame(self, frame: np.ndarray, position: int) -> av.VideoFrame:
        if self._is_gif:
            video_frame = _palette_frame(frame)
        elif self._lossless:
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
        else:
            video_frame = av.VideoFrame.from_ndarray(_even_sized(frame), format="rgb24").reformat(
                format="yuv420p", dst_colorspace=Colorspace.ITU709, dst_color_range=ColorRange.MPEG
            )
        video_frame.pts = position
        video_frame.time_base = 1 / self._rate
        return video_frame

    def _finish(self) -> None:
        if self._container is None:
            raise ValueError(f"no frames were written to {self.path}")
        self._container.mux(self._stream.encode(None))
        if self._audio is not None:
            if self._full_audio:
                seconds = None
            else:  # a live recording's frames keep their arrival times, so its length is the last index
                seconds = (self._next_index if self._live else self._frames_written) / self._rate
            self._audio.finish(seconds)
        self._container.close()
        self._container = None

    def _close(self) -> None:
        """Release the files if `_finish` did not run or failed half-way."""
        if self._audio is not None:
            self._audio.close()
        if self._container is not None:
            self._container.close()
            self._container = None


def _exact_rate(fps: float) -> Fraction:
    """The frame rate as a fraction: exact for integers, 29.97, 30000/1001 and the like."""
    if isinstance(fps, Fraction):
        return fps
    return Fraction(float(fps)).limit_denominator(1001)


def _even_sized(frame: np.ndarray) -> np.ndarray:
    height, width = frame.shape[:2]
    if height % 2 == 0 and width % 2 == 0:
        return frame
    return np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")


def _palette_frame(frame: np.ndarray) -> av.VideoFrame:
    """A pal8 frame with its own 256-colour palette, the best a GIF frame can hold."""
    quantized = Image.fromarray(frame).quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    rgb_palette = np.array(quantized.getpalette(), dtype=np.uint8).reshape(-1, 3)
    argb = np.zeros((256, 4), dtype=np.uint8)
    argb[:, 0] = 255
    argb[: len(rgb_palette), 1:] = rgb_palette
    return av.VideoFrame.from_ndarray((np.asarray(quantized), argb), format="pal8")
