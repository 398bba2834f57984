"""`fakelab.animate`: bring a still image to life with the motion of a driving video."""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass
from itertools import chain, islice
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol, Sequence

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from fakelab.animation.checkpoint import load_networks
from fakelab.animation.config import load_config
from fakelab.animation.engine import FommAnimator
from fakelab.animation.motion import MotionTransfer
from fakelab.errors import FakelabError, InputError
from fakelab.video import VideoWriter, has_audio, iter_frames, load_image, probe_video

PathLike = str | os.PathLike
Frames = Sequence[np.ndarray]
DEFAULT_FPS = 25.0


class Animator(Protocol):
    """An animation model: one output frame per driving frame, streamed.

    Relative motion takes the first driving frame as the initial frame.
    """

    size: tuple[int, int]  # (width, height) of the frames it takes and gives

    def animate(self, source: np.ndarray, driving: Iterable[np.ndarray]) -> Iterator[np.ndarray]: ...


@dataclass(frozen=True)
class AnimationResult:
    output: Path
    frames: int
    fps: float
    seconds: float
    audio: Path | None
    details: str = ""  # which model, initial frame and crop were used

    def summary(self) -> str:
        speed = self.frames / self.seconds if self.seconds > 0 else float("inf")
        audio = f"audio from {self.audio.name}" if self.audio else "no audio"
        line = f"animated {self.frames} frames in {self.seconds:.1f} s ({speed:.1f} fps, {audio}) -> {self.output}"
        return f"{line}\n{self.details}" if self.details else line


