"""The live pipeline: capture, face tracking, animation and output, each in its own thread.

Between two stages sits a one-slot queue where the newest frame wins, so a stage
that is slower than its input skips frames instead of falling behind: latency
stays bounded (about one frame time per stage plus the work itself) whatever
the model's speed. Controls (recalibrate, switch avatar, overlay, mirror, stats,
quit) may come from any thread: flags are read by the output stage, commands
that touch the model are carried out by the animation stage between frames.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import cv2
import numpy as np

from fakelab.faces.crop import ZOOM_TOLERANCE, crop_box, crop_frame, face_extent
from fakelab.faces.detect import Box
from fakelab.faces.tracking import FaceTracker, TrackedFace
from fakelab.live.avatars import AvatarModel, PreparedAvatar
from fakelab.live.capture import Camera
from fakelab.live.overlay import compose
from fakelab.live.slots import NewestSlot

ACTIONS = {
    "recalibrate": "the current driving frame becomes the initial (neutral) one",
    "next": "next avatar",
    "previous": "previous avatar",
    "overlay": "show/hide the driving face",
    "mirror": "mirror the output",
    "stats": "show/hide fps and latency",
    "quit": "stop",
}
# Room around the driving face in its crop, as for FOMM's VoxCeleb crops (fakelab.faces.crop).
CROP_MARGIN = 0.5
# The crop box stays put while the face keeps this many face sizes from its edges.
CROP_KEEPOUT = 0.2
POLL_S = 0.05  # how often idle stages look at the stop flag: bounds the time to stop
STOP_DEADLINE_S = 0.8
LONG_CALL_S = 30.0
LATENCY_WINDOW = 100  # frames in the on-screen latency figures


@dataclass
class Captured:
    index: int  # place on the camera's frame grid (the recording's timestamp)
    at: float  # time.perf_counter() when the frame left the camera
    image: np.ndarray


@dataclass
class Driving:
    captured: Captured
    crop: np.ndarray  # size x size: the face's square crop (the centre square before any face)
    landmarks: np.ndarray | None  # (68, 2) in crop pixels; None while no face is followed
    epoch: int  # bumped when the crop box moves or recalibration is asked for


@dataclass
class Animated:
    driving: Driving
    image: np.ndarray
    avatar: int


@dataclass
class Initial:
    epoch: int
    index: int
    crop: np.ndarray
    landmarks: np.ndarray


@dataclass
class ShownFrame:
    number: int  # frames shown before this one
    capture_index: int
    latency: float  # seconds from capture to the end of output
    glitch: object | None  # a FrameGlitch, when a glitch detector runs


class FollowingCrop:
    """A still square box around the followed face, moved only when the face nears its edges or zooms.

    A still box keeps head motion visible to the model as motion; a box that
    followed every frame would cancel it.
    """

    def __init__(self, size: int):
        self.size = size
        self.box: Box | None = None
        self._face_side = 0.0
        self.epoch = 0

    def reset(self) -> None:
        self.box = None

    def update(self, frame: np.ndarray, face: TrackedFace | None) -> tuple[np.ndarray, np.ndarray | None]:
        height, width = frame.shape[:2]
        if face is not None:
            extent = face_extent(face.box, face.landmarks)
            if self.box is None or not self._holds(extent, face.box.width):
                square = crop_box(extent, face.box.width, CROP_MARGIN, (width, height))
                side = max(1, round(square.width))
                self.box = Box(round(square.left), round(square.top), round(square.left) + side, round(square.top) + side)
                self._face_side = face.box.width
                self.epoch += 1
        box = self.box or _centre_square(width, height)
        crop = crop_frame(frame, box, self.size)
        if face is None:
            return crop, None
        return crop, (face.landmarks - (box.left, box.top)) * (self.size / box.width)

    def _holds(self, extent: Box, face_side: float) -> bool:
        room = CROP_KEEPOUT * face_side
        inner = Box(self.box.left + room, self.box.top + room, self.box.right - room, self.box.bottom - room)
        zoom = face_side / self._face_side
        return inner.contains(extent) and 1 / ZOOM_TOLERANCE <= zoom <= ZOOM_TOLERANCE


def _centre_square(width: int, height: int) -> Box:
    side = min(width, height)
    left, top = (width - side) // 2, (height - side) // 2
    return Box(left, top, left + side, top + side)


class LiveStats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.captured = 0
        self.shown = 0
        self.latencies: list[float] = []
        self._recent: deque[float] = deque(maxlen=LATENCY_WINDOW)
        self._shown_at: deque[float] = deque(maxlen=256)
        self.started = time.perf_counter()
        self.first_shown: float | None = None
        self.last_shown: float | None = None
        self.stage_seconds: dict[str, deque[float]] = {}
        self.stage_cpu_seconds: dict[str, deque[float]] = {}

    def stage_done(self, name: str, seconds: float, cpu_seconds: float) -> None:
        self.stage_seconds.setdefault(name, deque(maxlen=LATENCY_WINDOW)).append(seconds)
        self.stage_cpu_seconds.setdefault(name, deque(maxlen=LATENCY_WINDOW)).append(cpu_seconds)

    def stage_ms(self, cpu: bool = False) -> dict[str, float]:
        """Median work time of each stage over its last frames, in ms: wall-clock time, or with
        `cpu` the CPU time of the stage's own thread (work handed to OpenCV's or torch's thread
        pools is not in it), which other jobs on the machine hardly change."""
        table = self.stage_cpu_seconds if cpu else self.stage_seconds
        return {name: round(1000 * float(np.median(list(times))), 1) for name, times in table.items() if times}

    def record(self, now: float, latency: float) -> None:
        with self._lock:
            self.shown += 1
            self.latencies.append(latency)
            self._recent.append(latency)
            self._shown_at.append(now)
            self.first_shown = self.first_shown or now
            self.last_shown = now

    def fps(self, now: float | None = None) -> float:
        """Output frames per second over the last second."""
        now = now or time.perf_counter()
        with self._lock:
            recent = [t for t in self._shown_at if now - t <= 1.0]
        return float(len(recent))

    def recent_latency(self) -> tuple[float, float]:
        """p50 and p95 (seconds) over the last frames."""
        with self._lock:
            values = list(self._recent)
        if not values:
            return float("nan"), float("nan")
        return float(np.percentile(values, 50)), float(np.percentile(values, 95))

    def mean_fps(self) -> float:
        """Output frames per second from the first frame shown to the last."""
        if self.shown < 2:
            return 0.0
        return (self.shown - 1) / (self.last_shown - self.first_shown)


class LiveSession:
    """A running live avatar. Build it, `start()`, send `command(...)`s, `stop()`, then `close()`.

    `sources` are the avatars' images, already at the model's size (see
    `prepare_sources`); `sinks` get every output frame (`send(frame, shown)`)
    and are closed by `close()`; `glitch_detector` is a
    fakelab.detection.glitch.GlitchDetector (or anything with its `check`),
    run on every output frame, and `glitch_log` a callable given each
    (ShownFrame, FrameGlitch).
    """

    def __init__(
        self,
        camera: Camera,
        model: AvatarModel,
        sources: list[np.ndarray],
        sinks: list = (),
        *,
        mirror: bool = False,
        overlay: bool = False,
        stats: bool = True,
        glitch_detector=None,
        glitch_log=None,
        tracker: FaceTracker | None = None,
        backpressure: bool = True,
    ):
        if not sources:
            raise ValueError("a live session needs at least one avatar")
        self.camera = camera
        self.model = model
        self.sources = sources
        self.sinks = list(sinks)
        self.mirror, self.overlay, self.show_stats = mirror, overlay, stats
        self.glitch_detector = glitch_detector
        self.glitch_log = glitch_log
        self.backpressure = backpressure
        self.size = tuple(model.size)
        self.tracker = tracker or FaceTracker()
        self.crop = FollowingCrop(self.size[0])
        self.stats = LiveStats()
        self.avatar = 0
        self._prepared: dict[int, PreparedAvatar] = {}
        self._calibrated: dict[int, int] = {}  # avatar -> epoch of the initial frame it was given
        self.initial: Initial | None = None
        self.recalibrations = 0
        self.flagged = 0
        self.last_glitch = None
        self._checked_avatar = 0
        self._followed: int | None = None  # the tracker's id of the driving face
        self.face_found = False
        self.error: BaseException | None = None
        self._commands: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._recentre = threading.Event()
        self._stop = threading.Event()
        self.stop_requested_at: float | None = None
        self.stopped_in: float | None = None
        self._slots = [NewestSlot(), NewestSlot(), NewestSlot()]
        self._threads: list[threading.Thread] = []
        self._ready: threading.Barrier | None = None
        self.camera_started = threading.Event()  # set once every stage is ready and the camera runs
        self.camera_started_at: float | None = None
        self._closed = False

    # -- controls --------------------------------------------------------------------------
    def prepare_avatar(self, index: int) -> PreparedAvatar:
        if index not in self._prepared:
            self._prepared[index] = self.model.prepare(self.sources[index])
        return self._prepared[index]

    def command(self, action: str) -> str:
        """Carry out a control action (see ACTIONS); returns what it did. Safe from any thread."""
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}: use one of {', '.join(ACTIONS)}")
        if action == "quit":
            self.stop()
        elif action == "mirror":
            self.mirror = not self.mirror
        elif action == "overlay":
            self.overlay = not self.overlay
        elif action == "stats":
            self.show_stats = not self.show_stats
        elif action == "recalibrate":
            # The tracking stage re-centres the crop on the face of its next frame and starts a
            # new epoch; the animation stage makes the first frame of that epoch the initial one.
            self._recentre.set()
        else:
            self._commands.put(action)
        return ACTIONS[action]

    def status(self) -> dict:
        p50, p95 = self.stats.recent_latency()
        return {
            "running": self.running,
            "input": self.camera.description,
            "model": getattr(self.model, "name", type(self.model).__name__),
            "avatar": self.avatar,
            "avatars": len(self.sources),
            "mirror": self.mirror,
            "overlay": self.overlay,
            "stats": self.show_stats,
            "face_found": self.face_found,
            "initial_index": None if self.initial is None else self.initial.index,
            "recalibrations": self.recalibrations,
            "frames_captured": self.stats.captured,
            "frames_shown": self.stats.shown,
            "frames_dropped": self.frames_dropped,
            "fps": self.stats.fps(),
            "latency_ms_p50": None if np.isnan(p50) else round(1000 * p50, 1),
            "latency_ms_p95": None if np.isnan(p95) else round(1000 * p95, 1),
            "stage_ms": self.stats.stage_ms(),
            "stage_cpu_ms": self.stats.stage_ms(cpu=True),
            "glitch_detector": self.glitch_detector is not None,
            "frames_flagged": self.flagged,
            "last_flag": list(self.last_glitch.reasons) if self.last_glitch is not None and self.last_glitch.flagged else [],
        }

    @property
    def frames_due(self) -> int:
        """Frames the camera should have delivered so far (captured plus skipped)."""
        return self.stats.captured + getattr(self.camera, "skipped", 0)

    @property
    def frames_dropped(self) -> int:
        """Frames the camera had to skip plus frames replaced in a queue before a stage took them."""
        return getattr(self.camera, "skipped", 0) + sum(slot.dropped for slot in self._slots)

    @property
    def running(self) -> bool:
        return bool(self._threads) and not self._stop.is_set()

    # -- life cycle ------------------------------------------------------------------------
    def warm_up(self) -> None:
        """Load every model and prepare the first avatar before the clock starts."""
        from fakelab.faces import models

        for index in range(len(self.sources)):  # an avatar that cannot be prepared fails now, not mid-session
            self.prepare_avatar(index)
        source = self.sources[self.avatar]
        avatar = self.prepare_avatar(self.avatar)
        avatar.recalibrate(source, None)
        avatar.render(source, None)

    def _warm_stage(self, name: str) -> None:
        """Load, in the stage's own thread, the per-thread face models it will use."""
        from fakelab.faces import models

        if name in ("track", "animate") and models.dlib_available():
            models.hog_detector()
            if name == "track":
                models.face_encoder()  # for faces that come back
        if name == "output" and self.glitch_detector is not None:
            self.glitch_detector.check(self.sources[self.avatar])
            self.glitch_detector.reset()

    def start(self) -> None:
        """Prepare the first avatar and start the four stage threads."""
        self.prepare_avatar(self.avatar)
        self.stats = LiveStats()
        captured, driving, animated = self._slots
        stages = [
            ("capture", self._capture_loop, ()),
            ("track", self._stage_loop, ("track", captured, self._track, driving)),
            ("animate", self._stage_loop, ("animate", driving, self._animate, animated)),
            ("output", self._stage_loop, ("output", animated, self._output, None)),
        ]
        self._ready = threading.Barrier(len(stages))
        for name, target, args in stages:
            thread = threading.Thread(target=self._guarded, args=(name, target, *args), name=f"live-{name}", daemon=True)
            self._threads.append(thread)
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """Ask every stage to stop (returns at once; `close` waits for them)."""
        if not self._stop.is_set():
            self.stop_requested_at = time.perf_counter()
            self._stop.set()
        for slot in self._slots:
            slot.close()
        if self._ready is not None:
            self._ready.abort()  # stages still warming up go straight to their end

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until the session stops (quit, input ended, error, `stop`); True if it has."""
        return self._stop.wait(timeout)

    def close(self) -> None:
        """Stop, wait for the stages (at most STOP_DEADLINE_S), then close camera and sinks."""
        if self._closed:
            return
        self._closed = True
        self.stop()
        deadline = time.perf_counter() + STOP_DEADLINE_S
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.perf_counter()))
        # The sinks are closed only once the output stage no longer writes to them.
        self._threads[-1].join() if self._threads else None
        errors = []
        for closable in [*self.sinks, self.camera]:
            try:
                closable.close()
            except Exception as error:  # close every output even when one fails
                errors.append(error)
        self.stopped_in = time.perf_counter() - self.stop_requested_at  # threads stopped, outputs closed
        if self.error is None and errors:
            self.error = errors[0]
        # A stage inside a long model call (FOMM on a CPU) ends when the call returns; wait for
        # it so the process never exits under a running native call.
        for thread in self._threads:
            thread.join(LONG_CALL_S)

    @property
    def stuck_threads(self) -> list[str]:
        return [thread.name for thread in self._threads if thread.is_alive()]

    def _guarded(self, name: str, target, *args) -> None:
        try:
            self._warm_stage(name)
            self._ready.wait()  # the camera starts once every stage is ready
            target(*args)
        except threading.BrokenBarrierError:
            pass  # another stage failed while warming up: its error is reported
        except BaseException as error:  # any stage failing stops the whole session
            if self.error is None:
                self.error = error
            self._ready.abort()
            self.stop()

    def _capture_loop(self) -> None:
        slot = self._slots[0]
        self.camera_started_at = time.perf_counter()
        self.camera_started.set()
        for index, image in self.camera.frames(self._stop):
            if self._stop.is_set():
                break
            self.stats.captured += 1
            slot.put(Captured(index, time.perf_counter(), image))
        self.stop()  # the input ended

    def _stage_loop(self, name: str, source: NewestSlot, work, target: NewestSlot | None) -> None:
        while not self._stop.is_set():
            # Backpressure: while the next stage has not taken our last frame, a new one would only
            # replace it unseen; wait instead, and spend the CPU on the stages that need it. Frames
            # are then dropped where it costs nothing, in the camera's slot.
            if self.backpressure and target is not None and not target.wait_taken(POLL_S):
                continue
            item = source.get(POLL_S)
            if item is None:
                continue
            began, began_cpu = time.perf_counter(), time.thread_time()
            result = work(item)
            self.stats.stage_done(name, time.perf_counter() - began, time.thread_time() - began_cpu)
            if target is not None and result is not None:
                target.put(result)

    # -- stages ----------------------------------------------------------------------------
    def _track(self, captured: Captured) -> Driving:
        from fakelab.animation.landmark_warp import _same_face

        faces = self.tracker.update(captured.image)
        face = _same_face(faces, self._followed)
        self._followed = face.track_id if face is not None else None
        self.face_found = face is not None and face.detected
        if self._recentre.is_set() and face is not None:
            self._recentre.clear()
            self.crop.reset()
        crop, landmarks = self.crop.update(captured.image, face)
        return Driving(captured, crop, landmarks, self.crop.epoch)

    def _animate(self, driving: Driving) -> Animated:
        while True:
            try:
                action = self._commands.get_nowait()
            except queue.Empty:
                break
            if action in ("next", "previous"):
                self.avatar = (self.avatar + (1 if action == "next" else -1)) % len(self.sources)
        if driving.landmarks is not None and (self.initial is None or driving.epoch != self.initial.epoch):
            self._calibrate(driving)
        avatar = self.prepare_avatar(self.avatar)
        if self.initial is None:
            return Animated(driving, self.sources[self.avatar], self.avatar)
        if self._calibrated.get(self.avatar) != self.initial.epoch:
            avatar.recalibrate(self.initial.crop, self.initial.landmarks)
            self._calibrated[self.avatar] = self.initial.epoch
        return Animated(driving, avatar.render(driving.crop, driving.landmarks), self.avatar)

    def _calibrate(self, driving: Driving) -> None:
        if driving.landmarks is None:
            return
        self.initial = Initial(driving.epoch, driving.captured.index, driving.crop, driving.landmarks)
        self.recalibrations += 1
        self._calibrated.clear()

    def _output(self, animated: Animated) -> None:
        if self.glitch_detector is not None and animated.avatar != self._checked_avatar:
            self.glitch_detector.reset()  # another face: its landmarks do not continue the last ones
            self._checked_avatar = animated.avatar
        glitch = self.glitch_detector.check(animated.image) if self.glitch_detector is not None else None
        self.last_glitch = glitch
        if glitch is not None and glitch.flagged:
            self.flagged += 1
        frame = compose(
            animated.image,
            mirror=self.mirror,
            driving=(animated.driving.crop, animated.driving.landmarks) if self.overlay else None,
            stats=self._stats_text() if self.show_stats else None,
            glitch=glitch,
        )
        shown = ShownFrame(self.stats.shown, animated.driving.captured.index, 0.0, glitch)
        for sink in self.sinks:
            sink.send(frame, shown)
        now = time.perf_counter()
        shown.latency = now - animated.driving.captured.at
        self.stats.record(now, shown.latency)
        if self.glitch_log is not None and glitch is not None:
            self.glitch_log(shown, glitch)

    def _stats_text(self) -> str:
        p50, p95 = self.stats.recent_latency()
        if np.isnan(p50):
            return f"{self.stats.fps():.0f} fps"
        return f"{self.stats.fps():.0f} fps  {1000 * p50:.0f}/{1000 * p95:.0f} ms"

    def initial_jpeg(self) -> bytes | None:
        """The initial driving frame (face crop) as JPEG, or None before calibration."""
        initial = self.initial
        if initial is None:
            return None
        return encode_jpeg(initial.crop)


def encode_jpeg(frame: np.ndarray, quality: int = 85) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:  # pragma: no cover
        raise RuntimeError("JPEG encoding failed")
    return data.tobytes()


def decode_jpeg(data: bytes) -> np.ndarray:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError("not a JPEG image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
