"""Forensic cues: a deepfake verdict without a trained CNN.

The face is followed through consecutive frames (the first `seconds` of a video) by the
glitch detector (`fakelab.detection.glitch`), which also gives the face detector's
confidence and the landmark jumps. Per frame, on a 192-pixel square around the face:

- `eye_aspect_ratio`: Soukupová and Čech's EAR, whose dips are blinks (Li, Chang and Lyu,
  "In Ictu Oculi", 2018: early deepfakes hardly blink; their EAR baseline has AUC 0.79);
- `mouth_interior`: brightness of the brightest mouth pixels (teeth) and their texture,
  both relative to the face's skin, when the mouth is open: generated mouths are often
  dark and blurred, or have "excessively white" teeth without detail;
- `seam_energy`: image gradients in a band around the face outline against those around
  it: a paste-back leaves a seam or an over-smooth band;
- `background_motion`: frame-to-frame change outside the face against inside it: an
  animated photograph has a background that does not change at all;
- `pose_inconsistency` (`fakelab.detection.headpose`, Yang, Li and Lyu 2019);
- the glitch detector's `detector_confidence`, `face_found` and `landmark_jump`;
- the mouth's shape for lip-sync against the audio (`fakelab.detection.lipsync`).

Video-level cues summarise these (medians, a blink rate, lip-sync offset and confidence)
and a small logistic model combines them: its coefficients ship in `cues_model.json`,
fitted by `bench/fit_cues_model.py` on clips made here (see docs/detection.md). A cue
that cannot be measured (no audio, mouth never open) counts as the fitting data's mean,
i.e. it pushes neither way.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Callable, Iterable, Sequence

import cv2
import numpy as np

from fakelab.detection.glitch import FrameGlitch, GlitchDetector
from fakelab.detection.headpose import pose_inconsistency
from fakelab.detection.lipsync import AUDIO_RATE, LipSync, lip_sync, mouth_opening, mouth_shape, no_audio
from fakelab.errors import ConfigError, InputError, NoFaceError
from fakelab.faces.landmarks import JAW, LEFT_EYE, RIGHT_EYE, landmark_box
from fakelab.faces.paste import face_outline

PathLike = str | os.PathLike
DEFAULT_SECONDS = 10.0
DEFAULT_FPS = 25.0
DEFAULT_THRESHOLD = 0.5
REGION_SIZE = 192
# The region analysed is this many face-box sides wide, centred on the face.
REGION_PER_BOX = 2.0
# A mouth whose inner lips are parted by less than this (face-box sides) counts as closed.
OPEN_MOUTH = 0.025
# A blink: the eye aspect ratio below this fraction of the clip's median, for 1+ frames.
BLINK_FRACTION = 0.7
SEAM_BAND = 0.06  # face-box sides each side of the outline
MODEL_FILE = "cues_model.json"

# The video-level cues, in the order of the model's coefficients.
CUE_NAMES = (
    "face_lost",
    "detector_confidence",
    "landmark_jitter",
    "pose_inconsistency",
    "blink_rate",
    "ear_variation",
    "teeth_brightness",
    "mouth_texture",
    "seam_energy",
    "background_motion",
    "lip_sync_confidence",
    "lip_sync_offset",
)
CUE_MEANINGS = {
    "face_lost": "fraction of frames where the face detector lost the followed face",
    "detector_confidence": "median HOG detector score of the face (-1 where lost)",
    "landmark_jitter": "median landmark acceleration beyond head motion (face-box units)",
    "pose_inconsistency": "median cosine distance between the head poses of all and of the central landmarks",
    "blink_rate": "blinks per minute",
    "ear_variation": "standard deviation of the eye aspect ratio over its median",
    "teeth_brightness": "brightest mouth pixels over the skin's median lightness (open mouth)",
    "mouth_texture": "mouth-interior detail (mean |Laplacian|) over the skin's",
    "seam_energy": "gradient energy in a band around the face outline over that around it",
    "background_motion": "frame-to-frame change outside the face over that inside it",
    "lip_sync_confidence": "SyncNet-like confidence of mouth against audio at offsets within 3 frames of zero",
    "lip_sync_offset": "absolute lip-sync offset in frames",
}
# Per-frame series in the timeline.
TIMELINE_NAMES = (
    "glitch_score",
    "detector_confidence",
    "landmark_jump",
    "pose_inconsistency",
    "eye_aspect_ratio",
    "mouth_opening",
    "teeth_brightness",
    "mouth_texture",
    "seam_energy",
    "background_motion",
)


# ---------------------------------------------------------------- per-frame cue functions


def eye_aspect_ratio(landmarks: np.ndarray) -> float:
    """Mean over both eyes of (|p2 - p6| + |p3 - p5|) / (2 |p1 - p4|) (Soukupová and Čech
    2016): about 0.3 for an open eye, near 0 for a closed one."""
    ratios = []
    for eye in (RIGHT_EYE, LEFT_EYE):
        p = landmarks[eye]
        width = np.linalg.norm(p[0] - p[3])
        height = np.linalg.norm(p[1] - p[5]) + np.linalg.norm(p[2] - p[4])
        ratios.append(height / (2 * width) if width > 0 else np.nan)
    return float(np.mean(ratios))


def count_blinks(ear: np.ndarray, fraction: float = BLINK_FRACTION) -> int:
    """Runs of frames whose eye aspect ratio is below `fraction` of the series' median (NaN: no face)."""
    ear = np.asarray(ear, dtype=np.float64)
    if np.isnan(ear).all():
        return 0
    closed = np.nan_to_num(ear, nan=np.inf) < fraction * np.nanmedian(ear)
    return int(np.sum(np.diff(closed.astype(np.int8), prepend=0) == 1))