def resize_frame(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an HxWx3 uint8 frame to (width, height); the whole frame is kept, as the reference demo does."""
    if (frame.shape[1], frame.shape[0]) == tuple(size):
        return frame
    return np.asarray(Image.fromarray(frame).resize(size, Image.Resampling.LANCZOS))


def resolve_device(device: str) -> torch.device:
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise FakelabError(f"device {device} requested but CUDA is not available here: use --device cpu")
    try:
        return torch.device(device)
    except RuntimeError:
        raise FakelabError(f"unknown device '{device}': use cpu or cuda") from None


def fomm_animator(
    checkpoint: PathLike,
    config: PathLike = "vox-256",
    relative: bool = True,
    adapt_scale: bool = True,
    device: str = "cpu",
    batch_size: int | None = None,
    backend: str = "auto",
    threads: int | None = None,
    precision: str | None = None,
    log: Callable[[str], None] | None = None,
) -> FommAnimator:
    """A First Order Motion Model animator from a checkpoint and its config (bundled name or YAML path).

    `backend` `auto` runs the per-frame render as this machine's calibration chose (see
    fakelab.animation.calibrate); `torch`, `onnxruntime` or `openvino` name it; `threads`,
    `batch_size` and `precision` (`bf16`/`fp16`: opt-in, not bit-faithful) override parts."""
    if batch_size is not None and batch_size < 1:
        raise FakelabError("batch size must be at least 1")
    if threads is not None and threads < 1:
        raise FakelabError("the thread count must be at least 1")
    networks = load_networks(load_config(config), checkpoint)
    motion = MotionTransfer(relative=relative, adapt_scale=relative and adapt_scale)
    return FommAnimator(
        networks, motion, device=resolve_device(device), batch_size=batch_size, backend=backend, threads=threads,
        precision=precision, log=log,
    )


MODELS = ("portrait", "fomm", "landmark-warp", "landmarks2face")


def default_model(checkpoint: PathLike | None) -> str:
    """fomm when a checkpoint is given, else the portrait model, which needs no weights."""
    return "fomm" if checkpoint is not None else "portrait"


def build_animator(
    model: str | None = None,
    checkpoint: PathLike | None = None,
    config: PathLike = "vox-256",
    relative: bool = True,
    adapt_scale: bool = True,
    device: str = "cpu",
    batch_size: int | None = None,
    **render,
) -> Animator:
    """The animation model by name: `portrait` (the default without a checkpoint; needs no
    weights), `fomm` (needs a checkpoint) or `landmark-warp` (the classical baseline).

    `render` (backend, threads, precision, log) goes to `fomm_animator`."""
    model = model or default_model(checkpoint)
    if model == "portrait":
        from fakelab.animation.portrait import PortraitAnimator

        return PortraitAnimator()
    if model == "fomm":
        if checkpoint is None:
            raise FakelabError("the fomm model needs a checkpoint (or use the portrait model, which needs none)")
        return fomm_animator(checkpoint, config, relative, adapt_scale, device, batch_size, **render)
    if model == "landmark-warp":
        from fakelab.animation.landmark_warp import LandmarkWarpAnimator

        return LandmarkWarpAnimator(adapt_scale=relative and adapt_scale, relative=relative)
    if model == "landmarks2face":
        if checkpoint is None:
            raise FakelabError("the landmarks2face model needs a checkpoint: a generator from `fakelab pix2pix train`")
        from fakelab.pix2pix.reenact import LandmarksToFaceAnimator

        return LandmarksToFaceAnimator(checkpoint, device, adapt_scale=relative and adapt_scale, relative=relative)
    raise FakelabError(f"unknown model '{model}': use one of {', '.join(MODELS)}")


class DrivingVideo:
    """Driving frames at the animator's size, readable more than once (for the best-frame pass).

    With `crop`, each frame is first cut to the followed face, as the FOMM crop tool does.
    """

    def __init__(
        self, driving: PathLike | Frames, size: tuple[int, int] | None, fps: float | None, crop: bool = False
    ):
        self.size = size
        if isinstance(driving, (str, os.PathLike)):
            self.path: Path | None = Path(driving)
            info = probe_video(self.path)
            if info.frame_count < 2:
                raise InputError(f"{self.path} is a still image, not a driving video: motion needs at least 2 frames")
            self.fps = fps or info.fps
            self.length = info.frame_count
            self._open: Callable[[], Iterable[np.ndarray]] = lambda: iter_frames(self.path)
        else:
            if len(driving) == 0:
                raise InputError("the driving video has no frames")
            self.path = None
            self.fps = fps or DEFAULT_FPS
            self.length = len(driving)
            self._open = lambda: driving
        self.crop_plan = self._plan_crop() if crop else None

    def _plan_crop(self):
        from fakelab.faces import plan_crop, track_faces

        tracking = track_faces(self._open())
        face = tracking.face(0, where="the driving video")
        return plan_crop(face, tracking.frame_size, size=max(self.size))

    def frames(self) -> Iterator[np.ndarray]:
        frames = self._open()
        if self.crop_plan is not None:
            from fakelab.faces import apply_crop

            frames = apply_crop(frames, self.crop_plan)
        if self.size is None:  # the model takes frames at any size
            return iter(frames)
        return (resize_frame(frame, self.size) for frame in frames)

    def frame(self, index: int) -> np.ndarray:
        found = next(islice(self.frames(), index, None), None)
        if found is None:
            raise InputError(f"best frame {index} is past the end of the driving video")
        return found


def animate_frames(
    animator: Animator, source: np.ndarray, driving: DrivingVideo, initial: np.ndarray | None = None
) -> Iterator[np.ndarray]:
    """Animated frames in the driving video's order.

    With an `initial` frame (the best frame), motion is taken relative to it, which
    is what animating forwards and backwards from it amounts to: each output frame
    depends only on its own driving frame and the initial one. The initial frame is
    fed first and its output dropped.
    """
    source = resize_frame(source, animator.size)
    if initial is None:
        yield from animator.animate(source, driving.frames())
        return
    outputs = animator.animate(source, chain([initial], driving.frames()))
    next(outputs)
    yield from outputs


def _read_source(source: PathLike | np.ndarray) -> np.ndarray:
    if isinstance(source, np.ndarray):
        if source.dtype != np.uint8 or source.ndim != 3 or source.shape[2] != 3:
            raise InputError(f"the source array must be HxWx3 uint8 RGB, got {source.dtype} {source.shape}")
        return source
    return load_image(source)


def _audio_for(audio: str | PathLike | None, driving: DrivingVideo, output: Path) -> Path | None:
    if audio is None or audio == "none":
        return None
    if audio == "keep":
        if driving.path is None or output.suffix.lower() == ".gif" or not has_audio(driving.path):
            return None
        return driving.path
    path = Path(audio)
    if not path.is_file():
        raise InputError(f"audio file {path} does not exist")
    return path


def _refuse_overwriting_inputs(output: Path, *inputs) -> None:
    for item in inputs:
        if isinstance(item, (str, os.PathLike)) and item not in ("keep", "none") and Path(item).exists():
            if Path(item).resolve() == output.resolve():
                raise InputError(f"the output {output} is one of the inputs: give another path")


def _face_crop(image: np.ndarray, size: tuple[int, int]):
    from fakelab.faces import crop_image

    return crop_image(image, size=max(size), where="the source image")


def _best_frame_index(source: np.ndarray, driving: DrivingVideo) -> int:
    from fakelab.faces import find_best_frame

    return find_best_frame(source, driving.frames())


def animate(
    source: PathLike | np.ndarray,
    driving: PathLike | Frames,
    output: PathLike | None = None,
    *,
    animator: Animator | None = None,
    model: str | None = None,
    checkpoint: PathLike | None = None,
    config: PathLike = "vox-256",
    relative: bool = True,
    adapt_scale: bool = True,
    best_frame: int | None = None,
    find_best_frame: bool = False,
    crop: bool = False,
    paste_back: bool = False,
    audio: str | PathLike | None = "keep",
    fps: float | None = None,
    device: str = "cpu",
    batch_size: int | None = None,
    backend: str = "auto",
    threads: int | None = None,
    precision: str | None = None,
    progress: bool = False,
    provenance: bool = True,
) -> AnimationResult | list[np.ndarray]:
    """Animate `source` (image path or HxWx3 uint8 array) with `driving` (video path or frames).

    The model is `animator`, or built from `model`: by default `portrait` without a
    checkpoint (training-free, at the source's native resolution, its face region
    always cut out and pasted back, so `crop` and `paste_back` are implied), `fomm`
    with a `checkpoint` and its `config`, or `landmark-warp`. Other models' face
    options: `crop` cuts the source and the
    driving frames to the face first; `paste_back` composites the animated face
    into the full-size source (the output has the source's size); `find_best_frame`
    takes motion relative to the driving frame whose pose is closest to the source's
    (`best_frame` names that frame directly). `backend`, `threads`, `batch_size` and
    `precision` say how the FOMM render runs (default: as calibrated for this machine).

    With `output` the video (mp4 or gif, at the driving fps) is written there
    atomically, with audio `keep` (the driving video's), `none`, or a path to dub,
    and an `AnimationResult` is returned; without it, the frames are returned.

    `provenance` (default on) marks a written video as fakelab's: an invisible watermark
    in its frames and a signed C2PA manifest (AI-generated, by fakelab, with its inputs'
    SHA-256), see docs/provenance.md. Turn it off only for detector research (a detector
    trained on marked fakes learns the mark). Frames returned in memory are never marked.
    """
    if best_frame is not None and find_best_frame:
        raise FakelabError("give a best frame or ask to find it, not both")
    if animator is None:
        model = model or default_model(checkpoint)
        render = dict(backend=backend, threads=threads, precision=precision) if model == "fomm" else {}
        if progress and render:
            render["log"] = lambda message: tqdm.write(message, file=sys.stderr)
        animator = build_animator(model, checkpoint, config, relative, adapt_scale, device, batch_size, **render)
    if output is not None:
        _refuse_overwriting_inputs(Path(output), source, driving, audio)
    source_image = _read_source(source)
    native = getattr(animator, "size", ()) is None  # the portrait model: face cut out and pasted back itself
    signing = None
    if provenance and output is not None:
        from fakelab.provenance import COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA, TRAINED_ALGORITHMIC_MEDIA

        signing = dict(
            inputs=[source, driving, checkpoint],
            source_type=COMPOSITE_WITH_TRAINED_ALGORITHMIC_MEDIA if paste_back or native else TRAINED_ALGORITHMIC_MEDIA,
            description="portrait animated with the motion of a driving video",
            parameters={"model": getattr(animator, "name", None) or model, "crop": crop, "paste_back": paste_back,
                        "best_frame": best_frame, "relative": relative, "adapt_scale": adapt_scale},
        )
    if native:
        return _animate_native(
            animator, source_image, driving, output, best_frame, find_best_frame, audio, fps, progress, signing
        )
    source_crop = _face_crop(source_image, animator.size) if crop or paste_back else None
    animated_source = source_crop.image if source_crop is not None else source_image
    driving_video = DrivingVideo(driving, animator.size, fps, crop=crop)
    if find_best_frame:
        best_frame = _best_frame_index(resize_frame(animated_source, animator.size), driving_video)
    initial = None if best_frame is None else driving_video.frame(best_frame)
    frames = animate_frames(animator, animated_source, driving_video, initial)
    if source_crop is not None and paste_back:
        from fakelab.faces import paste_back as paste_into

        frames = paste_into(source_image, source_crop.box, frames, source_crop.landmarks)
    return _deliver(frames, driving_video, output, audio, progress, signing=signing)


def _deliver(
    frames: Iterable[np.ndarray],
    driving_video: DrivingVideo,
    output: PathLike | None,
    audio: str | PathLike | None,
    progress: bool,
    details: Callable[[], str] = lambda: "",
    signing: dict | None = None,
) -> AnimationResult | list[np.ndarray]:
    """The frames as a list (no `output`), or written to `output` as a video with its
    audio; `details` (called once all frames are made) goes into the summary. With
    `signing` (the arguments of `Stamp.sign`, without the output) the video is marked."""
    if output is None:
        return list(tqdm(frames, total=driving_video.length, unit="frame", desc="animating", disable=not progress))

    from fakelab.provenance import Stamp

    output = Path(output)
    audio_path = _audio_for(audio, driving_video, output)
    stamp = Stamp.new(enabled=signing is not None)
    started = time.perf_counter()
    with (
        VideoWriter(output, driving_video.fps, audio=audio_path) as writer,
        tqdm(total=driving_video.length, unit="frame", desc="animating", disable=not progress) as bar,
    ):
        for frame in stamp.frames(frames):
            writer.write(frame)
            bar.update()
    if signing is not None:
        stamp.sign(output, [*signing.pop("inputs"), audio_path], **signing)
    return AnimationResult(
        output, writer.frames_written, driving_video.fps, time.perf_counter() - started, audio_path, details()
    )


def _animate_native(
    animator,
    source_image: np.ndarray,
    driving: PathLike | Frames,
    output: PathLike | None,
    best_frame: int | None,
    find_best_frame: bool,
    audio: str | PathLike | None,
    fps: float | None,
    progress: bool,
    signing: dict | None = None,
) -> AnimationResult | list[np.ndarray]:
    """A model that works at every frame's own size (the portrait model): the source
    at its native resolution, driving frames as they are; it finds, animates and
    pastes back the face region itself, so the output has exactly the source's size."""
    portrait = animator.prepare(source_image)
    driving_video = DrivingVideo(driving, None, fps)
    if find_best_frame:
        best_frame = _best_frame_index(source_image, driving_video)
    initial = None if best_frame is None else driving_video.frame(best_frame)
    if initial is not None:
        portrait.recalibrate(initial)
    frames = (portrait.render(frame) for frame in driving_video.frames())
    details = lambda: _native_details(animator, portrait, source_image, best_frame, find_best_frame)  # noqa: E731
    return _deliver(frames, driving_video, output, audio, progress, details, signing)


def _native_details(animator, portrait, source_image: np.ndarray, best_frame: int | None, found: bool) -> str:
    """What the summary says a native-resolution model used: model, neutral frame, face region."""
    left, top, right, bottom = portrait.region
    height, width = source_image.shape[:2]
    if best_frame is None:
        initial = f"{portrait.neutral_frame} (the first with a face)"
    else:
        initial = f"{best_frame}{' (the best frame: pose closest to the source)' if found else ''}"
    return (
        f"model {getattr(animator, 'name', type(animator).__name__)} (no weights); motion relative to driving "
        f"frame {initial}; face region {right - left}x{bottom - top} at ({left}, {top}) of the {width}x{height} "
        f"source, animated at native resolution and pasted back; output {width}x{height}"
    )
