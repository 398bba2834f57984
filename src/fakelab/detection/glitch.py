"""Visible failures of generated faces, frame by frame: cheap enough to run beside a live avatar.

Real-time avatars and animated portraits fail in ways a face detector notices: the face
melts or turns too far and dlib's HOG detector no longer finds it where it was a frame
ago, or finds it with a low score, and the 68 landmarks jump in a way the head's motion
does not explain. `GlitchDetector` follows one face through a stream and scores each
frame for such failures:

- **face_found / detector_confidence**: the HOG detector runs only in a small downscaled
  window around where the face was (a few milliseconds), with its threshold lowered so
  that weak faces still come back with their (negative) score. `face_found` is dlib's own
  decision (score >= 0); `detector_confidence` is the SVM score of the candidate that
  overlaps the expected face, NaN when nothing does.
- **landmark_jump**: the landmarks of the last three frames are aligned on their rigid
  points (brows, nose, eyes) with a similarity transform, which removes the head's
  translation, rotation and scale; what remains is the face's own deformation, and its
  second difference (acceleration), as an RMS over the 68 points in face-box units, is
  the jump. Speech moves the mouth smoothly at video rates; broken landmarks do not.

Each term becomes a probability with a logistic curve (constants below, set on the real
test clips so that their frames score low), and `score = 1 - (1 - p_face)(1 - p_jump)`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from fakelab.errors import InputError
from fakelab.faces import models
from fakelab.faces.detect import DETECTOR_WINDOW, Box, detect_faces, resize_by, window_around
from fakelab.faces.landmarks import RIGID, face_landmarks, landmark_box, settled_landmarks

DEFAULT_THRESHOLD = 0.5
# The HOG detector is asked for candidates down to this score, so weak faces keep a score.
WEAKEST_SCORE = -1.0
# Confidence below which the face term rises: p_face = sigmoid((CONFIDENT - score) / CONFIDENCE_SCALE).
CONFIDENT = 0.3
CONFIDENCE_SCALE = 0.25
# Jump (face-box units) at which the jump term is one half, and its spread.
JUMP_MIDPOINT = 0.07
JUMP_SCALE = 0.012
# Window searched around the expected face, in face boxes, and the face's size in it, in
# detector windows (as the face tracker does).
WINDOW_PER_BOX = 2.0
FACE_IN_WINDOW = 1.25
SAME_FACE_IOU = 0.3
STEADY_IOU = 0.7
# After this many frames without the face, the whole frame is searched again. While no
# face is followed, the whole frame (about 60 ms) is searched in each of the first
# MAX_MISSES frames, then only every SEARCH_EVERY frames, to keep a faceless stream cheap.
MAX_MISSES = 12
SEARCH_EVERY = 5
SMALLEST_FACE_PER_FRAME = 1 / 8


@dataclass(frozen=True)
class FrameGlitch:
    """What the glitch detector saw in one frame."""

    index: int  # frame number within the stream
    face_found: bool  # the face detector found the face where the tracker expects it
    detector_confidence: float  # the detector's score for that face (nan when none)
    landmark_jump: float  # landmark acceleration not explained by head motion, in face-size units
    score: float  # 0..1, higher = more likely a visible failure in this frame
    flagged: bool  # score above the detector's threshold
    reasons: tuple[str, ...]  # e.g. ("face lost", "landmark jump")

    def to_json(self) -> dict:
        return {
            "index": self.index,
            "face_found": self.face_found,
            "detector_confidence": None if math.isnan(self.detector_confidence) else self.detector_confidence,
            "landmark_jump": None if math.isnan(self.landmark_jump) else self.landmark_jump,
            "score": self.score,
            "flagged": self.flagged,
            "reasons": list(self.reasons),
        }


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-60.0, min(60.0, x))))


def face_failure_probability(confidence: float) -> float:
    """The face term of the score: near 1 when the detector loses the face (NaN) or
    scores it below dlib's threshold, near 0 for a confidently found face."""
    if math.isnan(confidence):
        return 1.0
    return _sigmoid((CONFIDENT - confidence) / CONFIDENCE_SCALE)


