"""Follow faces through a video: detect now and then, track in between.

A full-frame detection runs every `detect_every` frames (and on every frame while
no face is followed) to pick up new faces. Each followed face is re-detected in
a small, downscaled window around its last box, which costs a few milliseconds,
and its landmarks are predicted at full resolution. Its box comes from the rigid
landmarks, which jitter far less than the detector's boxes. A face that is not
re-detected keeps its last box and landmarks (a gap); after `max_hold` such
frames its track ends. A face that comes back is recognised by its embedding and
continues its old track.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import numpy as np

from fakelab.errors import InputError, NoFaceError
from fakelab.faces.detect import Box, check_detector, default_detector, detect_faces, window_around
from fakelab.faces.landmarks import LANDMARK_COUNT, face_embedding, landmark_box, settled_landmarks

SAME_PERSON_DISTANCE = 0.6  # dlib's threshold for its 128-d embeddings
SAME_FACE_IOU = 0.3
STEADY_IOU = 0.7
# The re-detection window is this many face boxes wide, and downscaled so that
# the face spans about 1.25 detector windows.
WINDOW_PER_BOX = 2.0
SMALLEST_FACE_IN_WINDOW = 0.8
# Full-frame detections look for faces down to this fraction of the frame's short side.
SMALLEST_FACE_PER_FRAME = 1 / 8


@dataclass
class TrackedFace:
    """One followed face in one frame."""

    track_id: int
    box: Box
    landmarks: np.ndarray  # (68, 2) float64
    detected: bool  # False: not found in this frame, box and landmarks held from before


@dataclass
class _Track:
    track_id: int
    embedding: np.ndarray
    current: TrackedFace | None
    held_frames: int = 0
    history: dict[int, TrackedFace] = field(default_factory=dict)


class FaceTracker:
    """Feed frames in order with `update`; it returns the faces followed in each."""

    def __init__(
        self, detector: str | None = None, detect_every: int = 25, max_hold: int = 25
    ):
        if detect_every < 1 or max_hold < 0:
            raise InputError("detect_every must be at least 1 and max_hold at least 0")
        self.detector = check_detector(detector or default_detector())
        self.detect_every = detect_every
        self.max_hold = max_hold
        self.frame_index = -1
        self.active: list[_Track] = []
        self.ended: list[_Track] = []

    def update(self, frame: np.ndarray) -> list[TrackedFace]:
        self.frame_index += 1
        for track in self.active:
            self._follow(track, frame)
        if self.frame_index % self.detect_every == 0 or not self.active:
            self._find_new_faces(frame)
        for track in list(self.active):
            if track.held_frames > self.max_hold:
                self.active.remove(track)
                self.ended.append(track)
        for track in self.active:
            track.history[self.frame_index] = track.current
        return [track.current for track in self.active]

    def tracks(self) -> list[_Track]:
        return self.ended + self.active

    def _follow(self, track: _Track, frame: np.ndarray) -> None:
        last = track.current.box
        found = self._redetect(frame, last)
        if found is None:
            track.held_frames += 1
            track.current = TrackedFace(track.track_id, last, track.current.landmarks, False)
            return
        # The last box, while the detector agrees with it: the detector's boxes come in
        # coarse steps of its image pyramid, and each step would shift the landmarks.
        landmarks = settled_landmarks(frame, last if last.iou(found) > STEADY_IOU else found)
        track.held_frames = 0
        track.current = TrackedFace(track.track_id, landmark_box(landmarks), landmarks, True)

    def _redetect(self, frame: np.ndarray, last: Box) -> Box | None:
        """The detector's box of the face near `last`, searched for in a small window."""
        window = window_around(last, (frame.shape[1], frame.shape[0]), WINDOW_PER_BOX)
        if window is None:
            return None
        left, top, right, bottom = window
        crop = frame[top:bottom, left:right]
        candidates = [
            found.box.shifted(left, top)
            for found in detect_faces(crop, self.detector, SMALLEST_FACE_IN_WINDOW * last.width)
        ]
        best = max(candidates, key=last.iou, default=None)
        return best if best is not None and last.iou(best) > SAME_FACE_IOU else None

    def _find_new_faces(self, frame: np.ndarray) -> None:
        smallest = SMALLEST_FACE_PER_FRAME * min(frame.shape[:2])
        for found in detect_faces(frame, self.detector, smallest):
            if any(track.current.box.iou(found.box) > SAME_FACE_IOU for track in self.active):
                continue
            landmarks = settled_landmarks(frame, found.box)
            embedding = face_embedding(frame, landmarks)
            track = self._lost_track_of(embedding)
            if track is None:
                track = _Track(len(self.tracks()), embedding, current=None)
                self.active.append(track)
            track.current = TrackedFace(track.track_id, landmark_box(landmarks), landmarks, True)
            track.held_frames = 0

    def _lost_track_of(self, embedding: np.ndarray) -> _Track | None:
        """The ended or held track of the same person, if any, made active again."""
        lost = self.ended + [track for track in self.active if track.held_frames > 0]
        distance = {id(track): np.linalg.norm(track.embedding - embedding) for track in lost}
        nearest = min(lost, key=lambda track: distance[id(track)], default=None)
        if nearest is None or distance[id(nearest)] >= SAME_PERSON_DISTANCE:
            return None
        if nearest in self.ended:
            self.ended.remove(nearest)
            self.active.append(nearest)
        return nearest


