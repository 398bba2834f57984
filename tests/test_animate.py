"""`fakelab animate` and `fakelab.animate` end to end, on real media and the tiny FOMM fixtures."""

import signal
import subprocess
import sys

import av
import numpy as np
import pytest
import torch
from PIL import Image

import fakelab
from fakelab.animation.api import fomm_animator
from fakelab.cli import main
from fakelab.video import VideoWriter, probe_video


@pytest.fixture
def tiny_vox(fomm_fixtures):
    return ["--checkpoint", str(fomm_fixtures / "tiny-vox-cpk.pth.tar"), "--config", str(fomm_fixtures / "tiny-vox.yaml")]


@pytest.fixture
def animator(fomm_fixtures):
    return fomm_animator(fomm_fixtures / "tiny-vox-cpk.pth.tar", fomm_fixtures / "tiny-vox.yaml", batch_size=3)


def audio_seconds(path):
    with av.open(str(path)) as container:
        stream = container.streams.audio[0]
        return float(stream.duration * stream.time_base)


def test_cli_keeps_frame_count_and_audio(media, tiny_vox, tmp_path, capsys):
    output = tmp_path / "s7-d12.mp4"
    assert main(["animate", str(media / "s7.jpg"), str(media / "d12.mp4"), "-o", str(output), *tiny_vox]) == 0
    info, driving = probe_video(output), probe_video(media / "d12.mp4")
    assert (info.frame_count, info.fps, info.width) == (driving.frame_count, driving.fps, 128)
    decoded = sum(1 for _ in av.open(str(output)).decode(video=0))
    assert decoded == driving.frame_count == 183
    assert abs(audio_seconds(output) - audio_seconds(media / "d12.mp4")) < 0.1
    assert f"animated 183 frames" in capsys.readouterr().out


def test_audio_none_dub_and_gif(media, tiny_vox, tmp_path):
    short = tmp_path / "short.mp4"
    frames = [np.full((64, 64, 3), 40 * i, np.uint8) for i in range(5)]
    with VideoWriter(short, fps=10) as writer:
        for frame in frames:
            writer.write(frame)
    source = str(media / "s7.jpg")

    silent = tmp_path / "silent.mp4"
    assert main(["animate", source, str(media / "d12.mp4"), "-o", str(silent), "--audio", "none", *tiny_vox]) == 0
    assert not probe_video(silent).has_audio

    dubbed = tmp_path / "dubbed.mp4"
    assert main(["animate", source, str(short), "-o", str(dubbed), "--audio", str(media / "d12.mp4"), *tiny_vox]) == 0
    assert probe_video(dubbed).frame_count == 5
    assert abs(audio_seconds(dubbed) - audio_seconds(media / "d12.mp4")) < 0.1

    gif = tmp_path / "out.gif"
    assert main(["animate", source, str(short), "-o", str(gif), *tiny_vox]) == 0
    assert Image.open(gif).n_frames == 5


def test_api_returns_frames_and_accepts_any_image_mode(media, animator):
    portrait = Image.open(media / "s7.jpg").convert("RGBA")
    rgba = np.asarray(portrait)
    with pytest.raises(fakelab.errors.InputError, match="HxWx3 uint8"):
        fakelab.animate(rgba, [rgba[..., :3]], animator=animator)
    driving = [np.asarray(portrait.convert("RGB").rotate(angle)) for angle in (0, 5, 10)]
    frames = fakelab.animate(np.asarray(portrait.convert("RGB")), driving, animator=animator)
    assert len(frames) == 3 and frames[0].shape == (128, 128, 3) and frames[0].dtype == np.uint8
    assert np.abs(frames[2].astype(int) - frames[0].astype(int)).mean() > 0


def test_best_frame_equals_animating_backwards_and_forwards(media, animator):
    """The reference demo's best-frame mode: animate driving[N:] and driving[N::-1], then join."""
    portrait = Image.open(media / "s4.jpg").convert("RGB")
    source = np.asarray(portrait)
    driving = [np.asarray(portrait.resize((128, 128)).rotate(angle)) for angle in (-8, -4, 0, 4, 8, 12)]
    best = 2
    forward = fakelab.animate(source, driving[best:], animator=animator)
    backward = fakelab.animate(source, driving[best::-1], animator=animator)
    expected = backward[::-1] + forward[1:]
    ours = fakelab.animate(source, driving, animator=animator, best_frame=best)
    assert len(ours) == len(driving)
    difference = np.abs(np.stack(ours).astype(int) - np.stack(expected).astype(int))
    assert difference.max() <= 1  # float batching can flip a rounding
    plain = fakelab.animate(source, driving, animator=animator)
    assert np.abs(np.stack(plain).astype(int) - np.stack(ours).astype(int)).max() > 1


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "fakelab", *args], capture_output=True, text=True)


