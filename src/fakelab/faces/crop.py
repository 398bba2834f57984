"""Square face crops of videos and images, and the boxes to undo them.

As the FOMM crop tool does, the crop box stays still while the face stays inside
it: the video is cut into segments, each with one box that holds every face box
of the segment with room to spare. A still box gives a crop with no jitter at all;
a face that moves too far or zooms starts a new segment (a visible cut).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np

from fakelab.atomic import atomic_output
from fakelab.errors import InputError, NoFaceError
from fakelab.faces.detect import Box
from fakelab.faces.landmarks import find_faces, landmark_box
from fakelab.faces.tracking import FaceTrack, track_faces

DEFAULT_SIZE = 256
# Room around the face on each side, as a fraction of its size: the face (brows to
# chin) then spans about half the crop, as in the VoxCeleb crops FOMM is trained on.
DEFAULT_MARGIN = 0.5
# A segment ends when the face's size leaves this ratio of its size at the start.
ZOOM_TOLERANCE = 1.25
BOXES_FORMAT = "fakelab-crop-boxes/1"


@dataclass
class CropPlan:
    """Where to crop each frame: one square box per frame, in source pixels."""

    frame_size: tuple[int, int]  # (width, height) of the source
    size: int  # side of the output crops
    boxes: np.ndarray  # (T, 4) int: left, top, right, bottom; may reach outside the frame
    found: np.ndarray  # (T,) bool: the face was found in that frame (else its box was held)
    segments: list[tuple[int, int]]  # [start, end) runs of frames sharing one box
    face: FaceTrack | None = field(default=None, repr=False)  # the followed face, held

    @property
    def frame_count(self) -> int:
        return len(self.found)

    @property
    def found_fraction(self) -> float:
        return float(self.found.mean()) if self.frame_count else 0.0

    def gaps(self) -> list[tuple[int, int]]:
        """Runs of frames [start, end) with no face found: they keep the box around them."""
        edges = np.diff(np.concatenate([[1], self.found.astype(np.int8), [1]]))
        return list(zip(np.flatnonzero(edges == -1).tolist(), np.flatnonzero(edges == 1).tolist()))

    def box(self, index: int) -> Box:
        return Box(*(float(v) for v in self.boxes[index]))

    def to_json(self) -> dict:
        return {
            "format": BOXES_FORMAT,
            "source_size": list(self.frame_size),
            "size": self.size,
            "frame_count": self.frame_count,
            "found_fraction": self.found_fraction,
            "gaps": [list(gap) for gap in self.gaps()],
            "segments": [list(segment) for segment in self.segments],
            "boxes": self.boxes.tolist(),
            "found": self.found.astype(int).tolist(),
        }

    @classmethod
    def from_json(cls, data: dict) -> CropPlan:
        if data.get("format") != BOXES_FORMAT:
            raise InputError(f"not a crop-box file (format is not {BOXES_FORMAT})")
        return cls(
            frame_size=tuple(data["source_size"]),
            size=int(data["size"]),
            boxes=np.asarray(data["boxes"], dtype=np.int64).reshape(-1, 4),
            found=np.asarray(data["found"], dtype=bool),
            segments=[tuple(segment) for segment in data["segments"]],
        )


@dataclass(frozen=True)
class ImageCrop:
    image: np.ndarray  # size x size x 3 uint8 RGB
    box: Box  # the square crop box in the source image (may reach outside it)
    landmarks: np.ndarray  # (68, 2) landmarks of the face in the source image

    @property
    def landmarks_in_crop(self) -> np.ndarray:
        """The face's landmarks in the crop's pixels."""
        return (self.landmarks - (self.box.left, self.box.top)) * (self.image.shape[1] / self.box.width)


@dataclass(frozen=True)
class CropResult:
    video: Path
    boxes: Path  # the JSON of per-frame crop boxes
    plan: CropPlan

    def summary(self) -> str:
        gaps = ", ".join(f"{start}-{end - 1}" for start, end in self.plan.gaps()) or "none"
        return (
            f"wrote {self.video} ({self.plan.frame_count} frames, face found in "
            f"{100 * self.plan.found_fraction:.1f}%, frames without a face: {gaps}, "
            f"{len(self.plan.segments)} crop box(es)) and {self.boxes}"
        )


def boxes_path(video: str | os.PathLike) -> Path:
    """Where the crop boxes of a cropped video are written: beside it, `<name>.boxes.json`."""
    video = Path(video)
    return video.with_name(video.stem + ".boxes.json")


def face_extent(box: Box, landmarks: np.ndarray) -> Box:
    """The smallest box holding the face's box and all its landmarks."""
    low, high = landmarks.min(axis=0), landmarks.max(axis=0)
    return Box(
        min(box.left, low[0]), min(box.top, low[1]), max(box.right, high[0]), max(box.bottom, high[1])
    )