def _polygon_mask(shape: tuple[int, int], points: np.ndarray, hull: bool = False) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.uint8)
    points = np.round(points).astype(np.int32)
    if hull:
        cv2.fillConvexPoly(mask, cv2.convexHull(points), 1)
    else:
        cv2.fillPoly(mask, [points], 1)
    return mask


def skin_mask(shape: tuple[int, int], landmarks: np.ndarray) -> np.ndarray:
    """Cheeks and nose: inside the jaw line and below the eyes, without the mouth (bool)."""
    cheeks = np.concatenate([landmarks[[1, 2, 3, 4]], landmarks[[48]], landmarks[[31, 35]], landmarks[[54]], landmarks[[12, 13, 14, 15]]])
    mask = _polygon_mask(shape, cheeks, hull=True)
    mask[_polygon_mask(shape, landmarks[48:60], hull=True) > 0] = 0
    return mask > 0


def mouth_interior(lightness: np.ndarray, landmarks: np.ndarray) -> tuple[float, float]:
    """(teeth brightness, mouth texture) of an open mouth, NaN when the mouth is closed.

    `lightness` is a float image (e.g. Lab L); `landmarks` in its pixels. Brightness: the
    95th percentile of the mouth interior (inside the inner lips) over the median of the
    skin; texture: the mean |Laplacian| inside the mouth over that of the skin.
    """
    if mouth_opening(landmarks) < OPEN_MOUTH:
        return math.nan, math.nan
    mouth = _polygon_mask(lightness.shape, landmarks[60:68]) > 0
    skin = skin_mask(lightness.shape, landmarks)
    if mouth.sum() < 6 or skin.sum() < 20:
        return math.nan, math.nan
    laplacian = np.abs(cv2.Laplacian(lightness, cv2.CV_32F))
    brightness = float(np.percentile(lightness[mouth], 95) / max(np.median(lightness[skin]), 1e-3))
    texture = float(laplacian[mouth].mean() / max(laplacian[skin].mean(), 1e-3))
    return brightness, texture


def _outline_mask(shape: tuple[int, int], landmarks: np.ndarray) -> np.ndarray:
    return _polygon_mask(shape, face_outline(landmarks), hull=True)


