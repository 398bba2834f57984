"""Video and image I/O: probing, streaming decode, writing H.264/GIF with audio, images."""

from __future__ import annotations

import inspect
import re
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from fakelab.errors import InputError
from fakelab.video import (
    VideoInfo,
    VideoWriter,
    has_audio,
    iter_frames,
    load_image,
    probe_video,
    save_image,
)

# `media` (../shared/media, or a failure saying where it should be) comes from conftest.py.
CRIMSON = (200, 30, 60)


def flat_frame(colour, width=64, height=48) -> np.ndarray:
    frame = np.empty((height, width, 3), dtype=np.uint8)
    frame[...] = colour
    return frame


def write_clip(path: Path, frames, fps: float = 25, **kwargs) -> Path:
    with VideoWriter(path, fps, **kwargs) as writer:
        for frame in frames:
            writer.write(frame)
    assert writer.frames_written == len(frames)
    return path


def grey_ramp(count: int, width=64, height=48) -> list[np.ndarray]:
    """Frames of distinct flat greys, so order, drops and duplicates show on read-back."""
    return [flat_frame((20 + i * 200 // count,) * 3, width, height) for i in range(count)]


def write_sine_wav(path: Path, seconds: float, rate: int = 44100) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("pcm_s16le", rate=rate, layout="mono")
        t = np.arange(round(seconds * rate)) / rate
        samples = (0.3 * 32767 * np.sin(2 * np.pi * 440 * t)).astype(np.int16)
        for start in range(0, len(samples), 4096):
            chunk = samples[None, start : start + 4096]
            frame = av.AudioFrame.from_ndarray(chunk, format="s16", layout="mono")
            frame.rate = rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def encode_with_pyav(
    path: Path, codec: str, pix_fmt: str, frame: np.ndarray, count=3, rotation=0
) -> Path:
    """Encode a clip outside VideoWriter, to read formats and metadata it never writes."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=10)
        stream.width, stream.height, stream.pix_fmt = frame.shape[1], frame.shape[0], pix_fmt
        if rotation:
            stream.set_display_rotation(rotation)
        for index in range(count):
            video_frame = av.VideoFrame.from_ndarray(frame, format="rgb24").reformat(format=pix_fmt)
            video_frame.pts = index
            container.mux(stream.encode(video_frame))
        container.mux(stream.encode(None))
    return path


def decoded_audio(path: Path) -> tuple[float, np.ndarray, int]:
    """Start time in seconds, mono samples and sample rate of the first audio stream."""
    with av.open(str(path)) as container:
        frames = list(container.decode(audio=0))
    first_channel = [f.to_ndarray().reshape(len(f.layout.channels), -1)[0] for f in frames]
    return float(frames[0].time), np.concatenate(first_channel), frames[0].rate


# --- probing and reading ---------------------------------------------------------------


@pytest.mark.parametrize(
    "name, expected",
    [
        ("d0.mp4", dict(width=512, height=512, fps=25.0, frame_count=78, has_audio=False)),
        ("d12.mp4", dict(width=512, height=512, fps=25.0, frame_count=183, has_audio=True)),
        ("d13.mp4", dict(width=720, height=1280, fps=30.0, frame_count=352, has_audio=False)),
    ],
)
def test_probe_video_reports_shared_media(media, name, expected):
    info = probe_video(media / name)
    assert isinstance(info, VideoInfo)
    assert {key: getattr(info, key) for key in expected} == expected
    assert info.duration == pytest.approx(info.frame_count / info.fps, abs=0.05)
    assert has_audio(media / name) == expected["has_audio"]


def test_probe_video_gives_audio_duration(media):
    assert probe_video(media / "d12.mp4").audio_duration == pytest.approx(7.31, abs=0.05)
    assert probe_video(media / "d0.mp4").audio_duration is None


def test_iter_frames_streams_resized_rgb_frames(media):
    frames = iter_frames(media / "d0.mp4", size=(96, 64))
    assert inspect.isgenerator(frames)
    count = 0
    for frame in frames:
        assert frame.shape == (64, 96, 3) and frame.dtype == np.uint8
        assert frame.flags.c_contiguous and frame.flags.writeable
        count += 1
    assert count == 78


def test_iter_frames_matches_full_size_decode_when_shrinking(media):
    full = next(iter_frames(media / "d0.mp4"))
    small = next(iter_frames(media / "d0.mp4", size=(128, 128)))
    block_means = full.reshape(128, 4, 128, 4, 3).mean(axis=(1, 3))
    assert full.shape == (512, 512, 3)
    assert np.abs(small - block_means).mean() < 2.0


@pytest.mark.parametrize(
    "codec, pix_fmt, tolerance",
    [
        ("libx264", "yuv444p", 4),
        ("libx264", "yuv420p10le", 5),
        ("mjpeg", "yuvj420p", 5),
        ("mpeg4", "yuv420p", 5),
        ("ffv1", "yuv420p10le", 5),
    ],
)
def test_iter_frames_reads_any_pixel_format_as_rgb(tmp_path, codec, pix_fmt, tolerance):
    clip = encode_with_pyav(tmp_path / "clip.mkv", codec, pix_fmt, flat_frame(CRIMSON, 32, 16))
    frames = list(iter_frames(clip))
    assert len(frames) == 3
    assert np.abs(frames[0].astype(int) - CRIMSON).max() <= tolerance


def test_iter_frames_reads_grey_video_as_grey_rgb(tmp_path):
    clip = encode_with_pyav(tmp_path / "grey.mkv", "ffv1", "gray", flat_frame(CRIMSON, 32, 16))
    frame = next(iter_frames(clip))
    luma = 0.299 * CRIMSON[0] + 0.587 * CRIMSON[1] + 0.114 * CRIMSON[2]
    assert np.abs(frame.astype(float) - luma).max() <= 2


def test_rotation_metadata_is_honoured(tmp_path):
    frame = np.zeros((32, 64, 3), dtype=np.uint8)
    frame[:16, :32] = 255  # white top-left quarter
    clip = encode_with_pyav(tmp_path / "rotated.mp4", "libx264", "yuv444p", frame, rotation=90)
    info = probe_video(clip)
    assert (info.width, info.height) == (32, 64)
    upright = next(iter_frames(clip))
    assert upright.shape == (64, 32, 3)
    # A quarter turn counter-clockwise brings the top-left quarter to the bottom left.
    assert upright[40:, :16].mean() > 240 and upright[:24].mean() < 15
    assert next(iter_frames(clip, size=(16, 32))).shape == (32, 16, 3)


# --- unreadable inputs -----------------------------------------------------------------


def make_bad_input(tmp_path: Path, kind: str, media: Path) -> Path:
    path = tmp_path / f"{kind}.mp4"
    if kind == "text":
        path.write_text("this is a text file, not a video\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes((media / "d0.mp4").read_bytes()[:3000])
    elif kind == "garbled":
        path.write_bytes(zero_media_data((media / "d0.mp4").read_bytes()))
    elif kind == "keyframeless":
        write_no_keyframe_copy(write_clip(tmp_path / "source.mp4", grey_ramp(8)), path)
    return path


def zero_media_data(mp4: bytes) -> bytes:
    """Keep the mp4's structure but blank its coded frames (the payload of its mdat box)."""
    data = bytearray(mp4)
    start = data.index(b"mdat") + 4
    size = int.from_bytes(data[start - 8 : start - 4], "big")
    data[start + 64 : start - 8 + size] = bytes(size - 8 - 64)
    return bytes(data)


def write_no_keyframe_copy(source: Path, target: Path) -> None:
    """Copy only the non-key packets: the stream exists but no frame can be decoded."""
    with av.open(str(source)) as reader, av.open(str(target), "w") as writer:
        stream = writer.add_stream_from_template(reader.streams.video[0])
        for packet in reader.demux(reader.streams.video[0]):
            if packet.dts is not None and not packet.is_keyframe:
                packet.stream = stream
                writer.mux(packet)


@pytest.mark.parametrize("kind", ["missing", "empty", "text", "truncated"])
def test_unreadable_files_raise_input_error_naming_them(tmp_path, media, kind):
    path = make_bad_input(tmp_path, kind, media)
    one_line_naming_the_file = rf"^{re.escape(str(path))} is not a readable .*\(.+\)$"
    for read in (probe_video, iter_frames, has_audio):
        with pytest.raises(InputError, match=one_line_naming_the_file):
            read(path)


@pytest.mark.parametrize("kind", ["garbled", "keyframeless"])
def test_undecodable_videos_raise_input_error_while_decoding(tmp_path, media, kind):
    path = make_bad_input(tmp_path, kind, media)
    with pytest.raises(InputError, match=rf"^{re.escape(str(path))} is not a readable video"):
        for _ in iter_frames(path):
            pass


def test_probe_video_rejects_a_video_without_decodable_frames(tmp_path, media):
    path = make_bad_input(tmp_path, "keyframeless", media)
    with pytest.raises(InputError, match="no decodable frames"):
        probe_video(path)


def test_probe_video_rejects_audio_only_files(tmp_path):
    wav = write_sine_wav(tmp_path / "tone.wav", 0.2)
    with pytest.raises(InputError, match="no video stream"):
        probe_video(wav)
    assert has_audio(wav)


# --- writing ---------------------------------------------------------------------------


def test_flat_colour_round_trip_keeps_count_size_fps_and_colour(tmp_path):
    clip = write_clip(tmp_path / "flat.mp4", [flat_frame(CRIMSON)] * 10)
    info = probe_video(clip)
    assert (info.width, info.height, info.fps, info.frame_count) == (64, 48, 25.0, 10)
    assert info.duration == pytest.approx(0.4, abs=1e-3)
    assert not info.has_audio
    frames = list(iter_frames(clip))
    assert len(frames) == 10
    assert max(np.abs(frame.astype(int) - CRIMSON).max() for frame in frames) <= 3


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".mkv"])
def test_frames_come_back_in_order_without_drops(tmp_path, suffix):
    ramp = grey_ramp(9)
    clip = write_clip(tmp_path / f"ramp{suffix}", ramp)
    means = [frame.mean() for frame in iter_frames(clip)]
    assert means == pytest.approx([frame.mean() for frame in ramp], abs=2)


@pytest.mark.parametrize("width, height", [(33, 17), (32, 17), (33, 16)])
def test_odd_sizes_are_padded_to_even(tmp_path, width, height):
    # Grey ramps steep enough that a one-pixel shift or an extrapolated edge would show.
    y, x = np.mgrid[:height, :width]
    frame = np.repeat((x * 4 + y * 6).astype(np.uint8)[..., None], 3, axis=2)
    clip = write_clip(tmp_path / "odd.mp4", [frame] * 4)
    frames = list(iter_frames(clip))
    expected = np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge").astype(int)
    assert len(frames) == 4 and frames[0].shape == expected.shape
    error = np.abs(frames[0] - expected)
    assert error.mean() < 2
    assert error[-1].mean() < 2.5 and error[:, -1].mean() < 2.5


@pytest.mark.parametrize("fps", [29.97, 30000 / 1001, Fraction(24000, 1001), 12.5])
def test_fractional_fps_is_written_exactly(tmp_path, fps):
    clip = write_clip(tmp_path / "ntsc.mp4", grey_ramp(12, 32, 32), fps=fps)
    info = probe_video(clip)
    assert info.fps == pytest.approx(float(fps), abs=1e-4)
    assert info.frame_count == 12
    assert info.duration == pytest.approx(12 / float(fps), abs=1e-3)
    assert sum(1 for _ in iter_frames(clip)) == 12


def test_gif_output_is_animated_at_the_fps(tmp_path):
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), CRIMSON, (255, 255, 255), (0, 0, 0)]
    clip = write_clip(tmp_path / "anim.gif", [flat_frame(c, 40, 30) for c in colours], fps=10)
    with Image.open(clip) as gif:
        assert gif.n_frames == 6 and gif.info["duration"] == 100
    frames = list(iter_frames(clip))
    assert [tuple(frame[15, 20]) for frame in frames] == colours
    assert probe_video(clip).fps == pytest.approx(10)