def crop_box(extent: Box, face_side: float, margin: float, frame_size: tuple[int, int]) -> Box:
    """A square around a face `extent` with `margin` face sides of room on each side.

    It shrinks to the frame's short side when the face fits in that, and moves into
    the frame as far as it can without losing the face; what is left outside the
    frame is padded when cropping.
    """
    width, height = frame_size
    side = max((1 + 2 * margin) * face_side, extent.width, extent.height)
    side = min(side, max(min(width, height), extent.width, extent.height))
    centre_x, centre_y = extent.centre
    square = Box.square(centre_x, centre_y, side)
    dx = _shift_inside(square.left, square.right, width, extent.left, extent.right)
    dy = _shift_inside(square.top, square.bottom, height, extent.top, extent.bottom)
    return square.shifted(dx, dy)


def _shift_inside(low: float, high: float, limit: float, face_low: float, face_high: float) -> float:
    """How far to move [low, high) towards [0, limit) while it still holds the face."""
    if low < 0 and high < limit:
        return min(-low, face_low - low, limit - high)
    if high > limit and low > 0:
        return -min(high - limit, low, high - face_high)
    return 0.0


def plan_crop(
    track: FaceTrack,
    frame_size: tuple[int, int],
    size: int = DEFAULT_SIZE,
    margin: float = DEFAULT_MARGIN,
) -> CropPlan:
    """Cut a followed face's frames into segments, each cropped with one still box.

    A segment goes on while the face's extents over it fit in a square of
    (1 + margin) face sizes, so the face keeps at least half a margin from the
    crop's edges, and while its size stays within ZOOM_TOLERANCE.
    """
    if margin < 0 or size < 1:
        raise InputError("the crop margin must be non-negative and the crop size positive")
    extents = [face_extent(Box(*b), lm) for b, lm in zip(track.boxes, track.landmarks)]
    sides = track.boxes[:, 2] - track.boxes[:, 0]
    boxes = np.zeros((len(extents), 4), dtype=np.int64)
    segments = []
    start = 0
    while start < len(extents):
        end, union = _grow_segment(extents, sides, start, margin)
        square = crop_box(union, float(np.median(sides[start:end])), margin, frame_size)
        boxes[start:end] = _integer_square(square)
        segments.append((start, end))
        start = end
    return CropPlan(frame_size, size, boxes, track.detected.copy(), segments, track)


def _grow_segment(extents: list[Box], sides: np.ndarray, start: int, margin: float) -> tuple[int, Box]:
    room = (1 + margin) * sides[start]
    union = extents[start]
    end = start + 1
    while end < len(extents):
        grown = Box(
            min(union.left, extents[end].left),
            min(union.top, extents[end].top),
            max(union.right, extents[end].right),
            max(union.bottom, extents[end].bottom),
        )
        zoom = sides[end] / sides[start]
        if max(grown.width, grown.height) > room or not 1 / ZOOM_TOLERANCE <= zoom <= ZOOM_TOLERANCE:
            break
        union, end = grown, end + 1
    return end, union


def _integer_square(box: Box) -> list[int]:
    side = max(1, round(box.width))
    left, top = round(box.left), round(box.top)
    return [left, top, left + side, top + side]


