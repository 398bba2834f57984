"""`fakelab.live.run_live`: an animated avatar driven by a camera, a looped video or a stream, in real time."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from fakelab.errors import FakelabError, InputError
from fakelab.live.avatars import AvatarModel, build_avatar_model
from fakelab.live.capture import Camera, FileCamera, open_camera
from fakelab.live.outputs import GlitchLog, Recorder, VirtualCamera
from fakelab.live.preview import PreviewServer
from fakelab.live.session import LiveSession

PathLike = str | os.PathLike
WAKE_S = 0.1  # the longest the main thread blocks at a time, so that signal handlers run
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


@dataclass
class LiveSummary:
    seconds: float
    frames_captured: int
    frames_shown: int
    frames_dropped: int
    fps: float
    latency_p50_ms: float
    latency_p95_ms: float
    stopped_in_s: float
    recording: Path | None
    frames_recorded: int
    frames_flagged: int
    flags_log: Path | None

    def summary(self) -> str:
        lines = [
            f"showed {self.frames_shown} frames in {self.seconds:.1f} s ({self.fps:.1f} fps), "
            f"{self.frames_dropped} dropped, latency p50 {self.latency_p50_ms:.0f} ms p95 {self.latency_p95_ms:.0f} ms; "
            f"stopped in {1000 * self.stopped_in_s:.0f} ms"
        ]
        if self.recording is not None:
            lines.append(f"recorded {self.frames_recorded} frames -> {self.recording}")
        if self.flags_log is not None:
            lines.append(f"{self.frames_flagged} frames flagged -> {self.flags_log}")
        return "\n".join(lines)


def load_avatars(sources: Sequence[PathLike | np.ndarray]) -> list[tuple[str, np.ndarray]]:
    """(name, image) of each avatar: image files, arrays, or folders of images (sorted by name)."""
    from fakelab.video import load_image

    avatars = []
    for item in sources:
        if isinstance(item, np.ndarray):
            avatars.append((f"avatar {len(avatars) + 1}", item))
            continue
        path = Path(item)
        if path.is_dir():
            images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not images:
                raise InputError(f"the avatar folder {path} has no images")
            avatars.extend((p.name, load_image(p)) for p in images)
        else:
            avatars.append((path.name, load_image(path)))
    if not avatars:
        raise InputError("give at least one avatar image (--source)")
    return avatars


def prepare_sources(avatars: list[tuple[str, np.ndarray]], size: tuple[int, int], crop: bool = True) -> list[np.ndarray]:
    """Each avatar at the model's size: its face cut out as for FOMM (with `crop`), else the whole image resized."""
    from fakelab.animation.api import resize_frame
    from fakelab.faces import crop_image

    if crop:
        return [crop_image(image, size=size[0], where=f"the avatar {name}").image for name, image in avatars]
    return [resize_frame(image, size) for _, image in avatars]


def make_glitch_detector(enabled: bool = True):
    """The glitch detector of fakelab.detection.glitch, or None where disabled or not in this build."""
    if not enabled:
        return None
    try:
        from fakelab.detection.glitch import GlitchDetector
    except ImportError:
        return None
    return GlitchDetector()


def flags_log_path(recording: Path) -> Path:
    return recording.with_name(recording.stem + ".flags.jsonl")