def seam_energy(grey: np.ndarray, landmarks: np.ndarray, band: float = SEAM_BAND) -> float:
    """Mean gradient magnitude in a band of `band` face-box sides each side of the face
    outline (jaw, brows, forehead), over the mean in the next bands out and in."""
    side = landmark_box(landmarks).width
    radius = max(1, round(band * side))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    face = _outline_mask(grey.shape, landmarks)
    grown, shrunk = cv2.dilate(face, kernel), cv2.erode(face, kernel)
    seam = (grown > 0) & (shrunk == 0)
    around = ((cv2.dilate(grown, kernel) > 0) & (grown == 0)) | ((shrunk > 0) & (cv2.erode(shrunk, kernel) == 0))
    if seam.sum() < 10 or around.sum() < 10:
        return math.nan
    gx, gy = cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1)
    magnitude = np.sqrt(gx * gx + gy * gy)
    return float(magnitude[seam].mean() / max(magnitude[around].mean(), 1e-3))


def background_motion(previous: np.ndarray, grey: np.ndarray, landmarks: np.ndarray) -> float:
    """Mean |change| since the previous frame outside the (grown) face outline over that
    inside it; both greyscale images of the same region."""
    side = landmark_box(landmarks).width
    radius = max(1, round(SEAM_BAND * side))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    face = _outline_mask(grey.shape, landmarks)
    outside = cv2.dilate(face, kernel) == 0
    inside = cv2.erode(face, kernel) > 0
    if outside.sum() < 20 or inside.sum() < 20:
        return math.nan
    change = np.abs(grey.astype(np.float32) - previous.astype(np.float32))
    return float(change[outside].mean() / max(change[inside].mean(), 1e-3))


# ---------------------------------------------------------------- following a face through frames


@dataclass
class FaceFrames:
    """Per-frame measurements of the face followed through consecutive frames."""

    fps: float
    glitches: list[FrameGlitch] = field(default_factory=list)
    landmarks: list[np.ndarray | None] = field(default_factory=list)  # frame pixels
    mouth: list[np.ndarray] = field(default_factory=list)  # mouth_shape, NaN without a face
    series: dict[str, list[float]] = field(default_factory=lambda: {name: [] for name in TIMELINE_NAMES})

    def __len__(self) -> int:
        return len(self.glitches)

    def array(self, name: str) -> np.ndarray:
        return np.asarray(self.series[name], dtype=np.float64)