def test_gif_keeps_detail_with_a_per_frame_palette(tmp_path):
    gradient = np.zeros((32, 64, 3), dtype=np.uint8)
    gradient[..., 0] = np.linspace(0, 255, 64, dtype=np.uint8)
    gradient[..., 2] = np.linspace(255, 0, 32, dtype=np.uint8)[:, None]
    clip = write_clip(tmp_path / "gradient.gif", [gradient, gradient[::-1].copy()], fps=5)
    frames = list(iter_frames(clip))
    assert np.abs(frames[0].astype(int) - gradient).mean() < 3
    assert np.abs(frames[1].astype(int) - gradient[::-1]).mean() < 3


def test_audio_of_a_video_is_kept_at_full_length(tmp_path, media):
    source = media / "d12.mp4"
    frames = [frame for _, frame in zip(range(25), iter_frames(source, size=(64, 64)))]
    clip = tmp_path / "with_audio.mp4"
    with VideoWriter(clip, 25, audio=source, full_audio=True) as writer:
        for frame in frames:
            writer.write(frame)
    info = probe_video(clip)
    assert info.has_audio and info.frame_count == 25
    assert info.audio_duration == pytest.approx(probe_video(source).audio_duration, abs=0.1)
    start, samples, rate = decoded_audio(clip)
    assert start == pytest.approx(0, abs=0.01)
    assert len(samples) / rate == pytest.approx(7.31, abs=0.1)


