"""The `portrait` model: training-free portrait animation with 2-D warps, after
Averbuch-Elor et al., "Bringing Portraits to Life" (SIGGRAPH Asia 2017).

Per driving frame, from dlib's 68 landmarks:

1. Motion without identity: the driving head pose (a similarity fitted on the
   jaw outline near the ears, the nose bridge and the eye corners, which
   expressions hardly move) is taken out of the
   driving landmarks; what is left, minus the neutral (first) frame, is the
   expression. Expression offsets are carried into the source's frame and size;
   eyelids move by the driving eye's relative opening, so a blink closes the
   source's eye whatever its size. The driving face's shape never reaches the
   source: at the neutral frame every offset is zero and the source comes back
   exactly.
2. One smooth dense backward warp at the source's native resolution: the head
   pose (clamped) moves the whole head, hair and neck with it, fading into a
   still background; the expression is a thin-plate spline through the landmarks
   (centred at their targets, so an opening mouth is well posed; a Gaussian RBF
   field was tried first and oscillated between close landmarks). Both
   are evaluated on a coarse grid, upsampled and applied with one `cv2.remap`.
   The field is zero where the head's weight is zero, so the frame outside the
   head is the source's own pixels: there is no paste-back seam to hide.
3. The open mouth's interior comes from the driving frame, mapped onto the
   target inner-lip polygon by an affine fit of the lips, shifted to the source's
   lip colour and feathered in, only where the mouth is more open than the
   source's. The iris moves inside the eye with the driving gaze.
4. Landmarks are smoothed by a One-Euro filter, reset at a scene cut; outside the
   face the warp field passes through a slower one of its own, so that the hair
   and neck do not take on the landmarks' pixel jitter (bounded to trail the face
   by a little, so that a quick move does not tear the band between them). A
   whole video (`render_stream`) also smooths that field's head pose over the
   neighbouring frames, without lag.

`PortraitAnimator.prepare(source)` does the per-source work once (landmarks,
grids, weights); `PreparedPortrait.render(frame)` is the per-frame step a live
avatar calls.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Iterable, Iterator

import cv2
import numpy as np

from fakelab.errors import InputError
from fakelab.faces.filters import OneEuroFilter
from fakelab.faces.landmarks import landmark_box, largest_face
from fakelab.faces.paste import face_outline
from fakelab.faces.tracking import FaceTracker, TrackedFace

# The head pose is fitted on points that move with the head, hardly with expressions:
# the jaw outline near the ears, the nose bridge and the eye corners. The outline
# matters: when the head turns (yaw) the nose and eyes slide sideways but the
# silhouette stays, so this fit leaves the slide to the expression, as a 2-D warp
# should, instead of sliding the whole head and its hair (measured: self-reenactment
# L1 on d0 0.0162 with nose and eye corners only, 0.0142 with the outline).
STABLE = np.array([0, 1, 2, 14, 15, 16, 27, 36, 39, 42, 45])
# (upper, lower) eyelid landmark pairs.
EYELIDS = ((37, 41), (38, 40), (43, 47), (44, 46))
EYES = (np.arange(36, 42), np.arange(42, 48))
INNER_LIP_PAIRS = ((61, 67), (62, 66), (63, 65))
LIPS = np.arange(48, 68)
OUTER_LIPS = np.arange(48, 60)
INNER_LIPS = np.arange(60, 68)
MOUTH_CORNERS = (48, 54)
# Driving landmarks this close (pixels) to the neutral frame's are the neutral frame.
NEUTRAL_TOLERANCE = 0.5


@dataclass(frozen=True)
class PortraitOptions:
    """Knobs of the portrait model; the defaults were tuned on ../shared/media."""

    max_angle: float = 30.0  # degrees of head roll passed on; more is clamped smoothly
    min_scale: float = 0.75  # head size change passed on (leaning in and out)
    max_scale: float = 1.33
    max_shift: float = 0.35  # head translation, in face sizes
    clamp_knee: float = 0.85  # poses up to this fraction of each limit pass unchanged
    rbf_ridge: float = 1e-4  # smoothing of the expression field's thin-plate spline (face-size units)
    # The head ellipse (radii x, y in face sizes) moves rigidly, then the motion fades
    # into the still background over `falloff` face sizes. Measured by self-reenactment
    # L1 on ../shared/media: larger heads drag more background and neck along.
    head_radius: tuple[float, float] = (0.55, 0.75)
    falloff: float = 0.35
    # The face itself (the hull of jaw, brows and forehead, grown by `face_margin` face
    # sizes) always moves in full, fading out over `face_falloff`: the ellipse alone
    # left the chin at 85% weight, so an opening jaw fell short of its target.
    face_margin: float = 0.1
    face_falloff: float = 0.2
    # The head's weight also follows the head: a pixel moves in full where the moved
    # head covers it, so a head shifted far keeps its whole face.
    follow_head: bool = True
    anchor_reach: float = 0.3  # the expression field is held at zero this far past the face (face sizes)
    grid_cells: int = 40  # coarse-grid cells across one face size
    max_grid: int = 112  # at most this many grid points a side
    # One-Euro filters (tuned on d11, a lively talker: lag shows as landmark error).
    min_cutoff: float = 2.0  # Hz for still landmarks
    mouth_min_cutoff: float = 5.0  # and for the lips, which move faster in speech
    beta: float = 150.0  # cutoff rise per face size per second
    # A whole video (render_stream) smooths the head pose without lag: each frame's pose
    # is a straight line fitted through its neighbours' up to 2 sigma frames either
    # side (Gaussian weights), so a steady turn keeps its pace while dlib's jitter on
    # the jaw outline averages out. A causal filter here lagged the face behind the
    # driver (self-reenactment AKD on d12 4.6 px with a 1.5 Hz One-Euro). Live
    # rendering (render) cannot look ahead and takes the pose as measured. 0: off.
    pose_smoothing: float = 1.5  # sigma, in frames, for a still head
    pose_follow: float = 0.01  # pose change a frame (radians, log scale, face sizes) past which the smoothing gives way
    derivative_cutoff: float = 8.0  # Hz: how fast the filters notice that a motion starts
    scene_cut: float = 0.35  # a one-frame move of the head by this many face sizes is a cut
    # Outside the face (hair, ears, neck, the fade into the background) the warp field
    # passes through a slower One-Euro filter than the face's: the face keeps up with
    # the driver, while what surrounds it moves smoothly instead of taking on the
    # landmarks' sub-pixel jitter (dlib's landmarks are whole pixels).
    outer_min_cutoff: float = 0.2  # Hz
    outer_beta: float = 0.5  # cutoff rise per face size per second
    outer_lag: float = 0.05  # face sizes: the most the outer field may trail the face's
    outer_margin: float = 0.045  # face sizes past the face's hull where the face's field holds in full
    # The band over which the face's field gives way to the outer one. The outer may
    # trail by outer_lag, and over 0.03 face sizes that lag folded the hair in straight
    # lines on quick moves (s7's quiff driven by d12, frame 38); over 0.15 it does not.
    # (A band widened with each frame's lag moved the hair in one-frame jumps.)
    outer_band: float = 0.15
    mouth_fill: bool = True
    mouth_grow: float = 0.45  # the filled opening reaches this share of its height past the inner lips
    mouth_ramp: float = 0.01  # the fill fades in as the mouth opens this much (mouth widths squared)
    gaze: bool = True
    max_gaze: float = 0.14  # iris shift, in eye widths


def fit_similarity(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """The 2x3 similarity (rotation, uniform scale, shift; no reflection) taking
    `source` points nearest to `target` points in least squares (Umeyama)."""
    mu_s, mu_t = source.mean(axis=0), target.mean(axis=0)
    s, t = source - mu_s, target - mu_t
    a = (s * t).sum()  # sum of dot products
    b = (s[:, 0] * t[:, 1] - s[:, 1] * t[:, 0]).sum()  # sum of cross products
    norm = (s**2).sum()
    if norm < 1e-12:
        return np.hstack([np.eye(2), (mu_t - mu_s)[:, None]])
    c, d = a / norm, b / norm
    linear = np.array([[c, -d], [d, c]])
    return np.hstack([linear, (mu_t - linear @ mu_s)[:, None]])


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    linear = np.linalg.inv(matrix[:, :2])
    return np.hstack([linear, (-linear @ matrix[:, 2])[:, None]])


def _scale_angle(matrix: np.ndarray) -> tuple[float, float]:
    return float(np.hypot(matrix[0, 0], matrix[1, 0])), float(np.arctan2(matrix[1, 0], matrix[0, 0]))


def _soft_clamp(value: float, limit: float, knee: float = 0.6) -> float:
    """`value` unchanged up to `knee` times `limit`, then approaching ±limit smoothly."""
    if limit <= 0:
        return 0.0
    knee = knee * limit
    size = abs(value)
    if size <= knee:
        return float(value)
    return float(np.sign(value) * (knee + (limit - knee) * np.tanh((size - knee) / (limit - knee))))


def face_size(landmarks: np.ndarray) -> float:
    """dlib's face box side for these landmarks (about the face's width)."""
    return float(landmark_box(landmarks).width)


def polygon_area(points: np.ndarray) -> float:
    x, y = points.T
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def _smoothstep(t: np.ndarray) -> np.ndarray:
    t = np.clip(t, 0.0, 1.0)
    return t * t * (3 - 2 * t)


def _lab(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image.astype(np.float32) / 255, cv2.COLOR_RGB2LAB)


def _polygon_mask(shape: tuple[int, int], points: np.ndarray) -> np.ndarray:
    mask = np.zeros(shape, dtype=np.float32)
    cv2.fillPoly(mask, [np.round(points * 16).astype(np.int32)], 1.0, cv2.LINE_AA, 4)
    return mask


def iris_position(frame: np.ndarray, eye: np.ndarray) -> np.ndarray | None:
    """Where the iris sits in an eye (6 landmarks), in eye widths from the eye's centre
    along (corner-to-corner, downwards), or None when the eye is too small or closed."""
    outer, inner = eye[0], eye[3]
    width = float(np.linalg.norm(inner - outer))
    opening = polygon_area(eye) / max(width, 1e-6)
    if width < 8 or opening < 0.12 * width:
        return None
    left, top = np.floor(eye.min(axis=0)).astype(int)
    right, bottom = np.ceil(eye.max(axis=0)).astype(int) + 1
    height_px, width_px = frame.shape[:2]
    left, top, right, bottom = max(left, 0), max(top, 0), min(right, width_px), min(bottom, height_px)
    if right - left < 4 or bottom - top < 2:
        return None
    patch = cv2.cvtColor(np.ascontiguousarray(frame[top:bottom, left:right]), cv2.COLOR_RGB2GRAY).astype(np.float32)
    mask = _polygon_mask(patch.shape, eye - (left, top)) > 0.5
    if mask.sum() < 6:
        return None
    values = patch[mask]
    threshold = np.percentile(values, 30)
    weight = np.where(mask, np.clip(threshold - patch, 0, None) + 1e-3 * mask, 0)
    total = weight.sum()
    ys, xs = np.mgrid[top:bottom, left:right]
    centre = np.array([(weight * xs).sum() / total, (weight * ys).sum() / total])
    axis = (inner - outer) / width
    normal = np.array([-axis[1], axis[0]])
    offset = centre - (outer + inner) / 2
    return np.array([offset @ axis, offset @ normal]) / width


class PreparedPortrait:
    """One source portrait made ready to animate: call `render` per driving frame.

    The first driving frame with a face (or the one given to `recalibrate`) is the
    neutral frame: motion is taken relative to it, and it renders the source as is.
    """

    def __init__(
        self,
        source: np.ndarray,
        landmarks: np.ndarray,
        options: PortraitOptions = PortraitOptions(),
        detector: str | None = None,
        fps: float = 25.0,
    ):
        if source.dtype != np.uint8 or source.ndim != 3 or source.shape[2] != 3:
            raise InputError(f"the source must be an HxWx3 uint8 RGB array, got {source.dtype} {source.shape}")
        self.source = np.ascontiguousarray(source)
        self.landmarks = np.asarray(landmarks, dtype=np.float64)
        self.options = options
        self.detector = detector
        self.fps = fps
        self.face_size = face_size(self.landmarks)
        self.centre = self.landmarks[STABLE].mean(axis=0)
        self._down = self._down_direction(self.landmarks)
        self._mouth_width = float(np.linalg.norm(np.subtract(*self.landmarks[list(MOUTH_CORNERS)])))
        self._mouth_opening = polygon_area(self.landmarks[INNER_LIPS])
        self._eye_widths = [float(np.linalg.norm(self.landmarks[eye[3]] - self.landmarks[eye[0]])) for eye in EYES]
        self._lip_colour = self._ring_colour(_lab(self.source), self.landmarks)
        self._build_grid()
        self._anchors = self._anchor_ring()
        self._tracker: FaceTracker | None = None
        self._followed: int | None = None
        self._neutral: np.ndarray | None = None
        self.frames_seen = 0
        self.neutral_frame: int | None = None  # index of the neutral driving frame among those rendered
        self._segment = 0  # counts scene cuts and neutral frames (see _Motion)
        self._last_raw: np.ndarray | None = None
        self._filter = self._new_filter()
        self._gaze_neutral: list[np.ndarray | None] = [None, None]
        self._gaze = np.zeros((2, 2))
        self._gaze_filter = OneEuroFilter(fps, min_cutoff=3.0, beta=0.0)
        self._outer_filter = OneEuroFilter(fps, options.outer_min_cutoff, options.outer_beta, 1.0)

    # ----- per-source set-up
    @staticmethod
    def _down_direction(landmarks: np.ndarray) -> np.ndarray:
        eye_line = landmarks[42:48].mean(axis=0) - landmarks[36:42].mean(axis=0)
        down = np.array([-eye_line[1], eye_line[0]])
        return down / (np.linalg.norm(down) + 1e-9)

    def _head_weight(self, points: np.ndarray) -> np.ndarray:
        """1 over the head (face, hair, upper neck), fading to 0 in the background."""
        down = self._down
        right = np.array([down[1], -down[0]])
        size = self.face_size
        # The head's centre sits a little above the face's: hair is above, the neck below.
        centre = self.centre - 0.12 * size * down
        offset = points - centre
        rx, ry = self.options.head_radius
        u = (offset @ right) / (rx * size)
        v = (offset @ down) / (ry * size)
        radius = np.sqrt(u**2 + v**2)
        # The fade is measured in face sizes, along the ray from the centre.
        scale = np.sqrt((u * rx) ** 2 + (v * ry) ** 2) / np.maximum(radius, 1e-9)  # face sizes per unit radius
        beyond = (radius - 1) * scale / self.options.falloff
        return 1 - _smoothstep(beyond)

    def still_region(self) -> np.ndarray:
        """HxW bool: where the warp field is zero in every frame, so the output is the
        source's own pixels whatever the driving video does."""
        height, width = self.source.shape[:2]
        left, top, right, bottom = self.region
        still = np.ones((height, width), bool)
        # The weight that follows the head can reach anywhere in the region but its edge.
        still[top:bottom, left:right] = False if self.options.follow_head else self._weight_image <= 0
        return still

    def _build_grid(self) -> None:
        height, width = self.source.shape[:2]
        size = self.face_size
        rx, ry = self.options.head_radius
        centre = self.centre - 0.12 * size * self._down
        face_reach = np.linalg.norm(face_outline(self.landmarks) - centre, axis=1).max()
        face_reach += (self.options.face_margin + self.options.face_falloff) * size
        # Room for the head to move into (follow_head), tapered off at the region's edge.
        reach = max((max(rx, ry) + self.options.falloff) * size, face_reach) + 0.15 * size + 2
        left, top = max(0, int(np.floor(centre[0] - reach))), max(0, int(np.floor(centre[1] - reach)))
        right = min(width, int(np.ceil(centre[0] + reach)) + 1)
        bottom = min(height, int(np.ceil(centre[1] + reach)) + 1)
        self.region = (left, top, right, bottom)
        roi_w, roi_h = right - left, bottom - top
        step = max(1.0, size / self.options.grid_cells, max(roi_w, roi_h) / self.options.max_grid)
        self._grid_shape = (max(2, int(round(roi_h / step))), max(2, int(round(roi_w / step))))
        ny, nx = self._grid_shape
        # Grid points sit where cv2.resize puts the samples it interpolates from.
        gx = left + (np.arange(nx) + 0.5) * roi_w / nx - 0.5
        gy = top + (np.arange(ny) + 0.5) * roi_h / ny - 0.5
        gxx, gyy = np.meshgrid(gx, gy)
        self._grid = np.stack([gxx.ravel(), gyy.ravel()], axis=1)
        xs, ys = np.meshgrid(np.arange(left, right, dtype=np.float32), np.arange(top, bottom, dtype=np.float32))
        self._base = (xs, ys)
        # The head's weight as an image over the region (sampled again where the head
        # moves to), and at the grid points.
        pixels = np.stack([xs.ravel(), ys.ravel()], axis=1).astype(np.float64)
        weight = self._head_weight(pixels).reshape(xs.shape)
        # Distance from the face's hull (face sizes): the face moves in full up to
        # face_margin past it, and the face's field gives way to the outer one past
        # outer_margin (see _inner_weight).
        hull_distance = self._distance_from_face(xs.shape, (left, top))
        face = 1 - _smoothstep((hull_distance - self.options.face_margin) / self.options.face_falloff)
        self._weight_image = np.maximum(weight, face).astype(np.float32)
        self._grid_weight = self._sample_weight(self._grid)
        edge = np.minimum.reduce([self._grid[:, 0] - left, right - 1 - self._grid[:, 0],
                                  self._grid[:, 1] - top, bottom - 1 - self._grid[:, 1]])
        # Near the region's edge the weight that follows the head fades out: the field
        # must be zero where the region ends (no cut), wherever the head went.
        self._edge_taper = _smoothstep(edge / (0.15 * size))
        # Past the region the hull counts as far.
        self._hull_distance = hull_distance.astype(np.float32)
        self._inner = self._inner_weight(self._sample_weight(self._grid, self._hull_distance, outside=1e3))

    def _distance_from_face(self, shape: tuple[int, int], origin: tuple[int, int]) -> np.ndarray:
        """Over an image of `shape` whose corner is `origin`: each pixel's distance from the
        face's hull (0 inside), in face sizes."""
        hull = cv2.convexHull(np.round(face_outline(self.landmarks) - origin).astype(np.int32))
        outside = np.ones(shape, np.uint8)
        cv2.fillConvexPoly(outside, hull, 0)
        return cv2.distanceTransform(outside, cv2.DIST_L2, 5) / self.face_size

    def _sample_weight(self, points: np.ndarray, image: np.ndarray | None = None, outside: float = 0.0) -> np.ndarray:
        left, top = self.region[:2]
        local = (points - (left, top)).astype(np.float32).reshape(-1, 1, 2)
        image = self._weight_image if image is None else image
        sampled = cv2.remap(image, local[..., 0], local[..., 1], cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=outside)
        return sampled.ravel().astype(np.float64)

    def _anchor_ring(self) -> np.ndarray:
        """Points around the face where the expression field is held at zero."""
        centre = self.landmarks[:68].mean(axis=0)
        outline = np.concatenate([self.landmarks[:17], self.landmarks[17:27] - 0.35 * self.face_size * self._down])
        angles = np.linspace(0, 2 * np.pi, 20, endpoint=False)
        directions = np.stack([np.cos(angles), np.sin(angles)], axis=1)
        # For each direction, beyond the farthest outline point along it.
        reach = np.max((outline - centre) @ directions.T, axis=0)
        return centre + directions * (reach[:, None] + self.options.anchor_reach * self.face_size)

    def _new_filter(self) -> OneEuroFilter:
        cutoff = np.full((68, 1), self.options.min_cutoff)
        cutoff[LIPS] = self.options.mouth_min_cutoff
        return OneEuroFilter(self.fps, cutoff, self.options.beta, self.options.derivative_cutoff)

    @staticmethod
    def _ring_colour(lab: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """Mean Lab colour of the lips (outer lip polygon less the inner one)."""
        left, top = np.floor(landmarks[OUTER_LIPS].min(axis=0)).astype(int) - 2
        right, bottom = np.ceil(landmarks[OUTER_LIPS].max(axis=0)).astype(int) + 3
        left, top = max(left, 0), max(top, 0)
        patch = lab[top:bottom, left:right]
        if patch.size == 0:
            return lab.reshape(-1, 3).mean(axis=0)
        shape = patch.shape[:2]
        ring = _polygon_mask(shape, landmarks[OUTER_LIPS] - (left, top)) - _polygon_mask(
            shape, landmarks[INNER_LIPS] - (left, top)
        )
        ring = ring > 0.5
        return patch[ring].mean(axis=0) if ring.any() else patch.reshape(-1, 3).mean(axis=0)

    # ----- driving landmarks
    def _driving_landmarks(self, frame: np.ndarray, landmarks: np.ndarray | None) -> np.ndarray | None:
        if landmarks is not None:
            landmarks = np.asarray(landmarks, dtype=np.float64)
            if landmarks.shape != (68, 2):
                raise InputError(f"driving landmarks must be 68x2, got {landmarks.shape}")
            return landmarks
        if self._tracker is None:
            self._tracker = FaceTracker(self.detector)
        face = _same_face(self._tracker.update(frame), self._followed)
        if face is None:
            return None
        if self._followed is not None and face.track_id != self._followed:
            self._last_raw = None  # another face: a cut, not a motion
        self._followed = face.track_id
        return face.landmarks

    def recalibrate(self, driving_frame: np.ndarray, landmarks: np.ndarray | None = None) -> None:
        """Make this driving frame the neutral one: it renders the source exactly."""
        found = self._driving_landmarks(driving_frame, landmarks)
        if found is None:
            from fakelab.errors import NoFaceError

            raise NoFaceError("the driving frame given as the neutral frame")
        self._calibrate(driving_frame, found)

    def _calibrate(self, frame: np.ndarray, landmarks: np.ndarray) -> None:
        self._neutral = landmarks.copy()
        self._neutral_size = face_size(landmarks)
        self._neutral_centre = landmarks[STABLE].mean(axis=0)
        self._to_source = fit_similarity(landmarks[STABLE], self.landmarks[STABLE])
        driving_mouth = float(np.linalg.norm(np.subtract(*landmarks[list(MOUTH_CORNERS)])))
        scale, _ = _scale_angle(self._to_source)
        self._mouth_ratio = float(np.clip(self._mouth_width / max(scale * driving_mouth, 1e-6), 0.7, 1.4))
        self._filter = self._new_filter()
        self._filter.reset(self._normalise(landmarks))
        self._outer_filter.reset(np.zeros((len(self._grid), 2)))
        self._last_raw = landmarks.copy()
        self._gaze_neutral = [iris_position(frame, landmarks[eye]) for eye in EYES]
        self._gaze = np.zeros((2, 2))
        self._gaze_filter.reset(self._gaze)

    def _normalise(self, landmarks: np.ndarray) -> np.ndarray:
        return (landmarks - self._neutral_centre) / self._neutral_size

    def _is_cut(self, landmarks: np.ndarray) -> bool:
        return self._last_raw is None or bool(
            np.linalg.norm(landmarks[STABLE].mean(axis=0) - self._last_raw[STABLE].mean(axis=0))
            > self.options.scene_cut * self._neutral_size
        )

    def _filtered(self, landmarks: np.ndarray, cut: bool) -> np.ndarray:
        normalised = self._normalise(landmarks)
        if cut:
            self._filter.reset(normalised)
        self._last_raw = landmarks.copy()
        return self._filter(normalised) * self._neutral_size + self._neutral_centre

    # ----- motion
    def targets(self, driving: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For (filtered) driving landmarks: the source landmarks with the expression
        only, the source's head pose (2x3), and the final target landmarks."""
        moved, pose = self._expression_and_pose(driving)
        head = self._head_matrix(pose)
        return moved, head, apply_affine(head, moved)

    def _expression_and_pose(self, driving: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The source landmarks moved by the driving expression, and the head pose to
        give the source (clamped) as (angle in radians, log scale, shift x, shift y in
        face sizes): parameters that can be averaged over frames."""
        options = self.options
        pose = fit_similarity(self._neutral[STABLE], driving[STABLE])
        unposed = apply_affine(invert_affine(pose), driving)
        linear = self._to_source[:, :2]
        expression = (unposed - self._neutral) @ linear.T
        expression[LIPS] *= self._mouth_ratio
        moved = self.landmarks + expression
        for upper, lower in EYELIDS:
            neutral_gap = np.linalg.norm(self._neutral[upper] - self._neutral[lower])
            if neutral_gap < 0.5:
                continue
            ratio = np.clip(np.linalg.norm(unposed[upper] - unposed[lower]) / neutral_gap, 0.0, 1.25)
            moved[upper] = moved[lower] + ratio * (self.landmarks[upper] - self.landmarks[lower])
        for upper, lower in INNER_LIP_PAIRS:
            gap = (moved[lower] - moved[upper]) @ self._down
            if gap < 0:  # lips never pass through each other
                middle = (moved[upper] + moved[lower]) / 2
                moved[upper] = moved[lower] = middle
        scale, angle = _scale_angle(pose)
        knee = options.clamp_knee
        angle = np.radians(_soft_clamp(np.degrees(angle), options.max_angle, knee))
        # Scale is clamped in log space: leaning in and out are alike.
        log_scale = np.log(scale)
        limit = np.log(options.max_scale) if log_scale > 0 else -np.log(options.min_scale)
        log_scale = _soft_clamp(log_scale, limit, knee)
        shift = linear @ (apply_affine(pose, self._neutral_centre[None])[0] - self._neutral_centre)
        length = np.linalg.norm(shift)
        limit = options.max_shift * self.face_size
        if length > 1e-9:
            shift = shift / length * _soft_clamp(length, limit, knee)
        return moved, np.array([angle, log_scale, *(shift / self.face_size)])

    def _head_matrix(self, pose: np.ndarray) -> np.ndarray:
        angle, log_scale = pose[:2]
        rotation = np.exp(log_scale) * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        return np.hstack([rotation, (self.centre + pose[2:] * self.face_size - rotation @ self.centre)[:, None]])

    # ----- rendering
    def render(self, driving_frame: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
        """The source animated by one driving frame (HxWx3 uint8 RGB, any size), with
        no look-ahead: what a live avatar calls per frame.

        `landmarks` (68x2, driving-frame pixels) skips the face detection. A frame
        without a face holds the last pose; before any face, the source is shown.
        """
        return self._draw(self._measure(driving_frame, landmarks))

    def render_stream(
        self, driving: Iterable[np.ndarray], landmarks: Iterable[np.ndarray | None] | None = None
    ) -> Iterator[np.ndarray]:
        """The source animated by a whole driving video, one output frame per driving
        frame, lazily; the head pose is smoothed without lag (options.pose_smoothing),
        which holds back a few driving frames (the look-ahead) in memory.
        `landmarks`, one per driving frame, skip the face detection."""
        sigma, follow = self.options.pose_smoothing, self.options.pose_follow
        reach = int(np.ceil(2 * sigma)) if sigma > 0 else 0
        pending: deque[_Motion] = deque()  # the last `reach` frames drawn, then those still to draw
        drawn = 0  # how many of `pending` are drawn

        def draw_next() -> np.ndarray:
            nonlocal drawn
            output = self._draw(pending[drawn], _smoothed_pose(pending, drawn, reach, sigma, follow))
            drawn += 1
            if drawn > reach:
                pending.popleft()
                drawn -= 1
            return output

        pairs = zip(driving, landmarks) if landmarks is not None else ((frame, None) for frame in driving)
        for frame, found in pairs:
            pending.append(self._measure(frame, found))
            if len(pending) - drawn > reach:
                yield draw_next()
        while drawn < len(pending):
            yield draw_next()

    def _measure(self, driving_frame: np.ndarray, landmarks: np.ndarray | None) -> "_Motion":
        """Everything one driving frame says, in order, short of drawing it."""
        if driving_frame.dtype != np.uint8 or driving_frame.ndim != 3 or driving_frame.shape[2] != 3:
            raise InputError(
                f"a driving frame must be an HxWx3 uint8 RGB array, got {driving_frame.dtype} {driving_frame.shape}"
            )
        found = self._driving_landmarks(driving_frame, landmarks)
        self.frames_seen += 1
        if found is None:  # no face: hold the last pose
            if self._neutral is None or self._last_raw is None:
                return _Motion(driving_frame, self._segment)
            found = self._last_raw
        if self._neutral is None:
            self._calibrate(driving_frame, found)
            self.neutral_frame = self.frames_seen - 1
            return _Motion(driving_frame, self._segment)
        if np.abs(found - self._neutral).max() < NEUTRAL_TOLERANCE:
            # The neutral frame again (the best frame, met in its place in the video):
            # the source exactly, and the filters start over from it.
            self._filter.reset(self._normalise(self._neutral))
            self._last_raw = found.copy()
            self._segment += 1
            return _Motion(driving_frame, self._segment, restart=True)
        cut = self._is_cut(found)
        if cut:
            self._segment += 1
        moved, pose = self._expression_and_pose(self._filtered(found, cut))
        return _Motion(driving_frame, self._segment, found, moved, pose, restart=cut)

    def _draw(self, motion: "_Motion", pose: np.ndarray | None = None) -> np.ndarray:
        """One output frame from a measured driving frame; `pose`, the head pose
        smoothed over neighbouring frames, moves what surrounds the face (the face itself
        keeps the measured pose and follows the driver exactly). Called in the frames'
        order: the outer field's and the gaze's filters run here."""
        if motion.restart:
            # The slow outer field starts over: after a neutral frame (drawn as the source)
            # from a still field, after a cut from the next field as it is.
            self._outer_filter.reset(np.zeros((len(self._grid), 2)) if motion.moved is None else None)
        if motion.moved is None:
            return self.source.copy()
        head = self._head_matrix(motion.pose)
        steady_head = None if pose is None else self._head_matrix(pose)
        target = apply_affine(head, motion.moved)
        gaze = self._gaze_shift(motion.frame, motion.raw, target) if self.options.gaze else None
        fill = self.options.mouth_fill and self._mouth_alpha(target) > 0
        if np.abs(target - self.landmarks).max() < 0.05 and gaze is None and not fill:
            return self.source.copy()
        out = self._warp(motion.moved, head, gaze, target, steady_head)
        if fill:
            self._fill_mouth(out, motion.frame, motion.raw, target)
        return out

    def _inner_weight(self, distance: np.ndarray) -> np.ndarray:
        """How much of the face's own field a point takes, by its distance from the face's
        hull (face sizes): all of it up to outer_margin, none past it by outer_band."""
        return 1 - _smoothstep((distance - self.options.outer_margin) / self.options.outer_band)

    def _lagging_outer_field(self, steady: np.ndarray, displacement: np.ndarray) -> np.ndarray:
        """The field outside the face (`steady`: its head pose smoothed, or as measured)
        through the slow outer filter, which never trails the face's field
        (`displacement`) by more than outer_lag: it smooths the landmarks' pixel jitter,
        but a quick head move must not tear the band between the face and its hair."""
        outer = self._outer_filter(steady / self.face_size)
        lag = outer - displacement / self.face_size
        length = np.linalg.norm(lag, axis=1, keepdims=True)
        limit = self.options.outer_lag
        if (length > limit).any():
            outer = displacement / self.face_size + lag * np.minimum(1.0, limit / np.maximum(length, 1e-12))
            self._outer_filter.hold(outer)
        return outer * self.face_size

    def _warp(self, moved: np.ndarray, head: np.ndarray, gaze, target: np.ndarray, steady_head=None) -> np.ndarray:
        """`steady_head` (2x3, or None: `head`) is the head pose for the outer field."""
        grid, weight = self._grid, self._grid_weight
        # Undo the head pose where the head is; the background stays.
        unposed = apply_affine(invert_affine(head), grid)
        if self.options.follow_head:
            weight = np.maximum(weight, self._sample_weight(unposed) * self._edge_taper)
        y = grid + weight[:, None] * (unposed - grid)
        # Undo the expression: a thin-plate spline through the moved landmarks (values:
        # where each one comes from), held at zero on a ring around the face.
        centres = np.concatenate([moved, self._anchors])
        values = np.concatenate([self.landmarks - moved, np.zeros_like(self._anchors)])
        field = thin_plate_field(centres, values, y, self.face_size, self.options.rbf_ridge)
        z = y + weight[:, None] * field
        displacement = z - grid
        steady = displacement
        if steady_head is not None:
            # A whole video: outside the face the head pose is the one smoothed without
            # lag over the neighbouring frames (only the pose part differs: the
            # expression field has died away there).
            steady = displacement + weight[:, None] * (apply_affine(invert_affine(steady_head), grid) - unposed)
        outer = self._lagging_outer_field(steady, displacement)
        inner = self._inner
        if self.options.follow_head:
            moved_distance = self._sample_weight(unposed, self._hull_distance, outside=1e3)
            inner = np.maximum(inner, self._inner_weight(moved_distance) * self._edge_taper)
        displacement = outer + inner[:, None] * (displacement - outer)
        ny, nx = self._grid_shape
        displacement = displacement.astype(np.float32).reshape(ny, nx, 2)
        left, top, right, bottom = self.region
        dense = cv2.resize(displacement, (right - left, bottom - top), interpolation=cv2.INTER_LINEAR)
        map_x = self._base[0] + dense[..., 0]
        map_y = self._base[1] + dense[..., 1]
        if gaze is not None:
            for eye, shift in gaze:
                self._move_iris(map_x, map_y, target[eye], shift)
        out = self.source.copy()
        out[top:bottom, left:right] = cv2.remap(
            self.source, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
        )
        return out

    def _gaze_shift(self, frame: np.ndarray, raw: np.ndarray, target: np.ndarray):
        """Per eye, (eye landmark indices, shift in output pixels) of the iris; None when still."""
        measured = []
        for index, eye in enumerate(EYES):
            neutral = self._gaze_neutral[index]
            position = iris_position(frame, raw[eye]) if neutral is not None else None
            measured.append(self._gaze[index] if position is None else position - neutral)
        # Both eyes look the same way: averaging halves the measurement noise.
        both = np.mean(measured, axis=0)
        self._gaze = self._gaze_filter(np.stack([both, both]))
        shifts = []
        for index, eye in enumerate(EYES):
            offset = np.clip(self._gaze[index], -self.options.max_gaze, self.options.max_gaze)
            offset[1] *= 0.5  # vertical gaze is mostly eyelid motion, which the warp already shows
            corners = target[eye[3]] - target[eye[0]]
            width = np.linalg.norm(corners)
            axis = corners / max(width, 1e-9)
            normal = np.array([-axis[1], axis[0]])
            shift = (offset[0] * axis + offset[1] * normal) * width
            if np.linalg.norm(shift) > 0.3:
                shifts.append((eye, shift))
        return shifts or None

    def _move_iris(self, map_x: np.ndarray, map_y: np.ndarray, eye: np.ndarray, shift: np.ndarray) -> None:
        left, top, _, _ = self.region
        local = eye - (left, top)
        x0, y0 = np.floor(local.min(axis=0)).astype(int) - 2
        x1, y1 = np.ceil(local.max(axis=0)).astype(int) + 3
        x0, y0 = max(x0, 0), max(y0, 0)
        x1, y1 = min(x1, map_x.shape[1]), min(y1, map_x.shape[0])
        if x1 - x0 < 3 or y1 - y0 < 3:
            return
        mask = _polygon_mask((y1 - y0, x1 - x0), local - (x0, y0))
        width = np.linalg.norm(local[3] - local[0])
        mask = cv2.erode(mask, np.ones((3, 3), np.uint8)) if width > 20 else mask
        mask = cv2.GaussianBlur(mask, (0, 0), max(0.6, 0.06 * width))
        map_x[y0:y1, x0:x1] -= shift[0] * mask
        map_y[y0:y1, x0:x1] -= shift[1] * mask

    def _mouth_alpha(self, target: np.ndarray) -> float:
        """How much of the driving mouth to show: 0 unless the mouth opens past the source's."""
        opening = polygon_area(target[INNER_LIPS])
        # A source that already shows its teeth keeps them, stretched, while its mouth
        # opens by up to 15%; then the driving mouth takes over quickly: half-way
        # blends show two sets of teeth (it took until twice the opening, and the
        # demo's smiling astronaut spent most frames with ghost teeth).
        new = opening - 1.15 * self._mouth_opening
        ramp = max(self.options.mouth_ramp * self._mouth_width**2, 0.35 * self._mouth_opening)
        return float(np.clip(new / ramp, 0.0, 1.0))

    def _driving_lip_colour(self, frame: np.ndarray, raw: np.ndarray) -> np.ndarray:
        """Mean Lab colour of the driving lips, measured in the driving frame itself: in
        the mapped patch the lip ring is only as good as the affine fit, and an open
        mouth's dark inside leaked into it (the colour shift then lit the inside up)."""
        lips = raw[OUTER_LIPS]
        height, width = frame.shape[:2]
        x0, y0 = np.maximum(np.floor(lips.min(axis=0)).astype(int) - 3, 0)
        x1, y1 = np.ceil(lips.max(axis=0)).astype(int) + 4
        x1, y1 = min(x1, width), min(y1, height)
        if x1 - x0 < 3 or y1 - y0 < 3:
            return self._lip_colour
        return self._ring_colour(_lab(frame[y0:y1, x0:x1]), raw - (x0, y0))

    def _fill_mouth(self, out: np.ndarray, frame: np.ndarray, raw: np.ndarray, target: np.ndarray) -> None:
        alpha_strength = self._mouth_alpha(target)
        height, width = out.shape[:2]
        lips = target[OUTER_LIPS]
        pad = 0.2 * self._mouth_width + 4
        x0, y0 = np.floor(lips.min(axis=0) - pad).astype(int)
        x1, y1 = np.ceil(lips.max(axis=0) + pad).astype(int)
        x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
        if x1 - x0 < 3 or y1 - y0 < 3:
            return
        # Driving lips -> target lips, as one affine map (the inner lips count double).
        weights = np.ones(len(LIPS))
        weights[INNER_LIPS - 48] = 2.0
        affine = _weighted_affine(raw[LIPS], target[LIPS] - (x0, y0), weights)
        patch = cv2.warpAffine(frame, affine, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        lab = _lab(patch)
        local = target - (x0, y0)
        driving_lips = self._driving_lip_colour(frame, raw)
        # The interior's colour follows the source's lips: lightness half way, so that
        # teeth stay bright in a dark painting; hue in proportion to each pixel's own
        # colourfulness (squared), so that the red inside of the mouth takes the
        # source's red while white teeth stay white.
        shift = (self._lip_colour - driving_lips).astype(np.float32)
        lips_chroma = max(float(np.hypot(*driving_lips[1:])), 1.0)
        share = np.clip(np.hypot(lab[..., 1], lab[..., 2]) / lips_chroma, 0, 1)[..., None] ** 2
        lab[..., :1] += 0.5 * shift[0]
        lab[..., 1:] += share * shift[1:]
        patch = np.clip(cv2.cvtColor(lab, cv2.COLOR_LAB2RGB) * 255, 0, 255)
        mask = _polygon_mask(patch.shape[:2], local[INNER_LIPS])
        # dlib's inner-lip points sit inside the dark edge of an open mouth: the opening
        # is grown past them in proportion to its height, so that the driver's dark rim
        # comes along (a slit stays a slit).
        gap = max(float((target[lower] - target[upper]) @ self._down) for upper, lower in INNER_LIP_PAIRS)
        grow = int(round(self.options.mouth_grow * max(gap, 0.0)))
        if grow >= 1:
            mask = cv2.dilate(mask, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1, 2 * grow + 1)))
        feather = max(0.7, 0.03 * self._mouth_width)
        mask = cv2.GaussianBlur(mask, (0, 0), feather) * mask  # soft inside the lip line, nothing outside
        alpha = (alpha_strength * mask)[..., None]
        region = out[y0:y1, x0:x1].astype(np.float32)
        out[y0:y1, x0:x1] = np.round(region + alpha * (patch - region)).astype(np.uint8)


@dataclass
class _Motion:
    """One driving frame as measured, waiting to be drawn. `moved` None: the source as
    it is. `segment` changes at every scene cut and neutral frame: the head pose is
    never smoothed across one. `restart`: the outer field's filter starts over when this
    frame is drawn."""

    frame: np.ndarray
    segment: int
    raw: np.ndarray | None = None
    moved: np.ndarray | None = None
    pose: np.ndarray | None = None
    restart: bool = False


def _smoothed_pose(motions: "deque[_Motion]", index: int, reach: int, sigma: float, follow: float) -> np.ndarray | None:
    """The head pose of motions[index], fitted without lag: a straight line through the
    poses of the same segment up to `reach` frames either side, Gaussian-weighted by
    distance in frames, taken at the frame itself. The weights' width is `sigma` for a
    still head and narrows as the line's slope passes `follow` (pose units a frame):
    a quick shake of the head is motion to keep, not jitter to average away (on d12,
    a fixed sigma of 1 frame doubled the self-reenactment AKD). None: nothing to smooth."""
    motion = motions[index]
    if motion.pose is None or reach == 0:
        return None
    offsets, poses = [], []
    for other in range(max(0, index - reach), min(len(motions), index + reach + 1)):
        if motions[other].segment == motion.segment and motions[other].pose is not None:
            offsets.append(other - index)
            poses.append(motions[other].pose)
    if len(poses) < 3:
        return None
    offsets = np.asarray(offsets, dtype=np.float64)
    poses = np.asarray(poses)
    basis = np.stack([np.ones_like(offsets), offsets], axis=1)

    def line(width: float) -> np.ndarray:
        weighted = basis * np.exp(-0.5 * (offsets / width) ** 2)[:, None]
        return np.linalg.solve(weighted.T @ basis + 1e-9 * np.eye(2), weighted.T @ poses)

    slope = float(np.linalg.norm(line(sigma)[1]))
    width = sigma / (1 + (slope / follow) ** 2) if follow > 0 else sigma
    return line(max(width, 0.3))[0]


def _tps_kernel(squared: np.ndarray) -> np.ndarray:
    """r^2 log r of squared distances r^2 (0 at 0)."""
    return 0.5 * squared * np.log(np.maximum(squared, 1e-12))


def thin_plate_field(
    centres: np.ndarray, values: np.ndarray, points: np.ndarray, scale: float, ridge: float = 1e-3
) -> np.ndarray:
    """The thin-plate spline through (`centres`, `values`), evaluated at `points`.

    Coordinates are divided by `scale` (the face size) so that `ridge`, the
    smoothing that keeps near-coincident centres (closed lips) harmless, means the
    same at every resolution. Returns float32 (len(points), values' width).
    """
    n = len(centres)
    c = centres / scale
    squared = ((c[:, None, :] - c[None, :, :]) ** 2).sum(-1)
    system = np.zeros((n + 3, n + 3))
    system[:n, :n] = _tps_kernel(squared) + ridge * np.eye(n)
    system[:n, n] = system[n, :n] = 1
    system[:n, n + 1 :] = c
    system[n + 1 :, :n] = c.T
    rhs = np.zeros((n + 3, values.shape[1]))
    rhs[:n] = values
    solution = np.linalg.solve(system, rhs).astype(np.float32)
    p = (points / scale).astype(np.float32)
    c32 = c.astype(np.float32)
    # Element-wise, not a matrix product: BLAS is slow for an inner size of 2.
    d2 = np.square(p[:, 0, None] - c32[None, :, 0])
    d2 += np.square(p[:, 1, None] - c32[None, :, 1])
    field = _tps_kernel(d2) @ solution[:n]
    field += solution[n] + p[:, :1] * solution[n + 1] + p[:, 1:] * solution[n + 2]
    return field


def _weighted_affine(source: np.ndarray, target: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The 2x3 affine map taking `source` points to `target` in weighted least squares."""
    homogeneous = np.hstack([source, np.ones((len(source), 1))]) * weights[:, None]
    solution, *_ = np.linalg.lstsq(homogeneous, target * weights[:, None], rcond=None)
    return solution.T


def _same_face(faces: list[TrackedFace], followed: int | None) -> TrackedFace | None:
    for face in faces:
        if face.track_id == followed:
            return face
    return max(faces, key=lambda face: face.box.area, default=None)


class PortraitAnimator:
    """The `portrait` model; implements the Animator protocol of fakelab.animation.api.

    `size` None (the default) works at every frame's own size: the source at its
    native resolution, driving frames as they come. A (width, height) `size`
    instead checks that frames have it (as the evaluation protocols use it).
    """

    name = "portrait"

    def __init__(
        self,
        size: tuple[int, int] | None = None,
        options: PortraitOptions | None = None,
        detector: str | None = None,
        fps: float = 25.0,
    ):
        self.size = None if size is None else tuple(size)
        self.options = options or PortraitOptions()
        self.detector = detector
        self.fps = fps

    def prepare(self, source: np.ndarray, landmarks: np.ndarray | None = None) -> PreparedPortrait:
        """Landmarks, grids and weights of one source, once per avatar."""
        self._check_frame(source, "the source image")
        if landmarks is None:
            landmarks = largest_face(source, "the source image", self.detector)
        return PreparedPortrait(source, landmarks, self.options, self.detector, self.fps)

    def animate(
        self, source: np.ndarray, driving: Iterable[np.ndarray], initial: np.ndarray | None = None
    ) -> Iterator[np.ndarray]:
        """One output frame per driving frame, lazily, at the source's size.

        Motion is relative to `initial` when given, else to the first driving frame
        with a face. Raises NoFaceError if the source has no face.
        """
        portrait = self.prepare(source)
        return self._frames(portrait, driving, initial)

    def _frames(self, portrait: PreparedPortrait, driving, initial) -> Iterator[np.ndarray]:
        if initial is not None:
            portrait.recalibrate(initial)
        yield from portrait.render_stream(self._checked(driving))

    def _checked(self, driving: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        for frame in driving:
            self._check_frame(frame, "a driving frame")
            yield frame

    def _check_frame(self, frame: np.ndarray, what: str) -> None:
        if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
            raise InputError(f"{what} must be an HxWx3 uint8 RGB array")
        if self.size is not None and (frame.shape[1], frame.shape[0]) != self.size:
            width, height = self.size
            raise InputError(
                f"{what} must be a {height}x{width}x3 uint8 RGB array, got {'x'.join(map(str, frame.shape))}"
            )
