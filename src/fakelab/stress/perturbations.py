"""Perturbations for stress tests: pure, seeded functions of a clip and a severity level.

Every perturbation takes a list of HxWx3 uint8 RGB frames, a level and a seed and returns
new frames (the input is never changed). Level 0 is the identity; levels 1..N use the
parameters in `Perturbation.parameters`, mildest first. The same (frames, level, seed,
landmarks) always gives the same frames: randomness comes from a generator seeded by
(seed, frame index), never from global state.

The seven distortions of DeeperForensics-1.0 (Jiang et al., CVPR 2020; DeepfakeBench uses
the same set) follow that paper's definitions and its five published levels:

- saturation (CS): the chroma of YCbCr scaled by 0.4, 0.3, 0.2, 0.1, 0.0, luma kept;
- contrast (CC): pixel values multiplied by 0.85, 0.725, 0.6, 0.475, 0.35 (and truncated);
- block (BW): 16, 32, 48, 64, 80 grey (128) 8x8 blocks at random places per frame, times
  the frame's short side // 256 (at least once);
- noise (GNC): Gaussian noise of variance 0.001, 0.002, 0.005, 0.01, 0.05 added to each
  YCbCr channel in studio-range units of [0, 1] (about 9 to 67 grey levels of luma);
- blur (GB): Gaussian kernels of 7, 9, 13, 17, 21 pixels, sigma = kernel / 6;
- pixelation (the paper's "JPEG" in its code): bilinear downscale by 2..6 and back up;
- compression (VC): the clip re-encoded with H.264 at CRF 30, 32, 35, 38, 40.

fakelab's own, from the robustness studies behind this tool: rotation, horizontal flip,
downscale (the frame made smaller, as a low-resolution upload), re-encoding at a target
bitrate, a hand or an object moving across the face, eyes closed and teeth hidden (painted
over along the 68 landmarks), low light (darker frames with sensor noise) and frame drops
(a dropped frame shows the last kept one again, so the clip keeps its length).

Perturbations that need the face (`needs_landmarks`) take per-frame 68x2 landmarks (None
where no face is known; that frame is left as it is); `clip_landmarks` finds them.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from fakelab.errors import InputError

Frames = Sequence[np.ndarray]
Landmarks = Sequence[np.ndarray | None]

RIGHT_EYE = slice(36, 42)
LEFT_EYE = slice(42, 48)
BROWS_RIGHT = slice(17, 22)  # above the right eye (the image's left)
BROWS_LEFT = slice(22, 27)
OUTER_LIPS = slice(48, 60)
INNER_LIPS = slice(60, 68)
NOSE_TIP = 30


@dataclass(frozen=True)
class Perturbation:
    name: str
    description: str
    parameters: tuple  # the parameter of levels 1, 2, ...; level 0 is the identity
    unit: str
    origin: str  # "DeeperForensics-1.0" or "fakelab"
    needs_landmarks: bool = False

    @property
    def levels(self) -> tuple[int, ...]:
        return tuple(range(1, len(self.parameters) + 1))

    def parameter(self, level: int):
        if not 0 <= level <= len(self.parameters):
            raise InputError(f"{self.name} has levels 0 to {len(self.parameters)}, got {level}")
        return None if level == 0 else self.parameters[level - 1]

    def label(self, level: int) -> str:
        value = self.parameter(level)
        return "none" if value is None else f"{value:g} {self.unit}".strip()


# ---------------------------------------------------------------------------- frame level


def _rng(seed: int, index: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(index)])


def _to_uint8(image: np.ndarray) -> np.ndarray:
    """Clip and round. (The reference truncates; rounding differs by at most one level and
    keeps identity settings, such as a saturation factor of 1, exact.)"""
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def _luma(image: np.ndarray) -> np.ndarray:
    return image @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def saturation(frame: np.ndarray, factor: float) -> np.ndarray:
    """Scale Cb and Cr about their neutral value: in RGB, each pixel moves towards its luma."""
    image = frame.astype(np.float32)
    luma = _luma(image)[..., None]
    return _to_uint8(luma + factor * (image - luma))


def contrast(frame: np.ndarray, factor: float) -> np.ndarray:
    """Pixel values times `factor`, truncated as the reference does."""
    return np.clip(frame.astype(np.float32) * factor, 0, 255).astype(np.uint8)


BLOCK_SIDE = 8
BLOCK_GREY = 128


def blocks(frame: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    height, width = frame.shape[:2]
    out = frame.copy()
    total = count * max(1, min(height, width) // 256)
    tops = rng.integers(0, max(1, height - BLOCK_SIDE), size=total)
    lefts = rng.integers(0, max(1, width - BLOCK_SIDE), size=total)
    for top, left in zip(tops, lefts):
        out[top : top + BLOCK_SIDE, left : left + BLOCK_SIDE] = BLOCK_GREY
    return out


# OpenCV's YCrCb (BT.601) chroma scales, and the studio-range spans of DeeperForensics'
# conversion: noise of standard deviation s in its [0, 1] units is s * 255 * 255 / span levels.
_CR_SCALE, _CB_SCALE = 0.713, 0.564
_LUMA_SPAN, _CHROMA_SPAN = 219.0, 224.0


def colour_noise(frame: np.ndarray, variance: float, rng: np.random.Generator) -> np.ndarray:
    image = frame.astype(np.float64)
    y = _luma(image.astype(np.float32)).astype(np.float64)
    cr = (image[..., 0] - y) * _CR_SCALE
    cb = (image[..., 2] - y) * _CB_SCALE
    std = math.sqrt(variance) * 255.0 * 255.0
    noise = rng.standard_normal((3, *y.shape))
    y = y + noise[0] * std / _LUMA_SPAN
    cr = cr + noise[1] * std / _CHROMA_SPAN
    cb = cb + noise[2] * std / _CHROMA_SPAN
    r = y + cr / _CR_SCALE
    b = y + cb / _CB_SCALE
    g = (y - 0.299 * r - 0.114 * b) / 0.587
    return _to_uint8(np.stack([r, g, b], axis=-1))


def blur(frame: np.ndarray, kernel: int) -> np.ndarray:
    return cv2.GaussianBlur(frame, (kernel, kernel), kernel / 6.0)


def pixelate(frame: np.ndarray, factor: int) -> np.ndarray:
    height, width = frame.shape[:2]
    small = cv2.resize(frame, (max(1, width // factor), max(1, height // factor)), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_LINEAR)


def rotate(frame: np.ndarray, degrees: float) -> np.ndarray:
    """Rotated about the centre, counter-clockwise, corners filled with black."""
    height, width = frame.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2.0, height / 2.0), degrees, 1.0)
    return cv2.warpAffine(frame, matrix, (width, height), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))


def flip(frame: np.ndarray, _: object = None) -> np.ndarray:
    return np.ascontiguousarray(frame[:, ::-1])


def downscale(frame: np.ndarray, factor: float) -> np.ndarray:
    """The frame made `factor` times smaller (area averaging): a low-resolution copy."""
    height, width = frame.shape[:2]
    size = (max(2, round(width * factor)), max(2, round(height * factor)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA)


def low_light(frame: np.ndarray, brightness: float, rng: np.random.Generator) -> np.ndarray:
    """Darker by `brightness`, with the sensor noise that the gain needed in the dark adds
    (standard deviation 1.5 / sqrt(brightness) grey levels)."""
    image = frame.astype(np.float32) * brightness
    image += rng.standard_normal(image.shape).astype(np.float32) * (1.5 / math.sqrt(brightness))
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


# ------------------------------------------------------------------------- face painting


def _face_frame(landmarks: np.ndarray) -> tuple[np.ndarray, float]:
    """(centre, side) of the face: the landmarks' bounding square."""
    low, high = landmarks.min(axis=0), landmarks.max(axis=0)
    return (low + high) / 2.0, float(max(high - low))