def run_live(
    sources: Sequence[PathLike | np.ndarray],
    input: str,
    outputs: Sequence[str] = ("preview",),
    *,
    model: str | AvatarModel | None = None,
    checkpoint: PathLike | None = None,
    config: PathLike = "vox-256",
    device: str = "cpu",
    remote: str | None = None,
    crop: bool = True,
    loop: bool = True,
    audio: bool = True,
    mirror: bool = False,
    overlay: bool = False,
    stats: bool = True,
    glitch: bool = True,
    flags_log: PathLike | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    duration: float | None = None,
    keys: bool | None = None,
    on_start: Callable[[LiveSession, PreviewServer | None], None] | None = None,
    handle_signals: bool = True,
    provenance: bool = True,
) -> LiveSummary:
    """Run a live avatar until quit, Ctrl-C/SIGTERM, the end of a non-looped input, or `duration` seconds.

    `outputs`: "preview" (the MJPEG page on host:port), "virtualcam", or video file
    paths (recordings of every frame shown, with the input's audio when `audio`).
    `model`: portrait (training-free, the default), landmark-warp, fomm
    (with `checkpoint`, `config`), or a ready AvatarModel; `remote` (HOST:PORT)
    runs the model on a `fakelab live --serve` worker instead. Recordings carry fakelab's
    provenance (watermarked frames, a signed C2PA manifest) unless `provenance` is False.
    """
    if duration is not None and not duration > 0:
        raise FakelabError("the duration must be a positive number of seconds")
    if not outputs:
        raise FakelabError("give at least one output: preview, virtualcam or a video file")
    recordings = [Path(o) for o in outputs if o not in ("preview", "virtualcam")]
    _refuse_overwriting(recordings, [input, *sources])
    with contextlib.ExitStack() as stack:
        camera = open_camera(input, loop=loop)
        stack.callback(camera.close)
        avatar_images = load_avatars(sources)
        if isinstance(model, str) or model is None:
            if remote is not None:
                from fakelab.live.remote import RemoteAvatars

                model = RemoteAvatars(remote)
                stack.callback(model.close)
            else:
                model = build_avatar_model(model, checkpoint, config, device, fps=camera.fps)
        size = tuple(model.size)
        source_images = prepare_sources(avatar_images, size, crop)
        sinks: list = []
        for output in dict.fromkeys(outputs):  # each output once
            if output == "preview":
                sinks.append(PreviewServer(host, port))
            elif output == "virtualcam":
                sinks.append(VirtualCamera(size, camera.fps))
            else:
                sinks.append(Recorder(output, camera.fps, audio=camera.audio if audio else None,
                                      signing=_signing(sources, input, model) if provenance else None))
            stack.callback(sinks[-1].close)
        detector = make_glitch_detector(glitch)
        log = None
        if detector is not None and (flags_log is not None or recordings):
            log = GlitchLog(flags_log or flags_log_path(recordings[0]))
            sinks.append(log)
            stack.callback(log.close)
        session = LiveSession(
            camera, model, source_images, sinks, mirror=mirror, overlay=overlay, stats=stats,
            glitch_detector=detector, glitch_log=log,
        )
        session.warm_up()
        stack.pop_all()  # from here on the session closes the camera and the sinks
    preview = next((s for s in sinks if isinstance(s, PreviewServer)), None)
    return _run(session, preview, duration, keys, on_start, handle_signals, recordings, log, model)


def _run(session, preview, duration, keys, on_start, handle_signals, recordings, log, model) -> LiveSummary:
    from fakelab.live.keys import TerminalKeys

    restore = _stop_on_signals(session) if handle_signals and threading.current_thread() is threading.main_thread() else None
    terminal = None
    started = time.perf_counter()
    try:
        if preview is not None:
            preview.attach(session)
        session.start()
        if keys or (keys is None and TerminalKeys.available()):
            terminal = TerminalKeys(session)
            terminal.start()
        if on_start is not None:
            on_start(session, preview)
        while not (session.camera_started.wait(WAKE_S) or session.wait(0)):
            pass  # the duration counts from the camera's first frame, after the models warmed up
        _wait_awake(session.wait, duration)
    finally:
        session.stop()
        if terminal is not None:
            terminal.close()
        session.close()
        if restore is not None:
            restore()
        if hasattr(model, "close"):
            model.close()
    seconds = (session.stop_requested_at or time.perf_counter()) - (session.camera_started_at or started)
    if session.error is not None:
        if isinstance(session.error, FakelabError):
            raise session.error
        raise session.error
    latencies = np.array(session.stats.latencies) * 1000
    recorder = next((s for s in session.sinks if isinstance(s, Recorder)), None)
    return LiveSummary(
        seconds=seconds,
        frames_captured=session.stats.captured,
        frames_shown=session.stats.shown,
        frames_dropped=session.frames_dropped,
        fps=session.stats.mean_fps(),
        latency_p50_ms=float(np.percentile(latencies, 50)) if len(latencies) else float("nan"),
        latency_p95_ms=float(np.percentile(latencies, 95)) if len(latencies) else float("nan"),
        stopped_in_s=session.stopped_in or 0.0,
        recording=recorder.path if recorder is not None and recorder.frames_written else None,
        frames_recorded=recorder.frames_written if recorder is not None else 0,
        frames_flagged=session.flagged,
        flags_log=log.path if log is not None else None,
    )