def test_bad_inputs_give_one_line_errors(media, tiny_vox, fomm_fixtures, tmp_path):
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    source, driving, output = str(media / "s7.jpg"), str(media / "d12.mp4"), str(tmp_path / "out.mp4")
    zeroth = ["--checkpoint", str(fomm_fixtures / "tiny-zeroth-cpk.pth.tar"), "--config", tiny_vox[3]]
    cases = {
        "corrupt.mp4 is not a readable video": [source, str(corrupt), "-o", output, *tiny_vox],
        "tiny-zeroth-cpk.pth.tar: kp_detector is missing key 'jacobian.weight'": [source, driving, "-o", output, *zeroth],
        "is one of the inputs": [source, driving, "-o", driving, *tiny_vox],
        "past the end of the driving video": [source, driving, "-o", output, "--best-frame", "500", *tiny_vox],
        "README.md is not a readable image": [str(media / "README.md"), driving, "-o", output, *tiny_vox],
    }
    if not torch.cuda.is_available():
        cases["CUDA is not available"] = [source, driving, "-o", output, "--device", "cuda", *tiny_vox]
    for message, args in cases.items():
        result = run_cli("animate", *args)
        assert result.returncode == 1, (message, result.stderr)
        assert message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1, result.stderr
    assert not (tmp_path / "out.mp4").exists()
    assert not list(tmp_path.glob(".*partial*"))


def test_interrupt_leaves_nothing_behind(media, tiny_vox, tmp_path):
    output = tmp_path / "interrupted.mp4"
    process = subprocess.Popen(
        [sys.executable, "-m", "fakelab", "animate", str(media / "s7.jpg"), str(media / "d13.mp4"),
         "-o", str(output), *tiny_vox],
        stderr=subprocess.PIPE, text=True,
        # A shell that runs the suite in the background hands its children SIGINT ignored,
        # and Python then never raises KeyboardInterrupt: give the child the default back.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    seen = ""
    while "frame/s]" not in seen:  # the progress bar has started: frames are being written
        chunk = process.stderr.read(1)
        assert chunk, f"animate ended before it could be interrupted: {seen}"
        seen += chunk
    process.send_signal(signal.SIGINT)
    _, rest = process.communicate(timeout=60)
    assert process.returncode == 130
    assert "interrupted; nothing was written" in rest and "Traceback" not in rest
    assert list(tmp_path.iterdir()) == []


def test_landmark_warp_with_crop_and_paste_back_keeps_the_source_size(media, tmp_path, capsys):
    output = tmp_path / "pasted.mp4"
    args = ["animate", str(media / "s0.jpg"), str(media / "d0.mp4"), "-o", str(output),
            "--model", "landmark-warp", "--crop", "auto", "--paste-back"]
    assert main(args) == 0
    info = probe_video(output)
    source = Image.open(media / "s0.jpg")
    assert (info.width, info.height) == source.size
    assert info.frame_count == probe_video(media / "d0.mp4").frame_count
    assert "animated 78 frames" in capsys.readouterr().out


def test_find_best_frame_picks_the_pose_of_the_source(media):
    from fakelab.animation.landmark_warp import LandmarkWarpAnimator
    from fakelab.faces import crop_image
    from fakelab.video import load_image

    face = crop_image(load_image(media / "s7.jpg")).image
    angles = (-14, -7, 0, 7, 14)
    driving = [np.asarray(Image.fromarray(face).rotate(angle, resample=Image.Resampling.BICUBIC)) for angle in angles]
    animator = LandmarkWarpAnimator()
    found = fakelab.animate(face, driving, animator=animator, find_best_frame=True)
    named = fakelab.animate(face, driving, animator=animator, best_frame=angles.index(0))
    first = fakelab.animate(face, driving, animator=animator)
    assert np.array_equal(np.stack(found), np.stack(named))
    assert not np.array_equal(np.stack(found), np.stack(first))


def test_fomm_needs_a_checkpoint(media, tmp_path):
    result = run_cli(
        "animate", str(media / "s7.jpg"), str(media / "d12.mp4"), "-o", str(tmp_path / "x.mp4"), "--model", "fomm"
    )
    assert result.returncode == 1
    assert "the fomm model needs a checkpoint" in result.stderr and "Traceback" not in result.stderr