def _region(frame: np.ndarray, landmarks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(REGION_SIZE square of the frame around the face, landmarks in its pixels)."""
    box = landmark_box(landmarks)
    side = REGION_PER_BOX * box.width
    left, top = box.centre[0] - side / 2, box.centre[1] - side / 2
    scale = REGION_SIZE / side
    matrix = np.array([[scale, 0, -left * scale], [0, scale, -top * scale]], dtype=np.float64)
    region = cv2.warpAffine(frame, matrix, (REGION_SIZE, REGION_SIZE), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    return region, (landmarks - (left, top)) * scale


def follow_face(
    frames: Iterable[np.ndarray], fps: float, progress: Callable[[Iterable], Iterable] | None = None
) -> FaceFrames:
    """Measure every per-frame cue on a stream of consecutive RGB frames."""
    detector = GlitchDetector()
    result = FaceFrames(fps)
    previous: tuple[np.ndarray, np.ndarray] | None = None  # (frame, its region box landmarks)
    for frame in progress(frames) if progress else frames:
        glitch = detector.check(frame)
        landmarks = detector.landmarks if glitch.face_found else None
        values = dict.fromkeys(TIMELINE_NAMES, math.nan)
        values["glitch_score"] = glitch.score
        values["detector_confidence"] = glitch.detector_confidence
        values["landmark_jump"] = glitch.landmark_jump
        mouth = np.full(3, np.nan)
        if landmarks is not None:
            region, local = _region(frame, landmarks)
            lab = cv2.cvtColor(region.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)
            lightness = lab[..., 0]
            grey = cv2.cvtColor(region, cv2.COLOR_RGB2GRAY)
            values["pose_inconsistency"] = pose_inconsistency(landmarks, (frame.shape[1], frame.shape[0]))
            values["eye_aspect_ratio"] = eye_aspect_ratio(landmarks)
            values["mouth_opening"] = mouth_opening(landmarks)
            values["teeth_brightness"], values["mouth_texture"] = mouth_interior(lightness, local)
            values["seam_energy"] = seam_energy(grey, local)
            if previous is not None:
                # The previous frame cut to this frame's region, so that only change is compared.
                before, _ = _region(previous[0], landmarks)
                values["background_motion"] = background_motion(cv2.cvtColor(before, cv2.COLOR_RGB2GRAY), grey, local)
            mouth = mouth_shape(landmarks)
            previous = (frame, landmarks)
        else:
            previous = None
        result.glitches.append(glitch)
        result.landmarks.append(landmarks)
        result.mouth.append(mouth)
        for name, value in values.items():
            result.series[name].append(float(value))
    return result


def _median(values: np.ndarray) -> float:
    values = values[~np.isnan(values)]
    return float(np.median(values)) if len(values) else math.nan


def video_cues(faces: FaceFrames, sync: LipSync) -> dict[str, float]:
    """The video-level cues (CUE_NAMES) of a followed face and its lip-sync."""
    found = np.array([g.face_found for g in faces.glitches])
    confidence = np.where(np.isnan(faces.array("detector_confidence")), -1.0, faces.array("detector_confidence"))
    ear = faces.array("eye_aspect_ratio")
    minutes = len(faces) / faces.fps / 60 if faces.fps > 0 else math.nan
    ear_median = _median(ear)
    has_sync = sync.has_audio and sync.video is not None
    return {
        "face_lost": float(1.0 - found.mean()) if len(found) else math.nan,
        "detector_confidence": float(np.median(confidence)) if len(confidence) else math.nan,
        "landmark_jitter": _median(faces.array("landmark_jump")),
        "pose_inconsistency": _median(faces.array("pose_inconsistency")),
        "blink_rate": count_blinks(ear) / minutes if minutes and minutes > 0 else math.nan,
        "ear_variation": float(np.nanstd(ear) / ear_median) if ear_median and not math.isnan(ear_median) else math.nan,
        "teeth_brightness": _median(faces.array("teeth_brightness")),
        "mouth_texture": _median(faces.array("mouth_texture")),
        "seam_energy": _median(faces.array("seam_energy")),
        "background_motion": _median(faces.array("background_motion")),
        "lip_sync_confidence": sync.video.near_zero_confidence if has_sync else math.nan,
        "lip_sync_offset": float(abs(sync.video.offset)) if has_sync else math.nan,
    }


# ---------------------------------------------------------------- the logistic model


@dataclass(frozen=True)
class CueModel:
    """logit = bias + sum(weight * (cue - mean) / std); a missing cue counts as its mean."""

    names: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    weights: np.ndarray
    bias: float
    description: str = ""

    @classmethod
    def from_json(cls, document: dict) -> CueModel:
        try:
            names = tuple(document["features"])
            arrays = [np.asarray(document[key], dtype=np.float64) for key in ("mean", "std", "weights")]
            bias = float(document["bias"])
        except (KeyError, TypeError, ValueError) as error:
            raise ConfigError(f"the cue model is malformed: {error}") from None
        if any(len(array) != len(names) for array in arrays):
            raise ConfigError("the cue model's mean, std and weights must have one value per feature")
        unknown = set(names) - set(CUE_NAMES)
        if unknown:
            raise ConfigError(f"the cue model uses unknown cues: {', '.join(sorted(unknown))}")
        return cls(names, *arrays, bias, str(document.get("fitted_on", "")))

    def to_json(self) -> dict:
        return {
            "features": list(self.names),
            "mean": self.mean.tolist(),
            "std": self.std.tolist(),
            "weights": self.weights.tolist(),
            "bias": self.bias,
            "fitted_on": self.description,
        }

    def standardised(self, cues: dict[str, float]) -> np.ndarray:
        values = np.array([cues.get(name, math.nan) for name in self.names], dtype=np.float64)
        z = (values - self.mean) / np.where(self.std > 0, self.std, 1.0)
        return np.where(np.isnan(z), 0.0, z)

    def contributions(self, cues: dict[str, float]) -> dict[str, float]:
        """Each cue's share of the logit (weight times its standardised value)."""
        return dict(zip(self.names, (self.weights * self.standardised(cues)).tolist()))

    def logit(self, cues: dict[str, float]) -> float:
        return float(self.bias + sum(self.contributions(cues).values()))


def load_cue_model(path: PathLike | None = None) -> CueModel:
    """The shipped cue model, or one from a JSON file written by bench/fit_cues_model.py."""
    try:
        if path is None:
            text = resources.files("fakelab.detection").joinpath(MODEL_FILE).read_text(encoding="utf-8")
        else:
            text = Path(path).read_text(encoding="utf-8")
        document = json.loads(text)
    except FileNotFoundError:
        raise ConfigError(f"cue model not found: {path or MODEL_FILE}") from None
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"cannot read the cue model {path or MODEL_FILE}: {error}") from None
    return CueModel.from_json(document)


