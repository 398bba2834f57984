"""Streaming FOMM inference: source work once, driving frames in batches, constant memory."""

from __future__ import annotations

from itertools import islice
from typing import Callable, Iterable, Iterator

import numpy as np
import torch

from fakelab.animation.fomm import Keypoints
from fakelab.animation.motion import KeypointTransfer, MotionTransfer
from fakelab.animation.networks import FommNetworks
from fakelab.animation.render import RenderState, exportable, state_names


def frames_to_tensor(frames: list[np.ndarray], device: torch.device) -> torch.Tensor:
    """HxWx3 uint8 frames to a (B,3,H,W) float batch in [0, 1]."""
    batch = torch.from_numpy(np.stack(frames)).to(device)
    return batch.permute(0, 3, 1, 2).float().div_(255)


def tensor_to_frames(batch: torch.Tensor) -> list[np.ndarray]:
    """(B,3,H,W) floats in [0, 1] to HxWx3 uint8 frames."""
    scaled = batch.clamp(0, 1).mul(255).round_().to(torch.uint8)
    return list(scaled.permute(0, 2, 3, 1).cpu().numpy())


def default_batch_size(device: torch.device) -> int:
    """Driving frames per batch of the plain torch path (`animate_tensors`): 8 on a GPU, 1 on
    CPU. `animate` runs the calibrated plan's batch size instead (see fakelab.animation.calibrate)."""
    return 8 if device.type == "cuda" else 1


def batched(items: Iterable, size: int) -> Iterator[list]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


class FommAnimator:
    """Animates a source image with a stream of driving frames (the `Animator` protocol).

    Everything that depends only on the source (its keypoints, encoder features,
    Gaussians and grids) is computed once; driving frames run in batches.

    `animate` runs the per-frame render the way a `RenderPlan` says (backend, threads,
    batch size, channels-last, precision): `backend="auto"` (default) takes the plan this
    machine's calibration chose (measured once, cached; see fakelab.animation.calibrate),
    the other arguments override parts of it. `animate_tensors` always runs the torch
    modules themselves, with every intermediate output on request.
    """

    def __init__(
        self,
        networks: FommNetworks,
        motion: MotionTransfer = MotionTransfer(),
        device: str | torch.device = "cpu",
        batch_size: int | None = None,
        backend: str = "auto",
        threads: int | None = None,
        channels_last: bool | None = None,
        precision: str | None = None,
        compile: bool | None = None,
        log: Callable[[str], None] | None = None,
    ):
        self.device = torch.device(device)
        self.networks = networks.to(self.device).eval()
        self.motion = motion
        self.requested = dict(
            backend=backend, threads=threads, batch_size=batch_size, channels_last=channels_last,
            precision=precision, compile=compile,
        )
        from fakelab.animation.calibrate import check_request

        check_request(self.requested, self.device)
        self.batch_size = batch_size or default_batch_size(self.device)
        self.size = networks.config.image_size
        self.log = log or (lambda message: None)
        self._plan = None
        self._backend = None

    @property
    def plan(self):
        """The render plan `animate` follows (calibrates on first use unless fully given)."""
        if self._plan is None:
            from fakelab.animation.calibrate import RenderPlan, check_plan, choose_plan

            if not exportable(self.networks):  # the plain modules are the only backend
                plan = RenderPlan(threads=torch.get_num_threads(), batch_size=self.batch_size)
                self._plan = check_plan(plan, self.device)
            else:
                self._plan = choose_plan(self.networks, self.motion, self.device, self.requested, self.log)
        return self._plan

    def render_backend(self):
        if self._backend is None:
            from fakelab.animation.calibrate import build_backend

            self._backend = build_backend(self.plan, self.networks, self.motion)
        return self._backend

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
        plan = self.plan
        driving_batches = (frames_to_tensor(chunk, self.device) for chunk in batched(driving, plan.batch_size))
        if not exportable(self.networks):
            for out in self.animate_tensors(source_batch, driving_batches):
                yield from tensor_to_frames(out["prediction"])
            return
        for prediction in self.render_tensors(source_batch, driving_batches):
            yield from tensor_to_frames(prediction)

    def render_tensors(self, source: torch.Tensor, driving_batches: Iterable[torch.Tensor]) -> Iterator[torch.Tensor]:
        """Predictions for each (B,3,H,W) driving batch, by the plan's backend.

        The source is prepared once by the torch modules; the first driving frame sets the
        transfer's constants (initial keypoints, movement scale); then each batch is one
        call of the per-frame graph.
        """
        backend = self.render_backend()
        state = None
        for batch in driving_batches:
            if state is None:
                state = self._render_state(source, batch[:1])
            yield backend(batch, state)

    @torch.inference_mode()
    def _render_state(self, source: torch.Tensor, first_driving: torch.Tensor) -> RenderState:
        kp_detector, generator = self.networks.kp_detector, self.networks.generator
        source = source.to(self.device)
        kp_source = kp_detector(source)
        prepared = generator.prepare(source, kp_source)
        kp_initial = kp_detector(first_driving.to(self.device)) if self.motion.relative else None
        transfer = KeypointTransfer(self.motion, kp_source, kp_initial)
        return RenderState.build(prepared, transfer, state_names(self.networks, self.motion))


def _first(kp: Keypoints) -> Keypoints:
    return Keypoints(kp.value[:1], None if kp.jacobian is None else kp.jacobian[:1])