@dataclass
class FaceTrack:
    """One face through a whole video: per-frame boxes and landmarks, NaN where it is absent."""

    track_id: int
    boxes: np.ndarray  # (T, 4) float64: left, top, right, bottom
    landmarks: np.ndarray  # (T, 68, 2) float64
    detected: np.ndarray  # (T,) bool: found in that frame (not held, not absent)

    @property
    def frame_count(self) -> int:
        return len(self.detected)

    @property
    def found_fraction(self) -> float:
        return float(self.detected.mean()) if self.frame_count else 0.0

    def gaps(self) -> list[tuple[int, int]]:
        """Runs of frames [start, end) in which the face was not found."""
        edges = np.diff(np.concatenate([[1], self.detected.astype(np.int8), [1]]))
        return list(zip(np.flatnonzero(edges == -1).tolist(), np.flatnonzero(edges == 1).tolist()))

    def held(self) -> FaceTrack:
        """The track with each frame where it is absent given the last box and landmarks
        before it (the first ones after it at the start)."""
        present = np.flatnonzero(~np.isnan(self.boxes[:, 0]))
        last_present = np.maximum.accumulate(
            np.where(~np.isnan(self.boxes[:, 0]), np.arange(self.frame_count), -1)
        )
        source = np.where(last_present >= 0, last_present, present[0])
        return FaceTrack(self.track_id, self.boxes[source], self.landmarks[source], self.detected)


@dataclass
class Tracking:
    """All the faces followed through a video, most persistent first."""

    frame_count: int
    frame_size: tuple[int, int]  # (width, height)
    tracks: list[FaceTrack]

    def face(self, index: int = 0, where: str = "the video") -> FaceTrack:
        """The `index`-th face (0: the most persistent), held over its gaps."""
        if not self.tracks:
            raise NoFaceError(where)
        if not 0 <= index < len(self.tracks):
            raise InputError(
                f"there is no face {index} in {where}: {len(self.tracks)} face(s) found"
            )
        return self.tracks[index].held()


def track_faces(
    frames: Iterable[np.ndarray],
    detector: str | None = None,
    detect_every: int = 25,
    max_hold: int = 25,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> Tracking:
    """Follow every face through a stream of frames (one pass, constant memory per frame)."""
    tracker = FaceTracker(detector, detect_every, max_hold)
    frame_count, frame_size = 0, (0, 0)
    for frame in progress(frames) if progress else frames:
        tracker.update(frame)
        frame_count, frame_size = frame_count + 1, (frame.shape[1], frame.shape[0])
    tracks = [_as_face_track(track, frame_count) for track in tracker.tracks()]
    tracks.sort(key=lambda t: (t.detected.sum(), np.nanmean(t.boxes[:, 2] - t.boxes[:, 0])), reverse=True)
    return Tracking(frame_count, frame_size, tracks)


def _as_face_track(track: _Track, frame_count: int) -> FaceTrack:
    boxes = np.full((frame_count, 4), np.nan)
    landmarks = np.full((frame_count, LANDMARK_COUNT, 2), np.nan)
    detected = np.zeros(frame_count, dtype=bool)
    for index, face in track.history.items():
        boxes[index] = face.box.as_list()
        landmarks[index] = face.landmarks
        detected[index] = face.detected
    return FaceTrack(track.track_id, boxes, landmarks, detected)