def _signing(sources, input: str, model) -> dict:
    """How a recording is signed: the avatars and an input file hashed as its ingredients."""
    from fakelab.provenance import TRAINED_ALGORITHMIC_MEDIA

    inputs = [item for item in [*sources, input] if isinstance(item, (str, os.PathLike)) and Path(item).is_file()]
    return dict(inputs=inputs, source_type=TRAINED_ALGORITHMIC_MEDIA,
                description="live avatar: portrait animated in real time with the motion of a camera, video or stream",
                parameters={"model": getattr(model, "name", None) or str(model), "live": True})


def _wait_awake(wait: Callable[[float], bool], duration: float | None) -> None:
    """`wait(timeout)` until it returns True or `duration` passes, never blocking for long.

    Python runs signal handlers only in the main thread, between bytecodes; a signal that the
    kernel hands to another thread does not wake a main thread blocked on a lock without
    timeout, so Ctrl-C would wait for the next thing to wake it.
    """
    deadline = None if duration is None else time.perf_counter() + duration
    while True:
        left = WAKE_S if deadline is None else min(WAKE_S, deadline - time.perf_counter())
        if left <= 0 or wait(left):
            return


def _stop_on_signals(session: LiveSession) -> Callable[[], None]:
    """Ctrl-C and SIGTERM stop the session (the outputs are then closed properly)."""
    previous = {}
    for number in (signal.SIGINT, signal.SIGTERM):
        previous[number] = signal.signal(number, lambda *_: session.stop())

    def restore() -> None:
        for number, handler in previous.items():
            signal.signal(number, handler)

    return restore


def _refuse_overwriting(recordings: list[Path], inputs: list) -> None:
    for recording in recordings:
        for item in inputs:
            if isinstance(item, (str, os.PathLike)) and Path(item).exists() and Path(item).resolve() == recording.resolve():
                raise InputError(f"the output {recording} is one of the inputs: give another path")


def serve_worker(
    model: str | None = None,
    checkpoint: PathLike | None = None,
    config: PathLike = "vox-256",
    device: str = "cpu",
    host: str = "127.0.0.1",
    port: int = 0,
    on_start: Callable | None = None,
    duration: float | None = None,
) -> int:
    """Run a live worker for `--remote` clients until Ctrl-C/SIGTERM (or `duration`); returns frames rendered."""
    from fakelab.live.remote import LiveWorker

    worker = LiveWorker(build_avatar_model(model, checkpoint, config, device), host, port).start()
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for number in (signal.SIGINT, signal.SIGTERM):
            previous[number] = signal.signal(number, lambda *_: stop.set())
    try:
        if on_start is not None:
            on_start(worker)
        _wait_awake(stop.wait, duration)
    finally:
        worker.close()
        for number, handler in previous.items():
            signal.signal(number, handler)
    return worker.frames


__all__ = ["Camera", "FileCamera", "LiveSummary", "load_avatars", "prepare_sources", "run_live", "serve_worker"]
