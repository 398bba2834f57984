"""`fakelab demo`: the main job end to end on media that the installed packages ship.

The source is scikit-image's astronaut portrait. The driving clip is generated:
matplotlib's portrait of Grace Hopper, whose face is moved smoothly (a nod, a
turn of the head in the image plane, a lean towards the camera) and made to
talk and blink by warping it along its own landmarks, with teeth and a dark
mouth painted inside its opening lips. The astronaut (512x512) is then animated
by that clip with the portrait model at its native resolution, and, given a
FOMM checkpoint, with FOMM too.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from fakelab.errors import ConfigError
from fakelab.faces.crop import crop_image
from fakelab.animation.landmark_warp import LandmarkWarper
from fakelab.animation.portrait import PortraitAnimator
from fakelab.video import VideoWriter, load_image

DEFAULT_OUTPUT = Path("out/demo/demo.mp4")
FPS = 25
SECONDS = 3.0
SIZE = 256
# Peak motions of the generated head, over one period of the clip.
NOD_DEGREES = 7.0
SWAY_PIXELS = 6.0
LEAN = 0.06  # relative change of size
JAW_DROP = 0.08  # fraction of the face height
UPPER_LIDS, LOWER_LIDS = [37, 38, 43, 44], [41, 40, 47, 46]
LOWER_JAW = sorted(set(range(5, 12)) | set(range(55, 60)) | {65, 66, 67})


@dataclass(frozen=True)
class DemoResult:
    outputs: list[Path]
    driving: Path


def astronaut() -> np.ndarray:
    from skimage import data

    return data.astronaut()


def grace_hopper() -> np.ndarray:
    spec = importlib.util.find_spec("matplotlib")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError('the demo\'s driving portrait comes with matplotlib: pip install "fakelab[faces]"')
    path = Path(spec.submodule_search_locations[0]) / "mpl-data" / "sample_data" / "grace_hopper.jpg"
    return load_image(path)


def head_motion(landmarks: np.ndarray, phase: float) -> np.ndarray:
    """The landmarks moved as a talking head would be at `phase` (0..1) of the clip."""
    turn = 2 * np.pi * phase
    angle = np.radians(NOD_DEGREES) * np.sin(turn)
    scale = 1 + LEAN * np.sin(turn / 2) ** 2
    shift = SWAY_PIXELS * np.array([np.sin(turn), 0.5 * np.sin(2 * turn)])
    face_height = np.linalg.norm(landmarks[8] - landmarks[27])
    moved = landmarks.copy()
    # Speech: the jaw opens and closes three times, most in the middle of the clip.
    moved[LOWER_JAW, 1] += JAW_DROP * face_height * np.sin(3 * turn) ** 2 * np.sin(np.pi * phase)
    blink = np.exp(-(((phase - 0.7) / 0.04) ** 2))
    moved[UPPER_LIDS] += blink * (moved[LOWER_LIDS] - moved[UPPER_LIDS])
    centre = landmarks.mean(axis=0)
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    return (moved - centre) @ rotation.T * scale + centre + shift


def paint_mouth_interior(frame: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """The inside of an open mouth within the inner lips (landmarks 60-67): upper
    teeth with the gaps between them, lower teeth in shadow, a tongue, and a dark
    cavity that deepens towards the corners.

    The warp can only stretch the closed lips of the portrait; a talking head
    shows teeth, and the portrait model takes the mouth's interior from the
    driving frame. A flat white band and a flat dark hole read as painted: shading
    across the mouth (teeth recede towards the corners) and the gaps are what make
    it read as a mouth.
    """
    inner = landmarks[60:68]
    mask = np.zeros(frame.shape[:2], np.float32)
    cv2.fillPoly(mask, [np.round(inner * 16).astype(np.int32)], 1.0, cv2.LINE_AA, 4)
    if mask.sum() < 4:
        return frame
    left, right = landmarks[60], landmarks[64]
    centre = (left + right) / 2
    half_width = max(float(np.linalg.norm(right - left)) / 2, 1.0)
    axis = (right - left) / (2 * half_width)
    down = np.array([-axis[1], axis[0]])
    top = float((landmarks[[61, 62, 63]].mean(axis=0) - centre) @ down)
    bottom = float((landmarks[[65, 66, 67]].mean(axis=0) - centre) @ down)
    opening = max(bottom - top, 1.0)
    ys, xs = np.mgrid[: frame.shape[0], : frame.shape[1]].astype(np.float32)
    u = ((xs - centre[0]) * axis[0] + (ys - centre[1]) * axis[1]) / half_width  # -1..1, corner to corner
    v = ((xs - centre[0]) * down[0] + (ys - centre[1]) * down[1] - top) / opening  # 0 upper lip .. 1 lower
    # The cavity: dark red, darker towards the corners and the back.
    depth = np.clip(1 - 0.55 * u**2, 0.25, 1)[..., None]
    colour = np.array([92, 30, 34], np.float32) * depth
    # The tongue, low in the middle.
    tongue = np.clip(1 - (u / 0.55) ** 2 - ((v - 1.05) / 0.45) ** 2, 0, 1)[..., None]
    colour = colour * (1 - tongue) + np.array([165, 70, 72], np.float32) * depth * tongue
    # Upper teeth: a band under the upper lip whose lower edge dips a little at each
    # tooth, gaps every eighth of the mouth, fading into the dark at the corners.
    tooth = 2 / 8
    within = (u / tooth) % 1.0
    edge = 0.42 - 0.06 * (2 * within - 1) ** 2
    upper = _soft_step(edge - v, 0.05) * np.clip(1.15 - np.abs(u), 0, 1)
    gaps = 1 - 0.35 * np.exp(-(((within - 0.5) / 0.06) ** 2)) * (np.abs(u) > 0.05)
    shade = (0.78 + 0.22 * np.clip(1 - u**2, 0, 1)) * gaps
    teeth = np.array([236, 230, 214], np.float32) * shade[..., None]
    colour = colour * (1 - upper[..., None]) + teeth * upper[..., None]
    # Lower teeth, barely showing above the lower lip, in shadow.
    lower = _soft_step(v - 0.86, 0.04) * np.clip(0.8 - np.abs(u), 0, 1)
    colour = colour * (1 - lower[..., None]) + 0.6 * teeth * lower[..., None]
    interior = cv2.GaussianBlur(colour, (0, 0), 0.6)
    alpha = cv2.GaussianBlur(mask, (0, 0), 0.7)[..., None] * mask[..., None]
    return np.round(frame * (1 - alpha) + interior * alpha).astype(np.uint8)


def _soft_step(distance: np.ndarray, width: float) -> np.ndarray:
    """0 below 0, 1 above `width`, smooth between: an anti-aliased edge."""
    t = np.clip(distance / width, 0, 1)
    return t * t * (3 - 2 * t)


def driving_clip(portrait: np.ndarray, frames: int) -> list[np.ndarray]:
    """A talking-head clip made from one portrait, SIZE x SIZE."""
    crop = crop_image(portrait, SIZE, where="the driving portrait")
    warper = LandmarkWarper(crop.image, crop.landmarks_in_crop)
    clip = []
    for i in range(frames):
        moved = head_motion(crop.landmarks_in_crop, i / frames)
        clip.append(paint_mouth_interior(warper(moved), moved))
    return clip


def run_demo(
    output: str | os.PathLike = DEFAULT_OUTPUT,
    checkpoint: str | os.PathLike | None = None,
    config: str = "vox-256",
) -> DemoResult:
    """Write the generated driving clip and the astronaut animated by it.

    Outputs: `output` (the portrait model, at the astronaut's 512x512),
    `<stem>-driving.mp4` beside it, and with a FOMM `checkpoint` also
    `<stem>-fomm.mp4` (256x256, the checkpoint's size).
    """
    from fakelab.animation.api import animate, build_animator

    output = Path(output)
    # The checkpoint is loaded before anything is written: a bad one leaves no file behind.
    fomm = build_animator("fomm", checkpoint, config) if checkpoint is not None else None
    driving = driving_clip(grace_hopper(), round(SECONDS * FPS))
    driving_path = output.with_name(f"{output.stem}-driving{output.suffix}")
    _write(driving_path, driving)
    animate(astronaut(), driving, output, animator=PortraitAnimator(fps=FPS), audio="none", fps=FPS)
    outputs = [output]
    if fomm is not None:
        source = crop_image(astronaut(), SIZE, where="the astronaut portrait").image
        fomm_output = output.with_name(f"{output.stem}-fomm{output.suffix}")
        animate(source, driving, fomm_output, animator=fomm, audio="none", fps=FPS)
        outputs.append(fomm_output)
    return DemoResult(outputs, driving_path)


def _write(path: Path, frames: list[np.ndarray]) -> None:
    with VideoWriter(path, FPS) as writer:
        for frame in frames:
            writer.write(frame)
