"""Visible animation failures in a stream of frames, for the stress sweeps.

The glitch detector of `fakelab.detection.glitch` is used when this build has it. Until
then (and as the documented fallback) a frame is flagged when the face tracker loses the
face, or when the landmarks jump: their acceleration, less the acceleration of their
centroid (head motion), is above JUMP_THRESHOLD face sides.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

JUMP_THRESHOLD = 0.04


def glitch_source() -> str:
    try:
        from fakelab.detection import glitch  # noqa: F401
    except ImportError:
        return "fallback: face lost or landmark jump (fakelab.stress.glitch)"
    return "fakelab.detection.glitch"


def glitch_flags(frames: Sequence[np.ndarray]) -> list[bool]:
    """One flag per frame: True where the frame shows a visible failure."""
    try:
        from fakelab.detection.glitch import find_glitches
    except ImportError:
        return _fallback_flags(frames)
    return [bool(glitch.flagged) for glitch in find_glitches(frames)]


def _fallback_flags(frames: Sequence[np.ndarray]) -> list[bool]:
    from fakelab.faces.tracking import FaceTracker

    tracker = FaceTracker(detect_every=8, max_hold=2)
    flags, history = [], []
    for frame in frames:
        faces = tracker.update(frame)
        face = max(faces, key=lambda f: f.box.area) if faces else None
        if face is None or not face.detected:
            flags.append(True)
            history.clear()
            continue
        history = (history + [face.landmarks])[-3:]
        flags.append(len(history) == 3 and landmark_jump(*history) > JUMP_THRESHOLD)
    return flags


def landmark_jump(before: np.ndarray, previous: np.ndarray, current: np.ndarray) -> float:
    """Median landmark acceleration not explained by the centroid's, in face sides."""
    acceleration = current - 2 * previous + before
    acceleration = acceleration - acceleration.mean(axis=0)
    side = float(np.ptp(current, axis=0).max()) or 1.0
    return float(np.median(np.linalg.norm(acceleration, axis=1)) / side)
