"""Shared pieces of the portrait-model benches: clips, cached driving landmarks, both
models run as a user runs them, contact sheets, flicker and seam figures."""

from __future__ import annotations

import os
from itertools import islice
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from fakelab.animation.portrait import PortraitAnimator
from fakelab.faces import FaceTracker, landmark_box, largest_face
from fakelab.faces.paste import FEATHER, face_outline
from fakelab.video import iter_frames, load_image

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared" / "media"
SOURCES = ("s0", "s3", "s4", "s7", "s11")
DRIVERS = ("d0", "d11", "d12", "d13", "d18")
CACHE = Path(os.environ.get("FAKELAB_BENCH_CACHE", "/tmp/fakelab-bench-cache"))


def source_image(name: str) -> np.ndarray:
    return load_image(MEDIA / f"{name}.jpg")


def source_landmarks(name: str, image: np.ndarray) -> np.ndarray:
    path = CACHE / f"{name}.source.npy"
    if path.exists():
        return np.load(path)
    landmarks = largest_face(image, name)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, landmarks)
    return landmarks


def driving_clip(name: str, frames: int) -> list[np.ndarray]:
    return list(islice(iter_frames(MEDIA / f"{name}.mp4"), frames))


def driving_landmarks(name: str, clip: list[np.ndarray]) -> list[np.ndarray | None]:
    """dlib landmarks of each frame as the portrait model's own tracker finds them (cached)."""
    path = CACHE / f"{name}.{len(clip)}.npy"
    if path.exists():
        stored = np.load(path)
        return [None if np.isnan(item).any() else item for item in stored]
    tracker = FaceTracker()
    found = []
    for frame in clip:
        faces = tracker.update(frame)
        found.append(max(faces, key=lambda face: face.box.area).landmarks if faces else None)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, np.stack([np.full((68, 2), np.nan) if item is None else item for item in found]))
    return found


def run_portrait(source: np.ndarray, landmarks: np.ndarray, clip, clip_landmarks, animator=None, live=False):
    """The portrait model on a whole clip as `fakelab animate` runs it (the head pose
    smoothed with look-ahead), or with `live` frame by frame as a live avatar runs it."""
    portrait = (animator or PortraitAnimator()).prepare(source, landmarks)
    if live:
        return [portrait.render(frame, lm) for frame, lm in zip(clip, clip_landmarks)], portrait
    return list(portrait.render_stream(clip, clip_landmarks)), portrait


def run_landmark_warp(source: np.ndarray, clip) -> list[np.ndarray]:
    """landmark-warp as its README section tells users to run it: crop and paste back."""
    import fakelab

    return fakelab.animate(source, clip, model="landmark-warp", crop=True, paste_back=True)


def face_view(landmarks: np.ndarray, image_shape, factor: float = 2.2) -> tuple[int, int, int, int]:
    """A square around the face, for contact sheets."""
    box = landmark_box(landmarks)
    cx, cy = box.centre
    half = factor * box.width / 2
    height, width = image_shape[:2]
    half = min(half, width / 2, height / 2)
    cx, cy = np.clip(cx, half, width - half), np.clip(cy, half, height - half)
    return int(cx - half), int(cy - half), int(cx + half), int(cy + half)


def sheet_picks(length: int, count: int = 8) -> list[int]:
    """The frames a contact sheet shows: `count` evenly spaced over `length`."""
    return np.linspace(0, length - 1, count).round().astype(int).tolist()


def contact_sheet(rows: list[tuple[str, list[np.ndarray], tuple]], path: Path, count: int = 8, tile: int = 128) -> None:
    """Rows of `count` evenly spaced frames, each cut to a view box and scaled to `tile` px,
    a label at the left; written as a palette PNG to stay small."""
    picks = sheet_picks(min(len(frames) for _, frames, _ in rows), count)
    label_width = 92
    sheet = np.full((tile * len(rows), label_width + tile * count, 3), 255, np.uint8)
    for r, (label, frames, view) in enumerate(rows):
        cv2.putText(sheet, label, (4, r * tile + tile // 2), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
        for c, index in enumerate(picks):
            frame = frames[index]
            left, top, right, bottom = view if not callable(view) else view(index)
            cut = frame[max(top, 0) : bottom, max(left, 0) : right]
            sheet[r * tile : (r + 1) * tile, label_width + c * tile : label_width + (c + 1) * tile] = cv2.resize(
                cut, (tile, tile), interpolation=cv2.INTER_AREA
            )
    for c, index in enumerate(picks):
        cv2.putText(sheet, str(index), (label_width + c * tile + 3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35,
                    (255, 255, 255), 1, cv2.LINE_AA)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        path, optimize=True
    )


def face_mask(shape, landmarks: np.ndarray) -> np.ndarray:
    """The face as landmark-warp's paste-back blends it: the face outline's hull, grown
    by its feather. Outside it, a pasted-back frame should not change."""
    mask = np.zeros(shape[:2], np.uint8)
    cv2.fillConvexPoly(mask, cv2.convexHull(np.round(face_outline(landmarks)).astype(np.int32)), 1)
    radius = max(1, round(FEATHER * np.ptp(landmarks[:, 0])))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return cv2.dilate(mask, kernel) > 0


def flicker(frames: list[np.ndarray], landmarks: np.ndarray, still: np.ndarray | None = None) -> tuple[float, float, float]:
    """Outside the face (8-bit levels): the mean absolute change between consecutive
    frames, the largest single-frame change over the median one, and the mean
    absolute second difference |f[t+1] - 2 f[t] + f[t-1]|, which smooth motion
    (a head that moves its hair along) hardly raises but flicker and one-frame
    jumps do. `still` (HxW bool) replaces "outside the face" by another region."""
    outside = ~face_mask(frames[0].shape, landmarks) if still is None else still
    if not outside.any():
        return float("nan"), float("nan"), float("nan")
    pixels = [frame[outside].astype(np.int16) for frame in frames]
    changes = np.array([np.abs(b - a).mean() for a, b in zip(pixels, pixels[1:])])
    jitter = np.array([np.abs(c - 2 * b + a).mean() for a, b, c in zip(pixels, pixels[1:], pixels[2:])])
    median = float(np.median(changes))
    return float(changes.mean()), float(changes.max() / max(median, 1e-3)), float(jitter.mean())


def seam_path(shape, landmarks: np.ndarray) -> np.ndarray:
    """Pixels (y, x) along the edge of the paste-back mask."""
    mask = face_mask(shape, landmarks).astype(np.uint8)
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    points = np.concatenate([contour[:, 0] for contour in contours])
    return points[:, ::-1]


def gradient_energy(image: np.ndarray, path: np.ndarray) -> float:
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32)
    gx = cv2.Sobel(gray, cv2.CV_32F, 1, 0, ksize=3)
    gy = cv2.Sobel(gray, cv2.CV_32F, 0, 1, ksize=3)
    energy = gx**2 + gy**2
    return float(energy[path[:, 0], path[:, 1]].mean())


def seam(frames: list[np.ndarray], source: np.ndarray, landmarks: np.ndarray) -> float:
    """Gradient energy along the paste-back edge, over the same path's in the source
    (1: no seam added; more: a visible edge or halo)."""
    path = seam_path(source.shape, landmarks)
    reference = gradient_energy(source, path)
    return float(np.mean([gradient_energy(frame, path) for frame in frames]) / max(reference, 1e-6))