def test_audio_is_cut_or_padded_to_the_video_length(tmp_path, media):
    frames = [frame for _, frame in zip(range(25), iter_frames(media / "d12.mp4", size=(64, 64)))]
    cut = write_clip(tmp_path / "cut.mp4", frames, audio=media / "d12.mp4")  # 7.3 s of audio, 1 s of video
    _, samples, rate = decoded_audio(cut)
    assert len(samples) / rate == pytest.approx(1.0, abs=0.03)
    wav = write_sine_wav(tmp_path / "short.wav", 0.4)
    padded = write_clip(tmp_path / "padded.mp4", frames, audio=wav)
    _, samples, rate = decoded_audio(padded)
    assert len(samples) / rate == pytest.approx(1.0, abs=0.03)
    assert np.abs(samples[int(0.6 * rate):]).max() < 0.01  # silence after the tone


def test_dubbing_with_a_wav_keeps_its_length_and_sound(tmp_path):
    wav = write_sine_wav(tmp_path / "tone.wav", 1.0)
    clip = write_clip(tmp_path / "dubbed.mkv", grey_ramp(10, 32, 32), fps=10, audio=wav)
    start, samples, rate = decoded_audio(clip)
    assert start == pytest.approx(0, abs=0.01)
    assert len(samples) / rate == pytest.approx(1.0, abs=0.1)
    assert np.sqrt(np.mean(samples**2)) == pytest.approx(0.3 / np.sqrt(2), rel=0.05)
    assert sum(1 for _ in iter_frames(clip)) == 10