# ---------------------------------------------------------------- scoring a video


@dataclass
class CueVerdict:
    """The cue detector's verdict on one video, with every cue and its per-frame timeline."""

    source: str
    fps: float
    probability_fake: float
    logit: float
    threshold: float
    cues: dict[str, float]
    contributions: dict[str, float]
    lip_sync: LipSync
    faces: FaceFrames
    method: str = "cues"

    @property
    def verdict(self) -> str:
        return "fake" if self.probability_fake >= self.threshold else "real"

    @property
    def frame_count(self) -> int:
        return len(self.faces)

    @property
    def times(self) -> np.ndarray:
        return np.arange(len(self.faces)) / self.fps

    @property
    def timeline(self) -> dict[str, np.ndarray]:
        """Per-frame series (one value per analysed frame, NaN where not measured)."""
        return {name: self.faces.array(name) for name in TIMELINE_NAMES}

    def drivers(self, count: int = 3) -> list[tuple[str, float]]:
        """The cues that pushed the verdict most towards it: (name, logit share), largest first."""
        sign = 1.0 if self.verdict == "fake" else -1.0
        ranked = sorted(self.contributions.items(), key=lambda item: -sign * item[1])
        return [(name, share) for name, share in ranked[:count] if sign * share > 0]

    def summary(self) -> str:
        drivers = ", ".join(f"{name} {share:+.2f}" for name, share in self.drivers()) or "none"
        found = sum(g.face_found for g in self.faces.glitches)
        return (
            f"{self.source}: {self.verdict.upper()} (method cues, probability fake {self.probability_fake:.3f}, "
            f"threshold {self.threshold:g}; {self.frame_count} frames, face found in {found}; "
            f"{self.lip_sync.summary()}; driven by {drivers})"
        )

    def cue_table(self) -> str:
        lines = []
        for name in CUE_NAMES:
            value = self.cues.get(name, math.nan)
            share = self.contributions.get(name)
            shown = "n/a" if value is None or math.isnan(value) else f"{value:.4g}"
            lines.append(f"  {name:<20} {shown:>9}  {'' if share is None else f'{share:+.2f}'}")
        return "\n".join(lines)

    def to_json(self) -> dict:
        def clean(value):
            return None if value is None or (isinstance(value, float) and math.isnan(value)) else value

        return {
            "file": self.source,
            "method": self.method,
            "verdict": self.verdict,
            "probability_fake": self.probability_fake,
            "score": self.probability_fake,
            "logit": self.logit,
            "threshold": self.threshold,
            "frames_analysed": self.frame_count,
            "fps": self.fps,
            "cues": {name: clean(value) for name, value in self.cues.items()},
            "contributions": self.contributions,
            "drivers": [name for name, _ in self.drivers()],
            "lip_sync": self.lip_sync.to_json(),
            "timeline": {
                "time": self.times.tolist(),
                **{name: [clean(float(v)) for v in series] for name, series in self.timeline.items()},
                "face_found": [g.face_found for g in self.faces.glitches],
                "glitch_flagged": [g.flagged for g in self.faces.glitches],
            },
        }