def crop_frame(frame: np.ndarray, box: Box | Iterable[int], size: int) -> np.ndarray:
    """Cut an integer square box out of a frame, padding by edge replication where it
    reaches outside, and resize it to size x size."""
    left, top, right, bottom = (int(round(v)) for v in (box.as_list() if isinstance(box, Box) else box))
    height, width = frame.shape[:2]
    pad = max(0, -left, -top, right - width, bottom - height)
    if pad:
        frame = cv2.copyMakeBorder(frame, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    patch = frame[top + pad : bottom + pad, left + pad : right + pad]
    interpolation = cv2.INTER_AREA if patch.shape[0] > size else cv2.INTER_CUBIC
    return cv2.resize(patch, (size, size), interpolation=interpolation)


def apply_crop(frames: Iterable[np.ndarray], plan: CropPlan) -> Iterator[np.ndarray]:
    """The planned crops of a stream of frames (the same frames the plan was made from)."""
    for index, frame in enumerate(frames):
        if index >= plan.frame_count:
            raise InputError(f"the video has more frames than its crop plan ({plan.frame_count})")
        yield crop_frame(frame, plan.boxes[index], plan.size)


def plan_video_crop(
    video: str | os.PathLike,
    size: int = DEFAULT_SIZE,
    margin: float = DEFAULT_MARGIN,
    face_index: int = 0,
    detector: str | None = None,
    detect_every: int = 25,
    progress=None,
) -> CropPlan:
    """Follow the faces of a video (one decoding pass) and plan the crop of face `face_index`
    (0: the most persistent). Raises NoFaceError when the video has no face."""
    from fakelab.video import iter_frames

    tracking = track_faces(iter_frames(video), detector, detect_every, progress=progress)
    face = tracking.face(face_index, where=str(video))
    return plan_crop(face, tracking.frame_size, size, margin)


def crop_video(
    video: str | os.PathLike,
    out: str | os.PathLike,
    size: int = DEFAULT_SIZE,
    margin: float = DEFAULT_MARGIN,
    face_index: int = 0,
    detector: str | None = None,
    detect_every: int = 25,
    progress=None,
) -> CropResult:
    """Write the square face crop of a video (same fps, audio kept but in a GIF) and its crop boxes.

    Decodes the video twice: once to follow the face, once to crop. Nothing is
    written when no face is found.
    """
    from fakelab.video import VideoWriter, has_audio, iter_frames, probe_video

    info = probe_video(video)
    plan = plan_video_crop(video, size, margin, face_index, detector, detect_every, progress)
    json_path = boxes_path(out)
    with atomic_output(json_path) as json_tmp:
        keeps_audio = has_audio(video) and Path(out).suffix.lower() != ".gif"
        with VideoWriter(out, info.fps, audio=video if keeps_audio else None) as writer:
            for crop in apply_crop(iter_frames(video), plan):
                writer.write(crop)
            json_tmp.write_text(json.dumps({"source": str(video), "fps": info.fps, **plan.to_json()}))
    return CropResult(Path(out), json_path, plan)


def read_boxes(path: str | os.PathLike) -> CropPlan:
    """The crop plan saved beside a cropped video."""
    try:
        return CropPlan.from_json(json.loads(Path(path).read_text()))
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"{path} is not a readable crop-box file ({error})") from None


def crop_image(
    image: np.ndarray,
    size: int = DEFAULT_SIZE,
    margin: float = DEFAULT_MARGIN,
    face_index: int = 0,
    detector: str | None = None,
    where: str = "the image",
) -> ImageCrop:
    """The square crop of face `face_index` (0: the largest) of an RGB image."""
    faces = find_faces(image, detector)
    if not faces:
        raise NoFaceError(where)
    if not 0 <= face_index < len(faces):
        raise InputError(f"there is no face {face_index} in {where}: {len(faces)} face(s) found")
    landmarks = faces[face_index]
    box = landmark_box(landmarks)
    frame_size = (image.shape[1], image.shape[0])
    square = Box(*_integer_square(crop_box(face_extent(box, landmarks), box.width, margin, frame_size)))
    return ImageCrop(crop_frame(image, square, size), square, landmarks)