def test_audio_errors(tmp_path, media):
    with pytest.raises(InputError, match="GIF"):
        VideoWriter(tmp_path / "out.gif", 10, audio=media / "d12.mp4")
    with pytest.raises(InputError, match="d0.mp4 has no audio stream"):
        VideoWriter(tmp_path / "out.mp4", 10, audio=media / "d0.mp4")
    with pytest.raises(InputError, match="nope.wav is not a readable audio source"):
        VideoWriter(tmp_path / "out.mp4", 10, audio=tmp_path / "nope.wav")
    assert list(tmp_path.iterdir()) == []
    wav = write_sine_wav(tmp_path / "tone.wav", 0.2)
    dubbed = write_clip(tmp_path / "dubbed.mp4", grey_ramp(2), audio=wav)
    with pytest.raises(InputError, match="overwrite its own audio source"):
        VideoWriter(dubbed, 10, audio=tmp_path / "." / "dubbed.mp4")


def test_unsupported_suffix_and_bad_frames_are_refused(tmp_path):
    with pytest.raises(InputError, match=r"out\.avi"):
        VideoWriter(tmp_path / "out.avi", 25)
    with VideoWriter(tmp_path / "out.mp4", 25) as writer:
        with pytest.raises(ValueError, match="uint8"):
            writer.write(np.zeros((16, 16, 3), dtype=np.float32))
        writer.write(flat_frame(CRIMSON, 16, 16))
        with pytest.raises(ValueError, match="one size"):
            writer.write(flat_frame(CRIMSON, 18, 16))
    with pytest.raises(RuntimeError, match="with"):
        writer.write(flat_frame(CRIMSON, 16, 16))
    assert probe_video(tmp_path / "out.mp4").frame_count == 1


# --- atomicity -------------------------------------------------------------------------


@pytest.mark.parametrize("frames_before_error", [0, 3])
def test_exception_inside_with_leaves_nothing_behind(tmp_path, frames_before_error):
    wav = write_sine_wav(tmp_path / "tone.wav", 0.5)
    with pytest.raises(KeyError):
        with VideoWriter(tmp_path / "out.mp4", 25, audio=wav) as writer:
            for frame in grey_ramp(frames_before_error):
                writer.write(frame)
            raise KeyError("boom")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tone.wav"]


def test_failed_write_does_not_clobber_an_existing_output(tmp_path):
    target = write_clip(tmp_path / "out.mp4", grey_ramp(5))
    before = target.read_bytes()
    with pytest.raises(KeyError):
        with VideoWriter(target, 25) as writer:
            writer.write(flat_frame(CRIMSON))
            raise KeyError("boom")
    with pytest.raises(ValueError, match="no frames"):
        with VideoWriter(target, 25):
            pass
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


# --- images ----------------------------------------------------------------------------


def saved(tmp_path: Path, image: Image.Image, name: str, **options) -> Path:
    path = tmp_path / name
    image.save(path, **options)
    return path


def test_load_image_reads_shared_portraits(media):
    portrait = load_image(media / "s7.jpg")
    assert portrait.ndim == 3 and portrait.shape[2] == 3 and portrait.dtype == np.uint8


