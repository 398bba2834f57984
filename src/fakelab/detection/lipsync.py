"""Lip-sync: does the mouth move with the sound, and at what offset?

A SyncNet-like measure (Chung and Zisserman, "Out of time: automated lip sync in the wild",
ACCV 2016) without a trained network, in the spirit of FaceSync (Slaney and Covell, NIPS
2000), which relates audio and face by canonical correlation. Per video frame, the mouth's
shape (inner-lip height, outer-lip height and mouth width over the face box's side, from
the 68 landmarks) is compared with the audio's log energies in five bands from 150 Hz to
5 kHz. For each offset k in -15..15 frames, the distance is one minus the first canonical
correlation (ridge-regularised) between mouth[t] and audio[t + k]; the offset is the k of
least distance and the confidence, as SyncNet's, the median distance over the offsets
minus the least one. In sync the distance dips at one offset; dubbed speech gives a flatter
curve. As a deepfake cue, what matters is whether the mouth is in sync at about no
offset: `near_zero_confidence` is the median distance minus the least one within
NEAR_ZERO frames of zero. On 3-second clips the estimates are noisy (see docs/detection.md);
whole videos of 7-9 s give stable offsets. A positive offset means the sound comes late: audio at frame t + k matches the
mouth at frame t. (A single mouth-opening series against the energy envelope was tried
first: on the test clips its correlations stayed below 0.3 and its offsets wandered.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fakelab.faces.landmarks import landmark_box

MAX_OFFSET = 15
WINDOW_SECONDS = 3.0
WINDOW_HOP_SECONDS = 1.0
AUDIO_RATE = 16000
# Below this RMS (full scale 1) the audio counts as silent.
SILENCE_RMS = 1e-4
BANDS = 5
LOWEST_HZ, HIGHEST_HZ = 150.0, 5000.0
STFT_SECONDS, STFT_HOP_SECONDS = 0.025, 0.01
CCA_RIDGE = 0.1
# Offsets (frames) that count as in sync for `near_zero_confidence`.
NEAR_ZERO = 3
MIN_OVERLAP = 12
# Inner-lip and outer-lip pairs (upper, lower) of the 68-point layout; mouth corners.
_INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))
_OUTER_LIP_PAIRS = ((50, 58), (51, 57), (52, 56))
_MOUTH_CORNERS = (48, 54)


def mouth_opening(landmarks: np.ndarray) -> float:
    """Inner-lip height (mean of the three upper/lower pairs) over the face box's side."""
    return float(mouth_shape(landmarks)[0])


def mouth_shape(landmarks: np.ndarray) -> np.ndarray:
    """(inner-lip height, outer-lip height, mouth width) over the face box's side."""
    side = max(landmark_box(landmarks).width, 1e-6)
    inner = np.mean([np.linalg.norm(landmarks[a] - landmarks[b]) for a, b in _INNER_LIP_PAIRS])
    outer = np.mean([np.linalg.norm(landmarks[a] - landmarks[b]) for a, b in _OUTER_LIP_PAIRS])
    width = np.linalg.norm(landmarks[_MOUTH_CORNERS[0]] - landmarks[_MOUTH_CORNERS[1]])
    return np.array([inner, outer, width]) / side


def audio_bands(samples: np.ndarray, rate: int, fps: float, frame_count: int) -> np.ndarray:
    """(frame_count, BANDS) log band energies per video frame of mono samples; frame t covers
    the sound from t / fps to (t + 1) / fps. Frames past the end of the audio are NaN."""
    samples = np.asarray(samples, dtype=np.float64)
    window, hop = max(16, round(rate * STFT_SECONDS)), max(1, round(rate * STFT_HOP_SECONDS))
    out = np.full((frame_count, BANDS), np.nan)
    steps = (len(samples) - window) // hop + 1
    if steps < 1:
        return out
    starts = hop * np.arange(steps)
    spectrum = np.abs(np.fft.rfft(samples[starts[:, None] + np.arange(window)] * np.hanning(window), axis=1)) ** 2
    freqs = np.fft.rfftfreq(window, 1 / rate)
    edges = np.geomspace(LOWEST_HZ, min(HIGHEST_HZ, rate / 2), BANDS + 1)
    power = np.stack([spectrum[:, (freqs >= lo) & (freqs < hi)].sum(axis=1) for lo, hi in zip(edges[:-1], edges[1:])], axis=1)
    for frame in range(frame_count):
        first, last = int(frame * rate / fps) // hop, int((frame + 1) * rate / fps) // hop
        if last > steps or last <= first:
            break
        out[frame] = np.log(power[first:last].mean(axis=0) + 1e-10)
    return out


def first_canonical_correlation(x: np.ndarray, y: np.ndarray, ridge: float = CCA_RIDGE) -> float:
    """The largest correlation between a linear combination of x's columns and one of y's
    (rows are observations), each covariance regularised by `ridge` times its mean variance."""
    x, y = x - x.mean(axis=0), y - y.mean(axis=0)
    n = len(x)
    sxx, syy, sxy = x.T @ x / n, y.T @ y / n, x.T @ y / n
    sxx = sxx + ridge * np.trace(sxx) / len(sxx) * np.eye(len(sxx)) + 1e-12 * np.eye(len(sxx))
    syy = syy + ridge * np.trace(syy) / len(syy) * np.eye(len(syy)) + 1e-12 * np.eye(len(syy))
    whiten_x = np.linalg.inv(np.linalg.cholesky(sxx))
    whiten_y = np.linalg.inv(np.linalg.cholesky(syy))
    return float(np.linalg.svd(whiten_x @ sxy @ whiten_y.T, compute_uv=False)[0])


