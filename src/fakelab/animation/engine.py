"""Streaming FOMM inference: source work once, driving frames in batches, constant memory."""

from __future__ import annotations

from itertools import islice
from typing import Iterable, Iterator

import numpy as np
import torch

from fakelab.animation.fomm import Keypoints
from fakelab.animation.motion import KeypointTransfer, MotionTransfer
from fakelab.animation.networks import FommNetworks


def frames_to_tensor(frames: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """HxWx3 uint8 frames to a (B,3,H,W) float batch in [0, 1]."""
    batch = torch.from_numpy(np.stack(frames)).to(device)
    return batch.permute(0, 3, 1, 2).float().div_(255)


def tensor_to_frames(batch: torch.Tensor) -> list[np.ndarray]:
    """(B,3,H,W) floats in [0, 1] to HxWx3 uint8 frames."""
    scaled = batch.clamp(0, 1).mul(255).round_().to(torch.uint8)
    return list(scaled.permute(0, 2, 3, 1).cpu().numpy())


def default_batch_size(device: torch.device) -> int:
    """Driving frames per batch: 8 on a GPU; 1 on CPU, where batches only add memory traffic
    (bench/animate_speed.py, 2 cores: 3.45 fps at batch 1, 3.23 at 2, 2.50 at 8)."""
    return 8 if device.type == "cuda" else 1


def batched(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


class FommAnimator:
    """Animates a source image with a stream of driving frames (the `Animator` protocol).

    Everything that depends only on the source (its keypoints, encoder features,
    Gaussians and grids) is computed once; driving frames run in batches.
    """

    def __init__(
        self,
        networks: FommNetworks,
        motion: MotionTransfer = MotionTransfer(),
        device: str | torch.device = "cpu",
        batch_size: int | None = None,
    ):
        self.device = torch.device(device)
        self.networks = networks.to(self.device).eval()
        self.motion = motion
        self.batch_size = batch_size or default_batch_size(self.device)
        self.size = networks.config.image_size

    @torch.inference_mode()
    def animate_tensors(
        self, source: torch.Tensor, driving_batches: Iterable[torch.Tensor], with_details: bool = False
    ) -> Iterator[dict]:
        """Yield the generator's outputs for each (B,3,H,W) driving batch.

        The first driving frame is the initial frame of relative motion. With
        `with_details`, outputs also hold `deformed` and the keypoints.
        """
        kp_detector, generator = self.networks.kp_detector, self.networks.generator
        source = source.to(self.device)
        kp_source = kp_detector(source)
        prepared = generator.prepare(source, kp_source)
        transfer = None
        for batch in driving_batches:
            kp_driving = kp_detector(batch.to(self.device))
            if transfer is None:
                transfer = KeypointTransfer(self.motion, kp_source, _first(kp_driving))
            kp_norm = transfer(kp_driving)
            out = generator.render(prepared, kp_norm, with_deformed=with_details)
            if with_details:
                out.update(kp_source=kp_source, kp_driving=kp_driving, kp_norm=kp_norm)
            yield out

    def animate(self, source: np.ndarray, driving: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        source_batch = frames_to_tensor([source], self.device)
        driving_batches = (frames_to_tensor(chunk, self.device) for chunk in batched(driving, self.batch_size))
        for out in self.animate_tensors(source_batch, driving_batches):
            yield from tensor_to_frames(out["prediction"])


def _first(kp: Keypoints) -> Keypoints:
    return Keypoints(kp.value[:1], None if kp.jacobian is None else kp.jacobian[:1])
