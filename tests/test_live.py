"""fakelab live: the threaded pipeline, preview page (in headless Chromium), recording, controls, remote worker."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from conftest import shared_path
from fakelab.cli import main as cli_main
from fakelab.live import FommAvatars, LandmarkWarpAvatars, LiveSession, run_live
from fakelab.live.api import load_avatars, prepare_sources
from fakelab.live.capture import FileCamera
from fakelab.live.outputs import GlitchLog
from fakelab.live.remote import LiveWorker, RemoteAvatars
from fakelab.live.session import decode_jpeg
from fakelab.live.slots import NewestSlot
from fakelab.video import VideoWriter, iter_frames, probe_video

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"]


def test_newest_slot_keeps_only_the_newest_item_and_counts_the_rest():
    slot = NewestSlot()
    assert slot.get(0) is None
    for item in range(5):
        slot.put(item)
    assert slot.get(0) == 4 and slot.dropped == 4
    assert slot.get(0) is None
    slot.close()
    assert slot.get(10) is None  # closed: no waiting


def test_video_writer_places_frames_on_the_frame_grid(tmp_path):
    frames = [np.full((32, 32, 3), 40 * i, np.uint8) for i in range(4)]
    with VideoWriter(tmp_path / "gaps.mp4", 10) as writer:
        for frame, index in zip(frames, [0, 1, 5, 9]):
            writer.write(frame, index=index)
        with pytest.raises(ValueError, match="not after"):
            writer.write(frames[0], index=9)
    info = probe_video(tmp_path / "gaps.mp4")
    assert info.frame_count == 4 and len(list(iter_frames(tmp_path / "gaps.mp4"))) == 4
    assert frame_times(tmp_path / "gaps.mp4") == pytest.approx([0, 0.1, 0.5, 0.9])  # gaps kept


def test_a_live_recording_encodes_at_once_and_ends_its_audio_with_the_video(tmp_path, media_dir):
    frames = [np.full((64, 64, 3), 8 * i, np.uint8) for i in range(30)]
    with VideoWriter(tmp_path / "live.mp4", 25, audio=media_dir / "d12.mp4", live=True) as writer:
        for frame in frames:
            writer.write(frame)
    info = probe_video(tmp_path / "live.mp4")
    assert info.frame_count == 30 and info.audio_duration == pytest.approx(1.2, abs=0.05)  # not d12's 7.3 s


def frame_times(path) -> list[float]:
    import av

    with av.open(str(path)) as container:
        return [frame.time for frame in container.decode(container.streams.video[0])]


@pytest.fixture(scope="module")
def avatars(media_dir):
    return prepare_sources(load_avatars([media_dir / "s7.jpg", media_dir / "s11.jpg"]), (256, 256))


@pytest.fixture(scope="module")
def media_dir():
    return shared_path("media")


def test_landmark_warp_avatar_moves_with_the_driving_face_and_recalibrates(avatars, media_dir):
    from fakelab.faces import FaceTracker, crop_image

    frames = [crop_image(f, 256).image for f in list(iter_frames(media_dir / "d0.mp4"))[::20][:3]]
    tracker = FaceTracker()
    landmarks = [tracker.update(f)[0].landmarks for f in frames]
    avatar = LandmarkWarpAvatars().prepare(avatars[0])
    avatar.recalibrate(frames[0], landmarks[0])
    assert np.abs(avatar.render(frames[0], landmarks[0]).astype(int) - avatars[0]).mean() < 1.0
    moved = avatar.render(frames[2], landmarks[2])
    assert np.abs(moved.astype(int) - avatars[0]).mean() > 1.0
    avatar.recalibrate(frames[2], landmarks[2])  # now that pose is the neutral one
    assert np.abs(avatar.render(frames[2], landmarks[2]).astype(int) - avatars[0]).mean() < 1.0


def test_fomm_avatar_renders_as_the_batch_engine_does(fomm_fixtures):
    model = FommAvatars.from_checkpoint(fomm_fixtures / "tiny-vox-cpk.pth.tar", fomm_fixtures / "tiny-vox.yaml")
    width, height = model.size
    rng = np.random.default_rng(0)
    source, *driving = [rng.integers(0, 255, (height, width, 3), dtype=np.uint8) for _ in range(4)]
    expected = list(model.animator.animate(source, driving))
    avatar = model.prepare(source)
    got = [avatar.render(frame) for frame in driving]  # the first frame is the initial one
    for a, b in zip(got, expected):
        assert np.array_equal(a, b)
    avatar.recalibrate(driving[2])  # as if the animation had started there
    assert np.array_equal(avatar.render(driving[1]), list(model.animator.animate(source, driving[2:0:-1]))[1])


class SlowModel:
    """Takes 0.2 s a frame: five times slower than the camera."""

    name, size = "slow", (256, 256)

    def prepare(self, source):
        return SimpleNamespace(recalibrate=lambda *a: None, render=lambda frame, landmarks=None: time.sleep(0.2) or frame)


def test_a_slow_model_drops_frames_instead_of_falling_behind(avatars, media_dir):
    session = LiveSession(FileCamera(media_dir / "d0.mp4"), SlowModel(), avatars[:1])
    session.start()
    wait_for(lambda: session.stats.shown >= 12, timeout=60)
    session.stop()
    session.close()
    assert session.error is None and not session.stuck_threads
    assert session.frames_dropped > session.stats.shown > 5
    # A queue would hold more and more frames; one slot per stage keeps the delay near one model time.
    later = session.stats.latencies[len(session.stats.latencies) // 2 :]
    assert max(later) < 0.7


class EveryThirdFlagged:
    """A stand-in glitch detector: flags every third frame."""

    def __init__(self):
        self.index = -1

    def check(self, frame):
        self.index += 1
        flagged = self.index % 3 == 0
        return SimpleNamespace(index=self.index, face_found=not flagged, detector_confidence=float("nan") if flagged else 1.0,
                               landmark_jump=0.0, score=0.9 if flagged else 0.1, flagged=flagged,
                               reasons=("face lost",) if flagged else ())

    def reset(self):
        self.index = -1


def test_failure_flags_are_drawn_and_logged_for_every_frame(avatars, media_dir, tmp_path):
    shown = []

    class Keep:
        def send(self, frame, info):
            shown.append((frame, info))

        def close(self):
            pass

    log = GlitchLog(tmp_path / "flags.jsonl")
    session = LiveSession(FileCamera(media_dir / "d0.mp4"), LandmarkWarpAvatars(), avatars[:1], [Keep(), log],
                          glitch_detector=EveryThirdFlagged(), glitch_log=log, stats=False)
    session.warm_up()
    session.start()
    wait_for(lambda: session.stats.shown >= 8, timeout=60)
    session.stop()
    session.close()
    lines = [json.loads(line) for line in (tmp_path / "flags.jsonl").read_text().splitlines()]
    assert len(lines) == len(shown) == session.stats.shown > 5
    assert [line["frame"] for line in lines] == list(range(len(lines)))
    for line, (frame, info) in zip(lines, shown):
        assert line["flagged"] == info.glitch.flagged and line["capture_index"] == info.capture_index
        border_red = frame[0, :, 0].mean() > 200 and frame[0, :, 1].mean() < 80
        assert border_red == line["flagged"]  # the red frame marks flagged frames only
    assert session.flagged == sum(line["flagged"] for line in lines)


def read_mjpeg_frames(url: str, count: int, timeout: float = 20) -> list[np.ndarray]:
    frames, buffer = [], b""
    with urllib.request.urlopen(url, timeout=timeout) as stream:
        while len(frames) < count:
            buffer += stream.read(4096)
            while (start := buffer.find(b"\xff\xd8")) >= 0 and (end := buffer.find(b"\xff\xd9", start)) >= 0:
                frames.append(decode_jpeg(buffer[start : end + 2]))
                buffer = buffer[end + 2 :]
    return frames


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return json.loads(reply.read())


def get_bytes(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as reply:
        return reply.read()


def start_live_in_thread(**kwargs):
    """run_live in a thread; returns (thread, session, preview, results) once it runs."""
    ready, results = threading.Event(), {}

    def started(session, preview):
        results.update(session=session, preview=preview)
        ready.set()

    def run():
        try:
            results["summary"] = run_live(on_start=started, handle_signals=False, keys=False, **kwargs)
        except BaseException as error:  # reported by the test
            results["error"] = error
            ready.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(60), "the live session did not start"
    assert "error" not in results, results.get("error")
    return thread, results


def wait_for(condition, timeout=15.0, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("timed out waiting")


@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium")
def test_preview_page_in_headless_chromium_shows_moving_frames_and_its_controls_work(media_dir, tmp_path):
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright

    thread, results = start_live_in_thread(
        sources=[media_dir / "s7.jpg", media_dir / "s11.jpg"], input=str(media_dir / "d0.mp4"),
        outputs=["preview"], port=0, duration=60,
    )
    url = results["preview"].url
    first, second = read_mjpeg_frames(url + "stream.mjpg", 2)
    assert first.shape == second.shape == (256, 256, 3)
    assert np.abs(first.astype(int) - second).mean() > 0.5  # two different frames: it moves
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.goto(url)
        page.wait_for_function("document.getElementById('stream').naturalWidth > 0", timeout=20000)
        snapshot = """() => { const img = document.getElementById('stream'); const c = document.createElement('canvas');
            c.width = img.naturalWidth; c.height = img.naturalHeight; const g = c.getContext('2d');
            g.drawImage(img, 0, 0); return Array.from(g.getImageData(0, 0, c.width, c.height).data); }"""
        shot1 = np.array(page.evaluate(snapshot))
        page.wait_for_timeout(600)
        shot2 = np.array(page.evaluate(snapshot))
        assert shot1.size == 256 * 256 * 4 and np.abs(shot1 - shot2).mean() > 0.5  # the page's picture moves

        status = wait_for(lambda: (s := get_json(url + "status"))["initial_index"] is not None and s)
        initial_before, initial_jpeg = status["initial_index"], get_bytes(url + "initial.jpg")
        page.click("#recalibrate")
        after = wait_for(lambda: (s := get_json(url + "status"))["initial_index"] != initial_before and s)
        assert after["initial_index"] > initial_before and after["recalibrations"] == status["recalibrations"] + 1
        assert get_bytes(url + "initial.jpg") != initial_jpeg  # the new initial frame is a later driving frame

        page.click("#next")
        wait_for(lambda: get_json(url + "status")["avatar"] == 1)
        page.keyboard.press("m")  # keys work on the page too
        wait_for(lambda: get_json(url + "status")["mirror"])
        page.wait_for_function("document.getElementById('status').textContent.includes('avatar 2/2')", timeout=5000)
        page.click("#quit")
        browser.close()
    thread.join(10)
    assert not thread.is_alive() and "error" not in results
    assert results["summary"].frames_shown > 10


def test_recording_ten_seconds_has_one_frame_per_frame_shown_and_the_audio(media_dir, tmp_path):
    output = tmp_path / "live.mp4"
    summary = run_live([media_dir / "s7.jpg"], str(media_dir / "d12.mp4"), [str(output)],
                       duration=10, handle_signals=False, keys=False)  # the portrait model, glitch check on
    info = probe_video(output)
    assert summary.recording == output and summary.frames_shown > 25
    assert info.frame_count == summary.frames_recorded == summary.frames_shown
    assert len(list(iter_frames(output))) == summary.frames_shown
    # The input's audio (7.3 s, not looped) padded with silence to the recording's length, as every output's is.
    assert info.has_audio and info.audio_duration == pytest.approx(info.duration, abs=0.1)
    # Frames sit at their capture times (the input's frame grid), in step with the audio.
    times = frame_times(output)
    assert np.all(np.diff(times) > 0) and summary.seconds - 2 < times[-1] - times[0] < summary.seconds
    assert summary.seconds == pytest.approx(10, abs=0.5)
    assert not list(tmp_path.glob(".*partial*"))
    # The glitch detector checked every frame shown: one JSON line each, beside the recording.
    flags = [json.loads(line) for line in (tmp_path / "live.flags.jsonl").read_text().splitlines()]
    assert summary.flags_log == tmp_path / "live.flags.jsonl"
    assert [flag["frame"] for flag in flags] == list(range(summary.frames_shown))
    assert all(0 <= flag["score"] <= 1 and isinstance(flag["reasons"], list) for flag in flags)
    assert sum(flag["flagged"] for flag in flags) == summary.frames_flagged
    # The recording is fakelab's: every frame watermarked, the file signed with the avatar and the input as ingredients.
    from fakelab.provenance import check_file

    report = check_file(output)
    assert report.watermark.found and report.manifest.valid and report.made_by_fakelab


def test_ctrl_c_stops_every_thread_within_a_second_and_closes_the_recording(media_dir, tmp_path):
    output = tmp_path / "interrupted.mp4"
    process = subprocess.Popen(
        [sys.executable, "-m", "fakelab", "live", "--source", str(media_dir / "s7.jpg"), "--input",
         str(media_dir / "d0.mp4"), "--output", "preview", "--output", str(output),
         "--port", "0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        line = process.stdout.readline()
        url = re.search(r"preview at (http://\S+?/)[;\s]", line).group(1)
        wait_for(lambda: get_json(url + "status")["frames_shown"] >= 10, timeout=30)
        process.send_signal(signal.SIGINT)
        sent = time.monotonic()
        out, err = process.communicate(timeout=20)
        exited = time.monotonic() - sent
    finally:
        process.kill()
    assert process.returncode == 0, err
    stopped_ms = float(re.search(r"stopped in (\d+) ms", out).group(1))
    assert stopped_ms < 1000, out  # every stage thread joined, outputs closed
    # The interpreter's own teardown (torch, dlib) follows; it takes seconds on a loaded machine.
    assert exited < 15, f"the process took {exited:.1f} s to exit"
    shown = int(re.search(r"showed (\d+) frames", out).group(1))
    assert probe_video(output).frame_count == shown >= 10
    assert "Traceback" not in err


def test_remote_worker_renders_what_the_local_model_renders(avatars, media_dir, tmp_path):
    from fakelab.faces import FaceTracker, crop_image

    worker = LiveWorker(LandmarkWarpAvatars(), "127.0.0.1", 0).start()
    try:
        remote = RemoteAvatars(worker.address)
        assert remote.size == (256, 256) and "landmark-warp" in remote.name
        frames = [crop_image(f, 256).image for f in list(iter_frames(media_dir / "d0.mp4"))[::30][:2]]
        tracker = FaceTracker()
        landmarks = [tracker.update(f)[0].landmarks for f in frames]
        local, far = LandmarkWarpAvatars().prepare(avatars[0]), remote.prepare(avatars[0])
        for avatar in (local, far):
            avatar.recalibrate(frames[0], landmarks[0])
        expected, got = local.render(frames[1], landmarks[1]), far.render(frames[1], landmarks[1])
        assert np.abs(got.astype(int) - expected).mean() < 3  # JPEG both ways, nothing else
        remote.close()

        output = tmp_path / "remote.mp4"
        summary = run_live([media_dir / "s7.jpg"], str(media_dir / "d0.mp4"), [str(output)], remote=worker.address,
                           glitch=False, duration=3, handle_signals=False, keys=False, provenance=False)
        assert summary.frames_shown >= 3 and probe_video(output).frame_count == summary.frames_shown
        from fakelab.provenance import check_file

        assert not check_file(output).made_by_fakelab  # provenance=False (--no-provenance): neither label
        assert worker.frames >= summary.frames_shown
    finally:
        worker.close()


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli_main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    "args, message",
    [
        (["--source", "MISSING.jpg"], "MISSING.jpg"),
        (["--input", "missing.mp4"], "missing.mp4 is not a readable video"),
        (["--source", "{media}/d0.mp4"], "d0.mp4"),
        (["--output", "virtualcam"], "no virtual camera available"),
        (["--input", "99"], "cannot open camera 99"),
        (["--input", "/dev/video99"], "cannot open camera /dev/video99: no such device"),
        (["--input", "rtsp://127.0.0.1:9/live"], "cannot open the stream rtsp://127.0.0.1:9/live"),
        (["--remote", "127.0.0.1:9"], "cannot reach the live worker at 127.0.0.1:9"),
        (["--remote", "nonsense"], "is not HOST:PORT"),
        (["--output", "{media}/d0.mp4"], "is one of the inputs"),
        (["--output", "{tmp}/out.avi"], "cannot write a video"),
        (["--model", "fomm"], "needs --checkpoint"),
        (["--duration", "-1"], "duration must be a positive"),
        (["--port", "70000"], "not a port number"),
    ],
)
def test_bad_input_gives_one_line_and_leaves_nothing(capsys, media_dir, tmp_path, args, message):
    base = {"--source": str(media_dir / "s7.jpg"), "--input": str(media_dir / "d0.mp4"), "--model": "landmark-warp",
            "--output": str(tmp_path / "out.mp4"), "--port": "0"}
    args = [a.format(media=media_dir, tmp=tmp_path) for a in args]
    for flag, value in zip(args[::2], args[1::2]):
        base[flag] = value
    before = sorted(p.name for p in media_dir.iterdir())
    argv = ["live", *[item for pair in base.items() for item in pair]]
    code, out, err = run_cli(capsys, *argv)
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("fakelab live: error:") and message in err, err
    assert list(tmp_path.iterdir()) == []
    assert sorted(p.name for p in media_dir.iterdir()) == before


def test_serve_command_runs_a_worker_until_sigterm(avatars):
    process = subprocess.Popen(
        [sys.executable, "-m", "fakelab", "live", "--serve", "0", "--model", "landmark-warp"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        line = process.stdout.readline()
        address = re.search(r"--remote (\S+)", line).group(1)
        assert address.startswith("127.0.0.1:")  # loopback unless --host says otherwise
        remote = RemoteAvatars(address)
        avatar = remote.prepare(avatars[0])
        assert avatar.render(avatars[0]).shape == (256, 256, 3)  # no landmarks given: the worker finds them
        remote.close()
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=20)
    finally:
        process.kill()
    assert process.returncode == 0 and "worker stopped after rendering 1 frames" in out, err


def test_a_stream_url_drives_the_avatar(media_dir, tmp_path):
    import functools
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    import av

    # An MPEG transport stream, as live streams are sent: readable front to back, no seeking.
    with av.open(str(media_dir / "d0.mp4")) as source, av.open(str(tmp_path / "d0.ts"), "w", format="mpegts") as ts:
        video = source.streams.video[0]
        copied = ts.add_stream_from_template(video)
        for packet in source.demux(video):
            if packet.dts is not None:
                packet.stream = copied
                ts.mux(packet)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/d0.ts"
        output = tmp_path / "stream.mp4"
        summary = run_live([media_dir / "s7.jpg"], url, [str(output)], model="landmark-warp", glitch=False,
                           duration=2.5, handle_signals=False, keys=False)
    finally:
        server.shutdown()
    assert summary.frames_shown >= 3 and probe_video(output).frame_count == summary.frames_shown
    assert summary.flags_log is None  # --no-glitch-check: no log


def test_fomm_checkpoint_runs_live_at_its_own_size(media_dir, fomm_fixtures, tmp_path):
    output = tmp_path / "fomm.mp4"
    summary = run_live([media_dir / "s7.jpg"], str(media_dir / "d0.mp4"), [str(output)], model="fomm",
                       checkpoint=fomm_fixtures / "tiny-vox-cpk.pth.tar", config=fomm_fixtures / "tiny-vox.yaml",
                       glitch=False, duration=3, handle_signals=False, keys=False)
    info = probe_video(output)
    assert (info.width, info.height) == (128, 128) and info.frame_count == summary.frames_shown >= 3


def test_a_producer_waits_until_its_last_item_was_taken():
    slot = NewestSlot()
    slot.put(1)
    assert not slot.wait_taken(0.05)
    taker = threading.Timer(0.1, slot.get, args=(0,))
    taker.start()
    assert slot.wait_taken(5) and slot.dropped == 0


def test_terminal_keys_become_commands_and_the_terminal_is_restored():
    import os
    import pty
    import termios

    from fakelab.live.keys import TerminalKeys

    master, follower = pty.openpty()
    stream = os.fdopen(follower, "r")
    before = termios.tcgetattr(follower)
    received = []
    keys = TerminalKeys(SimpleNamespace(command=received.append), stream)
    assert TerminalKeys.available(stream)
    keys.start()
    os.write(master, b"mrx")  # no Enter: single keys; x is no key
    wait_for(lambda: len(received) == 2, timeout=5)
    keys.close()
    assert received == ["mirror", "recalibrate"]
    assert termios.tcgetattr(follower) == before
    stream.close()
    os.close(master)