@dataclass(frozen=True)
class SyncEstimate:
    """The offset (frames; positive: the sound is late) and its SyncNet-like confidence."""

    offset: int
    confidence: float
    distances: np.ndarray  # one per offset, -max_offset..max_offset

    @property
    def min_distance(self) -> float:
        return float(np.nanmin(self.distances))

    @property
    def near_zero_confidence(self) -> float:
        """Median distance minus the least one within NEAR_ZERO frames of no offset."""
        middle = len(self.distances) // 2
        near = self.distances[max(0, middle - NEAR_ZERO) : middle + NEAR_ZERO + 1]
        if np.isnan(near).all():
            return float("nan")
        return float(np.nanmedian(self.distances) - np.nanmin(near))

    def to_json(self) -> dict:
        return {
            "offset": self.offset,
            "confidence": self.confidence,
            "near_zero_confidence": self.near_zero_confidence,
            "min_distance": self.min_distance,
        }


def sync_distances(
    mouth: np.ndarray, audio: np.ndarray, start: int = 0, stop: int | None = None, max_offset: int = MAX_OFFSET
) -> np.ndarray:
    """Distance (1 - first canonical correlation) of the mouth shapes of frames [start, stop)
    with the audio bands k frames later, for k = -max_offset..max_offset (NaN where fewer
    than MIN_OVERLAP frames with a face and audio overlap)."""
    mouth = np.asarray(mouth, dtype=np.float64).reshape(len(mouth), -1)
    stop = len(mouth) if stop is None else stop
    distances = np.full(2 * max_offset + 1, np.nan)
    for position, k in enumerate(range(-max_offset, max_offset + 1)):
        lo, hi = max(start, -k), min(stop, len(audio) - k)
        if hi - lo < MIN_OVERLAP:
            continue
        x, y = mouth[lo:hi], audio[lo + k : hi + k]
        keep = ~(np.isnan(x).any(axis=1) | np.isnan(y).any(axis=1))
        if keep.sum() >= MIN_OVERLAP:
            distances[position] = 1.0 - first_canonical_correlation(x[keep], y[keep])
    return distances


def estimate_sync(distances: np.ndarray, max_offset: int = MAX_OFFSET) -> SyncEstimate | None:
    if np.isnan(distances).all():
        return None
    best = int(np.nanargmin(distances))
    confidence = float(np.nanmedian(distances) - distances[best])
    return SyncEstimate(best - max_offset, confidence, distances)


@dataclass
class WindowSync:
    start: int  # first frame
    stop: int  # one past the last frame
    estimate: SyncEstimate | None

    def to_json(self) -> dict:
        return {"start": self.start, "stop": self.stop, **(self.estimate.to_json() if self.estimate else {"offset": None})}


@dataclass
class LipSync:
    """Lip-sync of one video: for the whole of it and per window; `has_audio` False (with
    `reason`) when there is nothing to compare."""

    has_audio: bool
    reason: str | None
    fps: float
    video: SyncEstimate | None = None
    windows: list[WindowSync] = field(default_factory=list)
    audio: np.ndarray | None = None  # (frames, BANDS) log band energies

    @property
    def offset(self) -> int | None:
        return self.video.offset if self.video else None

    @property
    def confidence(self) -> float:
        return self.video.confidence if self.video else float("nan")

    def summary(self) -> str:
        if not self.has_audio:
            return f"lip-sync: not measured ({self.reason})"
        if self.video is None:
            return "lip-sync: not measured (too few frames with a face)"
        return f"lip-sync: offset {self.video.offset:+d} frames, confidence {self.video.confidence:.3f}"

    def to_json(self) -> dict:
        return {
            "has_audio": self.has_audio,
            "reason": self.reason,
            "offset": self.offset,
            "confidence": None if self.video is None else self.video.confidence,
            "near_zero_confidence": None if self.video is None else self.video.near_zero_confidence,
            "windows": [window.to_json() for window in self.windows],
        }


def no_audio(reason: str, fps: float) -> LipSync:
    return LipSync(False, reason, fps)


def lip_sync(
    mouth: np.ndarray, samples: np.ndarray | None, rate: int, fps: float,
    window_seconds: float = WINDOW_SECONDS, hop_seconds: float = WINDOW_HOP_SECONDS, max_offset: int = MAX_OFFSET,
) -> LipSync:
    """Lip-sync of mouth shapes (frames x 3 from `mouth_shape`, NaN rows where there is no
    face; a 1-D series works too) against mono audio samples at `rate` Hz that start with
    the first frame: for the whole video and for windows of `window_seconds` every `hop_seconds`."""
    if samples is None:
        return no_audio("no audio stream", fps)
    samples = np.asarray(samples, dtype=np.float64)
    if len(samples) == 0 or np.sqrt((samples**2).mean()) < SILENCE_RMS:
        return no_audio("the audio is silent", fps)
    mouth = np.asarray(mouth, dtype=np.float64).reshape(len(mouth), -1)
    audio = audio_bands(samples, rate, fps, len(mouth))
    result = LipSync(True, None, fps, audio=audio)
    result.video = estimate_sync(sync_distances(mouth, audio, max_offset=max_offset), max_offset)
    length, hop = max(MIN_OVERLAP, round(window_seconds * fps)), max(1, round(hop_seconds * fps))
    for start in range(0, max(1, len(mouth) - length + 1), hop):
        stop = min(len(mouth), start + length)
        distances = sync_distances(mouth, audio, start, stop, max_offset)
        result.windows.append(WindowSync(start, stop, estimate_sync(distances, max_offset)))
    return result
