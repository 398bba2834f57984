"""What is drawn over the live output: fps/latency, the driving face, failure flags."""

from __future__ import annotations

import cv2
import numpy as np

WHITE, RED, GREEN = (255, 255, 255), (230, 40, 40), (60, 220, 90)
INSET = 0.3  # the driving face's inset, as a fraction of the output's width
FLAG_BORDER = 3


def compose(
    image: np.ndarray,
    mirror: bool = False,
    driving: tuple[np.ndarray, np.ndarray | None] | None = None,
    stats: str | None = None,
    glitch=None,
) -> np.ndarray:
    """The output frame as shown: mirrored if asked, with the overlays (text is never mirrored)."""
    frame = np.ascontiguousarray(image[:, ::-1] if mirror else image)
    if driving is None and stats is None and (glitch is None or not glitch.flagged):
        return frame
    frame = frame.copy()
    scale = frame.shape[1] / 256
    if driving is not None:
        _draw_driving(frame, *driving, mirror=mirror)
    if stats:
        _text(frame, stats, (int(6 * scale), int(16 * scale)), WHITE, scale)
    if glitch is not None and glitch.flagged:
        cv2.rectangle(frame, (0, 0), (frame.shape[1] - 1, frame.shape[0] - 1), RED, max(1, round(FLAG_BORDER * scale)))
        reasons = ", ".join(glitch.reasons) or "glitch"
        _text(frame, f"FLAG {glitch.score:.2f}: {reasons}", (int(6 * scale), frame.shape[0] - int(8 * scale)), RED, scale)
    return frame


def _draw_driving(frame: np.ndarray, crop: np.ndarray, landmarks: np.ndarray | None, mirror: bool) -> None:
    side = max(16, round(INSET * frame.shape[1]))
    inset = cv2.resize(crop, (side, side), interpolation=cv2.INTER_AREA)
    if landmarks is not None:
        for x, y in np.round(landmarks * side / crop.shape[1]).astype(int):
            cv2.circle(inset, (int(x), int(y)), 1, GREEN, -1)
    if mirror:
        inset = inset[:, ::-1]
    frame[-side:, -side:] = inset
    cv2.rectangle(frame, (frame.shape[1] - side, frame.shape[0] - side), (frame.shape[1] - 1, frame.shape[0] - 1), WHITE, 1)


def _text(frame: np.ndarray, text: str, origin: tuple[int, int], colour, scale: float) -> None:
    # A dark outline keeps the text readable on any background.
    cv2.putText(frame, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.42 * scale, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(frame, text, origin, cv2.FONT_HERSHEY_SIMPLEX, 0.42 * scale, colour, 1, cv2.LINE_AA)