def test_alpha_is_composited_over_white(tmp_path):
    rgba = np.zeros((4, 6, 4), dtype=np.uint8)
    rgba[..., 0] = 200
    rgba[:, :3, 3] = 255  # opaque left half
    rgba[:, 3:, 3] = 0  # transparent right half
    rgba[0, 0, 3] = 128  # half-transparent pixel
    image = load_image(saved(tmp_path, Image.fromarray(rgba, "RGBA"), "a.png"))
    assert image.shape == (4, 6, 3)
    assert tuple(image[1, 1]) == (200, 0, 0)
    assert tuple(image[1, 4]) == (255, 255, 255)
    assert np.abs(image[0, 0].astype(int) - (228, 127, 127)).max() <= 1


def test_grey_alpha_and_transparent_palette_are_composited(tmp_path):
    grey_alpha = np.array([[[50, 255], [50, 0]], [[50, 255], [50, 0]]], dtype=np.uint8)
    la = Image.fromarray(grey_alpha, "LA")
    assert load_image(saved(tmp_path, la, "la.png"))[:, :, 0].tolist() == [[50, 255], [50, 255]]
    palette = Image.new("P", (2, 1))
    palette.putpalette([10, 20, 30, 40, 50, 60])
    palette.putpixel((1, 0), 1)
    image = load_image(saved(tmp_path, palette, "p.png", transparency=1))
    assert image.tolist() == [[[10, 20, 30], [255, 255, 255]]]


def test_grey_palette_and_cmyk_become_rgb(tmp_path):
    grey = load_image(saved(tmp_path, Image.fromarray(np.full((3, 5), 77, np.uint8)), "g.png"))
    assert grey.shape == (3, 5, 3) and (grey == 77).all()
    palette = Image.fromarray(flat_frame(CRIMSON, 5, 3)).quantize(4)
    assert (load_image(saved(tmp_path, palette, "p.gif")) == CRIMSON).all()
    cmyk = Image.new("CMYK", (4, 4), (0, 255, 255, 0))  # pure red
    assert (load_image(saved(tmp_path, cmyk, "c.tiff")) == (255, 0, 0)).all()


def test_sixteen_bit_images_are_scaled_to_eight_bits(tmp_path):
    levels = np.array([[0, 257 * 100, 65535, 257 * 200 + 100]], dtype=np.uint16)
    path = saved(tmp_path, Image.fromarray(levels), "deep.png")
    with Image.open(path) as image:
        assert image.mode.startswith("I")
    assert load_image(path)[..., 0].tolist() == [[0, 100, 255, 200]]


def test_exif_orientation_is_applied(tmp_path):
    pixels = np.zeros((20, 40, 3), dtype=np.uint8)
    pixels[:10, :20] = 255  # white top-left quarter
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # stored rotated: display after a quarter turn clockwise
    upright = load_image(saved(tmp_path, image, "rotated.jpg", exif=exif, quality=95))
    assert upright.shape == (40, 20, 3)
    assert upright[:20, 10:].mean() > 230 and upright[20:].mean() < 25


@pytest.mark.parametrize("content", [b"", b"not an image at all", None])
def test_load_image_rejects_non_images(tmp_path, content):
    path = tmp_path / "photo.png"
    if content is not None:
        path.write_bytes(content)
    one_line_naming_the_file = rf"^{re.escape(str(path))} is not a readable image \(.+\)$"
    with pytest.raises(InputError, match=one_line_naming_the_file):
        load_image(path)


def test_truncated_image_is_rejected(tmp_path, media):
    path = tmp_path / "cut.jpg"
    path.write_bytes((media / "s0.jpg").read_bytes()[:2000])
    with pytest.raises(InputError, match="is not a readable image"):
        load_image(path)


def test_save_image_round_trips_and_is_atomic(tmp_path):
    rng = np.random.default_rng(1)
    pixels = rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)
    save_image(tmp_path / "out" / "img.png", pixels)
    assert (load_image(tmp_path / "out" / "img.png") == pixels).all()
    save_image(tmp_path / "out" / "img.jpg", pixels)
    assert load_image(tmp_path / "out" / "img.jpg").shape == pixels.shape
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["img.jpg", "img.png"]
    with pytest.raises(InputError, match="unknown image suffix"):
        save_image(tmp_path / "img.nope", pixels)
    with pytest.raises(ValueError, match="uint8"):
        save_image(tmp_path / "img.png", pixels.astype(np.float32))
    assert not (tmp_path / "img.png").exists()
