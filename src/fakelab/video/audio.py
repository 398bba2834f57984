"""Copy the audio of one media file into a video being written, re-encoded to AAC; decode audio
to samples and write samples as WAV."""

from __future__ import annotations

import math
import wave
from fractions import Fraction
from typing import Iterator

import av
import numpy as np

from fakelab.errors import InputError
from fakelab.video.reader import PathLike, open_media, unreadable

# Sample rates the AAC encoder accepts; anything else is resampled to 48 kHz.
AAC_RATES = {96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000}
AAC_FRAME_SIZE = 1024


def require_audio(path: PathLike) -> None:
    """Raise InputError unless `path` is a readable media file with an audio stream."""
    open_audio(path)[0].close()


def open_audio(path: PathLike) -> tuple[av.container.InputContainer, av.audio.stream.AudioStream]:
    """Open `path` and return it with its first audio stream, or raise InputError."""
    container = open_media(path, "audio source")
    if not container.streams.audio:
        container.close()
        raise InputError(f"{path} has no audio stream")
    return container, container.streams.audio[0]


class AudioTrack:
    """The first audio stream of `source`, re-timed to start at t=0 and written on demand.

    The writer calls `write_until(t)` after each video frame so that audio and video
    packets stay interleaved, then `finish()` to write the rest of the audio,
    whatever its length relative to the video.
    """

    def __init__(self, source: PathLike, output: av.container.OutputContainer):
        self._source_path = source
        self._source, source_stream = open_audio(source)
        self.rate = source_stream.rate if source_stream.rate in AAC_RATES else 48000
        layout = "mono" if source_stream.channels == 1 else "stereo"
        self._stream = output.add_stream("aac", rate=self.rate, layout=layout)
        self._stream.time_base = Fraction(1, self.rate)
        self._resampler = av.AudioResampler(
            format="fltp", layout=layout, rate=self.rate, frame_size=AAC_FRAME_SIZE
        )
        self._output = output
        self._decoded = self._decode(source_stream)
        self._samples_written = 0

    def write_until(self, seconds: float) -> None:
        while self._samples_written < seconds * self.rate:
            frame = next(self._decoded, None)
            if frame is None:
                return
            self._encode(self._resampler.resample(frame))

    def finish(self, until: float = math.inf) -> None:
        """Write the audio up to `until` seconds (by default all of it) and close the track."""
        self.write_until(until)
        self._encode(self._resampler.resample(None))
        if self._samples_written == 0:
            raise InputError(f"{self._source_path} has no decodable audio")
        self._output.mux(self._stream.encode(None))
        self.close()

    def close(self) -> None:
        self._source.close()

    def _decode(self, stream) -> Iterator[av.AudioFrame]:
        try:
            yield from self._source.decode(stream)
        except av.FFmpegError as exc:
            raise unreadable(self._source_path, "audio source", exc) from None

    def _encode(self, frames: list[av.AudioFrame]) -> None:
        for frame in frames:
            # Timestamps count samples from zero: the audio starts with the video,
            # whatever the source's own start time or timestamp gaps.
            frame.pts = self._samples_written
            frame.time_base = Fraction(1, self.rate)
            self._samples_written += frame.samples
            self._output.mux(self._stream.encode(frame))


def decode_audio(path: PathLike, rate: int = 16000) -> np.ndarray:
    """The first audio stream of `path` as mono float32 samples in [-1, 1] at `rate` Hz,
    starting at the stream's first sample (InputError when there is none)."""
    container, stream = open_audio(path)
    resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
    chunks = []
    try:
        with container:
            for frame in container.decode(stream):
                chunks += [chunk.to_ndarray().reshape(-1) for chunk in resampler.resample(frame)]
            chunks += [chunk.to_ndarray().reshape(-1) for chunk in resampler.resample(None)]
    except av.FFmpegError as exc:
        raise unreadable(path, "audio source", exc) from None
    return np.concatenate(chunks).astype(np.float32) if chunks else np.zeros(0, np.float32)


def write_wav(path: PathLike, samples: np.ndarray, rate: int) -> None:
    """Mono float samples in [-1, 1] written as a 16-bit PCM WAV file (a source for `VideoWriter(audio=...)`)."""
    pcm = (np.clip(np.asarray(samples, dtype=np.float64), -1.0, 1.0) * 32767).round().astype("<i2")
    with wave.open(str(path), "wb") as handle:
        handle.setnchannels(1)
        handle.setsampwidth(2)
        handle.setframerate(int(rate))
        handle.writeframes(pcm.tobytes())