def _audio_samples(audio, video: PathLike | None) -> np.ndarray | None | str:
    """Mono samples at AUDIO_RATE, None for no audio; audio is None (the video's own),
    "none", a media path, or (samples, rate)."""
    from fakelab.video import has_audio
    from fakelab.video.audio import decode_audio

    if isinstance(audio, str) and audio == "none":
        return None
    if audio is None:
        if video is None or not has_audio(video):
            return None
        return decode_audio(video, AUDIO_RATE)
    if isinstance(audio, tuple):
        samples, rate = audio
        samples = np.asarray(samples, dtype=np.float64).reshape(-1)
        if rate != AUDIO_RATE:
            positions = np.arange(0, len(samples), rate / AUDIO_RATE)
            samples = np.interp(positions, np.arange(len(samples)), samples)
        return samples
    return decode_audio(audio, AUDIO_RATE)


def analyse_faces(
    faces: FaceFrames, samples: np.ndarray | None, model: CueModel, threshold: float, source: str
) -> CueVerdict:
    """Lip-sync, video-level cues and the model's verdict for a followed face."""
    mouth = np.array(faces.mouth) if len(faces) else np.zeros((0, 3))
    sync = lip_sync(mouth, samples, AUDIO_RATE, faces.fps) if samples is not None else no_audio("no audio stream", faces.fps)
    cues = video_cues(faces, sync)
    logit = model.logit(cues)
    return CueVerdict(
        source=source,
        fps=faces.fps,
        probability_fake=float(1 / (1 + math.exp(-max(-60.0, min(60.0, logit))))),
        logit=logit,
        threshold=threshold,
        cues=cues,
        contributions=model.contributions(cues),
        lip_sync=sync,
        faces=faces,
    )


def score_video_cues(
    video_path_or_frames: PathLike | Sequence[np.ndarray],
    audio=None,
    *,
    seconds: float = DEFAULT_SECONDS,
    fps: float | None = None,
    threshold: float = DEFAULT_THRESHOLD,
    model: CueModel | None = None,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> CueVerdict:
    """Score a video (path) or a list of consecutive RGB frames with the forensic cues.

    Up to `seconds` of frames from the start are analysed. `audio` is None (a path's own
    audio; frames have none), "none", a media file, or (mono samples, rate). Raises
    NoFaceError when no frame has a face.
    """
    from itertools import islice

    from fakelab.video import iter_frames, probe_video

    if seconds <= 0:
        raise InputError(f"the seconds of video to analyse must be positive, got {seconds}")
    model = model or load_cue_model()
    if isinstance(video_path_or_frames, (str, os.PathLike)):
        path = Path(video_path_or_frames)
        info = probe_video(path)
        rate = fps or info.fps
        frames: Iterable[np.ndarray] = islice(iter_frames(path), max(1, round(seconds * rate)))
        source, video = str(path), path
    else:
        rate = fps or DEFAULT_FPS
        frames = list(video_path_or_frames)[: max(1, round(seconds * rate))]
        if not frames:
            raise InputError("no frames to score")
        source, video = "frames", None
    faces = follow_face(frames, rate, progress)
    if not any(g.face_found for g in faces.glitches):
        raise NoFaceError(f"{source} (looked in {len(faces)} consecutive frames)")
    samples = _audio_samples(audio, video)
    return analyse_faces(faces, samples, model, threshold, source)
