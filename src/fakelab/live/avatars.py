"""Avatar models for live use: prepare each source image once, then render one driving frame at a time.

An `AvatarModel` has the shape of the training-free portrait animator's live
interface: `prepare(source)` does everything that depends on the source alone
(landmarks, meshes, keypoints, encoder features) and returns a `PreparedAvatar`,
whose `render(driving, landmarks)` gives one output frame and whose
`recalibrate(driving, landmarks)` makes a driving frame the initial (neutral)
one of relative motion. `landmarks` (68x2, driving-frame pixels) come from the
live face tracker, so a model that uses them need not detect faces again.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from fakelab.errors import FakelabError, NoFaceError

LIVE_MODELS = ("portrait", "landmark-warp", "fomm")


class PreparedAvatar(Protocol):
    def render(self, driving: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray: ...

    def recalibrate(self, driving: np.ndarray, landmarks: np.ndarray | None = None) -> None: ...


class AvatarModel(Protocol):
    size: tuple[int, int]  # (width, height) of the source, driving and output frames
    name: str

    def prepare(self, source: np.ndarray) -> PreparedAvatar: ...


class LandmarkWarpAvatars:
    """The landmark-warp model (fakelab.animation.landmark_warp), one frame at a time."""

    name = "landmark-warp"

    def __init__(self, size: tuple[int, int] = (256, 256), relative: bool = True, adapt_scale: bool = True):
        self.size = tuple(size)
        self.relative = relative
        self.adapt_scale = adapt_scale

    def prepare(self, source: np.ndarray) -> PreparedLandmarkWarp:
        from fakelab.animation.landmark_warp import LandmarkWarper
        from fakelab.faces.landmarks import largest_face

        return PreparedLandmarkWarp(LandmarkWarper(source, largest_face(source, "the avatar image")), self)


class PreparedLandmarkWarp:
    def __init__(self, warper, model: LandmarkWarpAvatars):
        self.warper = warper
        self.model = model
        self.initial: np.ndarray | None = None
        self.last = warper.image

    def recalibrate(self, driving: np.ndarray, landmarks: np.ndarray | None = None) -> None:
        landmarks = _landmarks_of(driving, landmarks)
        if landmarks is not None:
            self.initial = landmarks

    def render(self, driving: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
        """The source moved as the driving face moved since the initial frame; without a face, the last output."""
        from fakelab.animation.landmark_warp import transfer_motion

        landmarks = _landmarks_of(driving, landmarks)
        if landmarks is None:
            return self.last
        if self.initial is None:
            self.initial = landmarks
        target = transfer_motion(
            self.warper.landmarks, landmarks, self.initial, self.model.adapt_scale, self.model.relative
        )
        self.last = self.warper(target)
        return self.last


class FommAvatars:
    """The First Order Motion Model, its source keypoints and encoder features computed once per avatar."""

    name = "fomm"

    def __init__(self, animator):
        """`animator`: a fakelab.animation.engine.FommAnimator (networks, motion transfer mode, device)."""
        self.animator = animator
        self.size = tuple(animator.size)

    @classmethod
    def from_checkpoint(cls, checkpoint, config="vox-256", device="cpu", relative=True, adapt_scale=True):
        from fakelab.animation.api import fomm_animator

        return cls(fomm_animator(checkpoint, config, relative, adapt_scale, device, batch_size=1))

    @classmethod
    def random_weights(cls, config="vox-256", device="cpu", seed=0):
        """The architecture of `config` with random weights: for speed measurements only."""
        from fakelab.animation.api import resolve_device
        from fakelab.animation.config import load_config
        from fakelab.animation.engine import FommAnimator
        from fakelab.animation.networks import FommNetworks

        torch.manual_seed(seed)
        return cls(FommAnimator(FommNetworks(load_config(config)), device=resolve_device(device), batch_size=1))

    @torch.inference_mode()
    def prepare(self, source: np.ndarray) -> PreparedFomm:
        from fakelab.animation.engine import frames_to_tensor

        networks, device = self.animator.networks, self.animator.device
        tensor = frames_to_tensor([source], device)
        kp_source = networks.kp_detector(tensor)
        return PreparedFomm(self, kp_source, networks.generator.prepare(tensor, kp_source))


class PreparedFomm:
    def __init__(self, model: FommAvatars, kp_source, prepared):
        self.model = model
        self.kp_source = kp_source
        self.prepared = prepared
        self.transfer = None

    @torch.inference_mode()
    def _keypoints(self, driving: np.ndarray):
        from fakelab.animation.engine import frames_to_tensor

        animator = self.model.animator
        return animator.networks.kp_detector(frames_to_tensor([driving], animator.device))

    def recalibrate(self, driving: np.ndarray, landmarks: np.ndarray | None = None) -> None:
        from fakelab.animation.motion import KeypointTransfer

        self.transfer = KeypointTransfer(self.model.animator.motion, self.kp_source, self._keypoints(driving))

    @torch.inference_mode()
    def render(self, driving: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
        from fakelab.animation.engine import tensor_to_frames
        from fakelab.animation.motion import KeypointTransfer

        kp_driving = self._keypoints(driving)
        if self.transfer is None:
            self.transfer = KeypointTransfer(self.model.animator.motion, self.kp_source, kp_driving)
        generator = self.model.animator.networks.generator
        return tensor_to_frames(generator.render(self.prepared, self.transfer(kp_driving))["prediction"])[0]


def _landmarks_of(frame: np.ndarray, landmarks: np.ndarray | None) -> np.ndarray | None:
    if landmarks is not None:
        return landmarks
    from fakelab.faces.landmarks import largest_face

    try:
        return largest_face(frame, "the driving frame")
    except NoFaceError:
        return None


def portrait_avatars(size: tuple[int, int] = (256, 256), fps: float = 25.0) -> AvatarModel:
    """The training-free portrait animator (fakelab.animation.portrait): its `prepare` already gives live avatars."""
    from fakelab.animation.portrait import PortraitAnimator

    return PortraitAnimator(size=size, fps=fps)


def build_avatar_model(
    model: str | None = None,
    checkpoint=None,
    config="vox-256",
    device: str = "cpu",
    relative: bool = True,
    adapt_scale: bool = True,
    fps: float = 25.0,
) -> AvatarModel:
    """A live avatar model by name: portrait (training-free, the default), landmark-warp, or fomm
    (needs a checkpoint). `fps`, the camera's, sets the portrait model's landmark smoothing."""
    model = model or "portrait"
    if model == "portrait":
        return portrait_avatars(fps=fps)
    if model == "landmark-warp":
        return LandmarkWarpAvatars(relative=relative, adapt_scale=adapt_scale)
    if model == "fomm":
        if checkpoint is None:
            raise FakelabError("the fomm model needs --checkpoint (or use a training-free model: portrait, landmark-warp)")
        return FommAvatars.from_checkpoint(checkpoint, config, device, relative, adapt_scale)
    raise FakelabError(f"unknown model '{model}': use one of {', '.join(LIVE_MODELS)}")