def jump_probability(jump: float) -> float:
    """The landmark term of the score (0 for NaN: no history yet)."""
    if math.isnan(jump):
        return 0.0
    return _sigmoid((jump - JUMP_MIDPOINT) / JUMP_SCALE)


def similarity_transform(source: np.ndarray, target: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(scale, rotation 2x2, translation) mapping `source` points onto `target` points in the
    least-squares sense (Umeyama 1991, no reflection)."""
    source_mean, target_mean = source.mean(axis=0), target.mean(axis=0)
    a, b = source - source_mean, target - target_mean
    u, singular, vt = np.linalg.svd(b.T @ a)
    sign = np.sign(np.linalg.det(u @ vt)) or 1.0
    d = np.diag([1.0, sign])
    rotation = u @ d @ vt
    variance = (a**2).sum()
    scale = float((singular * np.diag(d)).sum() / variance) if variance > 0 else 1.0
    translation = target_mean - scale * rotation @ source_mean
    return scale, rotation, translation


def align_to(landmarks: np.ndarray, reference: np.ndarray, points: slice = RIGID) -> np.ndarray:
    """`landmarks` moved by the similarity transform that best puts their `points` on the
    reference's: what is left differs from the reference only by the face's deformation."""
    scale, rotation, translation = similarity_transform(landmarks[points], reference[points])
    return scale * landmarks @ rotation.T + translation


def face_size(landmarks: np.ndarray) -> float:
    """The side of the detector-like box of these landmarks (pixels)."""
    return landmark_box(landmarks).width


def landmark_jump(previous2: np.ndarray, previous: np.ndarray, current: np.ndarray) -> float:
    """RMS over the 68 points of the landmarks' acceleration once head motion is removed,
    in units of the face box's side.

    The frames before and after are aligned on the middle one's rigid points, so a head
    that moves, turns in the image plane or comes closer adds nothing; a mouth opening
    smoothly adds little; landmarks that jump for a frame add a lot.
    """
    before = align_to(previous2, previous)
    after = align_to(current, previous)
    acceleration = after - 2 * previous + before
    return float(np.sqrt((acceleration**2).sum(axis=1).mean()) / max(face_size(previous), 1e-6))


def _check_frame(frame: np.ndarray) -> None:
    if not isinstance(frame, np.ndarray) or frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        shape = getattr(frame, "shape", None)
        raise InputError(f"the glitch detector takes HxWx3 uint8 RGB frames, got {getattr(frame, 'dtype', type(frame).__name__)} {shape}")


class GlitchDetector:
    """Stateful, one per stream; cheap enough to run per frame next to a live avatar.

    `check(frame)` follows the largest face: a full-frame search finds it, then each frame
    searches only a window around its last position (about 5 ms on a 512-pixel frame).
    """

    def __init__(self, threshold: float | None = None):
        self.threshold = DEFAULT_THRESHOLD if threshold is None else float(threshold)
        if not 0.0 <= self.threshold <= 1.0:
            raise InputError(f"the glitch threshold is a probability, between 0 and 1; got {threshold}")
        self.reset()

    def reset(self) -> None:
        """Forget the face followed so far (a new stream, or a cut)."""
        self._index = -1
        self._expected: Box | None = None
        self._history: list[np.ndarray] = []  # landmarks of the last frames, oldest first
        self._misses = 0
        self._lost_for = 0

    @property
    def landmarks(self) -> np.ndarray | None:
        """The landmarks (68x2, frame pixels) of the face in the last frame checked, if any."""
        return self._history[-1] if self._history else None

    def check(self, frame: np.ndarray) -> FrameGlitch:
        """Score one HxWx3 uint8 RGB frame; frames must come in stream order."""
        _check_frame(frame)
        self._index += 1
        if self._expected is None:
            return self._search(frame)
        confidence, box = self._redetect(frame, self._expected)
        found = not math.isnan(confidence) and confidence >= 0.0
        if box is not None:
            start = self._expected if self._expected.iou(box) > STEADY_IOU else box
            landmarks = settled_landmarks(frame, start)
        else:
            # Nothing there: the predictor still places landmarks in the expected box, and
            # where they land says how broken the face is.
            landmarks = face_landmarks(frame, self._expected)
        jump = self._jump(landmarks)
        if found:
            self._misses = 0
            self._expected = landmark_box(landmarks)
        else:
            self._misses += 1
            if self._misses > MAX_MISSES:
                self._expected, self._history = None, []
        return self._verdict(found, confidence, jump)

    def _search(self, frame: np.ndarray) -> FrameGlitch:
        """The whole frame searched for a face to follow (not on every frame while none is found)."""
        self._lost_for += 1
        found = []
        if self._lost_for <= MAX_MISSES or self._lost_for % SEARCH_EVERY == 0:
            found = detect_faces(frame, "hog", SMALLEST_FACE_PER_FRAME * min(frame.shape[:2]))
        if not found:
            return self._verdict(False, math.nan, math.nan, extra=("no face",))
        self._lost_for = 0
        landmarks = settled_landmarks(frame, found[0].box)
        self._history = [landmarks]
        self._expected = landmark_box(landmarks)
        self._misses = 0
        return self._verdict(True, found[0].score, math.nan)

    def _redetect(self, frame: np.ndarray, expected: Box) -> tuple[float, Box | None]:
        """(score, box) of the best HOG candidate overlapping `expected` in a window around it;
        (nan, None) when there is none."""
        window = window_around(expected, (frame.shape[1], frame.shape[0]), WINDOW_PER_BOX)
        if window is None:
            return math.nan, None
        left, top, right, bottom = window
        scale = FACE_IN_WINDOW * DETECTOR_WINDOW / max(expected.width, 1.0)
        crop = resize_by(np.ascontiguousarray(frame[top:bottom, left:right]), scale)
        rects, scores, _ = models.hog_detector().run(crop, 0, WEAKEST_SCORE)
        best_score, best_box = math.nan, None
        for rect, score in zip(rects, scores):
            box = Box(rect.left(), rect.top(), rect.right() + 1, rect.bottom() + 1).scaled(1 / scale).shifted(left, top)
            if expected.iou(box) > SAME_FACE_IOU and (best_box is None or score > best_score):
                best_score, best_box = float(score), box
        return best_score, best_box

    def _jump(self, landmarks: np.ndarray) -> float:
        self._history = (self._history + [landmarks])[-3:]
        if len(self._history) < 3:
            return math.nan
        return landmark_jump(*self._history)

    def _verdict(self, found: bool, confidence: float, jump: float, extra: tuple[str, ...] = ()) -> FrameGlitch:
        p_face = face_failure_probability(confidence)
        p_jump = jump_probability(jump)
        score = 1.0 - (1.0 - p_face) * (1.0 - p_jump)
        reasons = list(extra)
        if not extra and not found:
            reasons.append("face lost")
        elif found and p_face >= 0.5:
            reasons.append("low detector confidence")
        if p_jump >= 0.5:
            reasons.append("landmark jump")
        return FrameGlitch(
            index=self._index,
            face_found=found,
            detector_confidence=confidence,
            landmark_jump=jump,
            score=score,
            flagged=score > self.threshold,
            reasons=tuple(reasons),
        )


def find_glitches(frames: Iterable[np.ndarray], threshold: float | None = None) -> list[FrameGlitch]:
    """Every frame of a stream checked by one `GlitchDetector`."""
    detector = GlitchDetector(threshold)
    return [detector.check(frame) for frame in frames]