def _soft_paint(frame: np.ndarray, mask: np.ndarray, colour: np.ndarray, feather: float) -> np.ndarray:
    """`frame` with `colour` painted where `mask` (uint8 0/255) is set, edges feathered."""
    if feather > 0.5:
        kernel = 2 * int(math.ceil(2 * feather)) + 1
        alpha = cv2.GaussianBlur(mask.astype(np.float32) / 255.0, (kernel, kernel), feather)
    else:
        alpha = mask.astype(np.float32) / 255.0
    paint = np.broadcast_to(colour, frame.shape) if np.ndim(colour) == 1 else colour
    out = frame.astype(np.float32) * (1 - alpha[..., None]) + paint.astype(np.float32) * alpha[..., None]
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def _median_colour(frame: np.ndarray, mask: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    pixels = frame[mask > 0]
    return np.median(pixels, axis=0).astype(np.float32) if len(pixels) else fallback


def _polygon_mask(shape: tuple[int, ...], points: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape[:2], dtype=np.uint8)
    cv2.fillPoly(mask, [np.round(points).astype(np.int32)], 255)
    return mask


def _grown(points: np.ndarray, factor: float) -> np.ndarray:
    centre = points.mean(axis=0)
    return centre + (points - centre) * factor


def close_eyes(frame: np.ndarray, fraction: float, landmarks: np.ndarray | None) -> np.ndarray:
    """Lower a lid, in the colour of the skin between brow and eye, over the top `fraction`
    of each eye (1.0: fully closed, with a dark lash line where the lids meet)."""
    if landmarks is None:
        return frame.copy()
    out = frame
    for eye, brow in ((RIGHT_EYE, BROWS_RIGHT), (LEFT_EYE, BROWS_LEFT)):
        points = landmarks[eye]
        lid = _grown(points, 1.35)
        top, bottom = lid[:, 1].min(), lid[:, 1].max()
        edge = top + fraction * (bottom - top)
        mask = _polygon_mask(frame.shape, lid)
        mask[int(math.ceil(edge)) :] = 0
        height = max(2.0, bottom - top)
        # The skin of the upper lid, halfway between the brow and the eye, gives the colour.
        centre = (points.mean(axis=0) + landmarks[brow].mean(axis=0)) / 2
        patch = np.zeros(frame.shape[:2], dtype=np.uint8)
        cv2.circle(patch, tuple(int(v) for v in np.round(centre)), max(1, int(height / 3)), 255, -1)
        colour = _median_colour(frame, patch, np.array([180, 140, 120], np.float32))
        out = _soft_paint(out, mask, colour, feather=height / 6)
        if fraction >= 1.0:
            # Where the lids meet: halfway between the upper (1, 2) and lower (5, 4) contours.
            line = np.array([points[0], (points[1] + points[5]) / 2, (points[2] + points[4]) / 2, points[3]])
            lash = np.zeros(frame.shape[:2], dtype=np.uint8)
            cv2.polylines(lash, [np.round(line).astype(np.int32)], False, 255, max(1, round(height / 6)), cv2.LINE_AA)
            out = _soft_paint(out, lash, colour * 0.35, feather=0.6)
    return out


def hide_teeth(frame: np.ndarray, fraction: float, landmarks: np.ndarray | None) -> np.ndarray:
    """Paint the inside of the mouth in the lips' colour, a band of `fraction` of its
    height about its middle (1.0: all of it, as closed lips)."""
    if landmarks is None:
        return frame.copy()
    inner = _grown(landmarks[INNER_LIPS], 1.1)
    top, bottom = inner[:, 1].min(), inner[:, 1].max()
    middle, half = (top + bottom) / 2.0, (bottom - top) * fraction / 2.0
    mask = _polygon_mask(frame.shape, inner)
    mask[: int(math.floor(middle - half))] = 0
    mask[int(math.ceil(middle + half)) + 1 :] = 0
    lips = _polygon_mask(frame.shape, landmarks[OUTER_LIPS]) & ~_polygon_mask(frame.shape, inner)
    colour = _median_colour(frame, lips, np.array([150, 80, 80], np.float32)) * 0.9
    return _soft_paint(frame, mask, colour, feather=max(0.6, (bottom - top) / 12))


HAND_COLOUR = np.array([214, 160, 128], dtype=np.float32)
OBJECT_COLOUR = np.array([52, 58, 70], dtype=np.float32)


def _hand_mask(shape: tuple[int, ...], centre: np.ndarray, side: float) -> np.ndarray:
    """A hand seen from the back, fingers up, about `side` pixels tall."""
    mask = np.zeros(shape[:2], dtype=np.uint8)
    cx, cy = centre
    palm = (int(round(cx)), int(round(cy + 0.15 * side)))
    cv2.ellipse(mask, palm, (max(1, int(0.22 * side)), max(1, int(0.25 * side))), 0, 0, 360, 255, -1)
    finger = max(1, int(round(0.04 * side)))  # half a finger's width
    for k, length in enumerate((0.36, 0.42, 0.40, 0.33)):
        x = cx + (k - 1.5) * 0.12 * side
        top = cy - 0.05 * side - length * side
        cv2.line(mask, (int(round(x)), int(round(cy))), (int(round(x)), int(round(top))), 255, 2 * finger)
    thumb_from = (int(round(cx + 0.18 * side)), int(round(cy + 0.2 * side)))
    thumb_to = (int(round(cx + 0.42 * side)), int(round(cy - 0.02 * side)))
    cv2.line(mask, thumb_from, thumb_to, 255, 2 * finger)
    return mask


def _object_mask(shape: tuple[int, ...], centre: np.ndarray, side: float) -> np.ndarray:
    """A phone-like rounded slab, `side` pixels tall and half as wide."""
    mask = np.zeros(shape[:2], dtype=np.uint8)
    half_w, half_h = 0.25 * side, 0.5 * side
    radius = max(1, int(0.08 * side))
    cx, cy = centre
    left, right, top, bottom = cx - half_w, cx + half_w, cy - half_h, cy + half_h
    cv2.rectangle(mask, (int(left + radius), int(top)), (int(right - radius), int(bottom)), 255, -1)
    cv2.rectangle(mask, (int(left), int(top + radius)), (int(right), int(bottom - radius)), 255, -1)
    for x in (left + radius, right - radius):
        for y in (top + radius, bottom - radius):
            cv2.circle(mask, (int(x), int(y)), radius, 255, -1)
    return mask


def occluder(
    frame: np.ndarray,
    size: float,
    landmarks: np.ndarray | None,
    progress: float,
    shape: str,
    rng: np.random.Generator,
) -> np.ndarray:
    """A hand (or an object) `size` face-sides tall, crossing the face from one side to
    the other as the clip goes from `progress` 0 to 1; it covers the face's middle at 0.5."""
    if landmarks is None:
        return frame.copy()
    centre, side = _face_frame(landmarks)
    occluder_side = size * side * 1.4
    travel = side * 0.5 + occluder_side * 0.5
    direction = 1.0 if rng.integers(2) else -1.0
    position = centre + np.array([direction * (2 * progress - 1) * travel, 0.1 * side])
    if shape == "hand":
        mask = _hand_mask(frame.shape, position, occluder_side)
        colour = HAND_COLOUR
    else:
        mask = _object_mask(frame.shape, position, occluder_side)
        colour = OBJECT_COLOUR
    return _soft_paint(frame, mask, colour, feather=max(0.6, occluder_side / 120))


# ------------------------------------------------------------------------------ clip level


def _reencode(frames: Frames, fps: float, crf: int | None = None, bitrate: int | None = None) -> list[np.ndarray]:
    """The frames after an H.264 round trip through fakelab's writer and reader."""
    from fakelab.video import VideoWriter, iter_frames

    with tempfile.TemporaryDirectory(prefix="fakelab-stress-") as folder:
        path = Path(folder) / "clip.mp4"
        with VideoWriter(path, fps, crf=crf if crf is not None else 18, bitrate=bitrate) as writer:
            for frame in frames:
                writer.write(np.ascontiguousarray(frame))
        decoded = list(iter_frames(path))
    height, width = frames[0].shape[:2]
    # The writer pads odd sizes by one pixel; give the input's size back.
    return [frame[:height, :width].copy() for frame in decoded[: len(frames)]]


def drop_frames(frames: Frames, fraction: float, seed: int) -> list[np.ndarray]:
    """Each frame but the first is lost with probability `fraction`; a lost frame shows the
    last kept one again (a frozen picture), so the clip keeps its length and timing."""
    keep = np.random.default_rng([int(seed), 0x0D12]).random(len(frames)) >= fraction
    keep[0] = True
    out, last = [], frames[0]
    for frame, kept in zip(frames, keep):
        last = frame if kept else last
        out.append(last.copy())
    return out


# -------------------------------------------------------------------------------- registry

DEFAULT_FPS = 25.0

PERTURBATIONS: dict[str, Perturbation] = {
    p.name: p
    for p in (
        Perturbation("saturation", "colour saturation: YCbCr chroma scaled", (0.4, 0.3, 0.2, 0.1, 0.0), "x chroma", "DeeperForensics-1.0"),
        Perturbation("contrast", "contrast: pixel values scaled", (0.85, 0.725, 0.6, 0.475, 0.35), "x", "DeeperForensics-1.0"),
        Perturbation("block", "block-wise: grey 8x8 blocks", (16, 32, 48, 64, 80), "blocks", "DeeperForensics-1.0"),
        Perturbation("noise", "Gaussian colour noise in YCbCr", (0.001, 0.002, 0.005, 0.01, 0.05), "variance", "DeeperForensics-1.0"),
        Perturbation("blur", "Gaussian blur", (7, 9, 13, 17, 21), "px kernel", "DeeperForensics-1.0"),
        Perturbation("pixelation", "pixelation: down and back up", (2, 3, 4, 5, 6), "x", "DeeperForensics-1.0"),
        Perturbation("compression", "H.264 re-encoding at a CRF", (30, 32, 35, 38, 40), "CRF", "DeeperForensics-1.0"),
        Perturbation("rotation", "rotation about the centre", (5, 10, 20, 30, 45), "degrees", "fakelab"),
        Perturbation("flip", "horizontal flip", (1,), "", "fakelab"),
        Perturbation("downscale", "smaller frames (area averaging)", (0.75, 0.5, 0.35, 0.25, 0.15), "x side", "fakelab"),
        Perturbation("bitrate", "H.264 re-encoding at a target bitrate", (8000, 2000, 1000, 400, 110), "kbit/s", "fakelab"),
        Perturbation("hand", "a hand crossing the face", (0.3, 0.45, 0.6, 0.75, 0.9), "face sides", "fakelab", True),
        Perturbation("object", "an object crossing the face", (0.3, 0.45, 0.6, 0.75, 0.9), "face sides", "fakelab", True),
        Perturbation("eyes-closed", "eyes closed (lids painted along landmarks)", (0.2, 0.4, 0.6, 0.8, 1.0), "of the eye", "fakelab", True),
        Perturbation("teeth-hidden", "teeth hidden (mouth painted along landmarks)", (0.2, 0.4, 0.6, 0.8, 1.0), "of the mouth", "fakelab", True),
        Perturbation("low-light", "low light with sensor noise", (0.5, 0.35, 0.25, 0.15, 0.08), "x brightness", "fakelab"),
        Perturbation("frame-drop", "frames dropped (frozen)", (0.1, 0.2, 0.3, 0.4, 0.5), "of frames", "fakelab"),
    )
}
DEEPERFORENSICS = tuple(name for name, p in PERTURBATIONS.items() if p.origin == "DeeperForensics-1.0")


def get_perturbation(name: str) -> Perturbation:
    try:
        return PERTURBATIONS[name]
    except KeyError:
        raise InputError(f"unknown perturbation {name!r}; known: {', '.join(PERTURBATIONS)}") from None


def _per_frame(function: Callable[..., np.ndarray]) -> Callable:
    def apply(frames, value, seed, landmarks, fps):
        return [function(frame, value, _rng(seed, index)) for index, frame in enumerate(frames)]

    return apply


def _per_face(function: Callable[..., np.ndarray]) -> Callable:
    def apply(frames, value, seed, landmarks, fps):
        return [function(frame, value, marks) for frame, marks in zip(frames, landmarks)]

    return apply


def _crossing(shape: str) -> Callable:
    def apply(frames, value, seed, landmarks, fps):
        span = max(1, len(frames) - 1)
        return [
            occluder(frame, value, marks, index / span, shape, np.random.default_rng([int(seed), 0x0CC]))
            for index, (frame, marks) in enumerate(zip(frames, landmarks))
        ]

    return apply


_APPLY: dict[str, Callable] = {
    "saturation": _per_frame(lambda f, v, r: saturation(f, v)),
    "contrast": _per_frame(lambda f, v, r: contrast(f, v)),
    "block": _per_frame(blocks),
    "noise": _per_frame(colour_noise),
    "blur": _per_frame(lambda f, v, r: blur(f, v)),
    "pixelation": _per_frame(lambda f, v, r: pixelate(f, v)),
    "compression": lambda frames, value, seed, landmarks, fps: _reencode(frames, fps, crf=value),
    "rotation": _per_frame(lambda f, v, r: rotate(f, v)),
    "flip": _per_frame(lambda f, v, r: flip(f)),
    "downscale": _per_frame(lambda f, v, r: downscale(f, v)),
    "bitrate": lambda frames, value, seed, landmarks, fps: _reencode(frames, fps, bitrate=int(value * 1000)),
    "hand": _crossing("hand"),
    "object": _crossing("object"),
    "eyes-closed": _per_face(close_eyes),
    "teeth-hidden": _per_face(hide_teeth),
    "low-light": _per_frame(low_light),
    "frame-drop": lambda frames, value, seed, landmarks, fps: drop_frames(frames, value, seed),
}


def perturb(
    name: str,
    frames: Frames,
    level: int,
    seed: int = 0,
    landmarks: Landmarks | None = None,
    fps: float = DEFAULT_FPS,
) -> list[np.ndarray]:
    """The clip `frames` under perturbation `name` at `level` (0: an unchanged copy).

    `landmarks` (one 68x2 array or None per frame) is required by the perturbations that
    paint on the face; `fps` matters only to the H.264 ones (rate control)."""
    perturbation = get_perturbation(name)
    value = perturbation.parameter(level)
    frames = list(frames)
    if not frames:
        raise InputError("a perturbation needs at least one frame")
    if value is None:
        return [frame.copy() for frame in frames]
    if perturbation.needs_landmarks:
        if landmarks is None or len(landmarks) != len(frames):
            raise ValueError(f"{name} paints on the face: it needs one landmark array (or None) per frame")
    else:
        landmarks = [None] * len(frames)
    return _APPLY[name](frames, value, seed, landmarks, fps)


def clip_landmarks(frames: Frames, face_detector: str | None = None) -> list[np.ndarray | None]:
    """The main face's 68 landmarks in each frame (held over short gaps), None where the
    face is unknown; all None when there is no face at all."""
    from fakelab.faces.tracking import track_faces

    tracking = track_faces(frames, face_detector, detect_every=8, max_hold=4)
    if not tracking.tracks:
        return [None] * len(frames)
    track = tracking.face(0)
    return [None if np.isnan(marks).any() else marks for marks in track.landmarks]
