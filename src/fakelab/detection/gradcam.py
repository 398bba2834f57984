"""Where a detector looked: its attention map when it has one (EfficientNet-B4 with the
attention gate of Bonettini et al.), Grad-CAM (Selvaraju et al., ICCV 2017) otherwise.

Grad-CAM weighs each channel of the detector's `cam_layer()` activations by the mean
gradient of the fake logit with respect to it, sums them and keeps the positive part:
the regions whose activation pushes the face towards "fake".
"""

from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np
import torch
import torch.nn.functional as F

from fakelab.detection.efficientnet import EfficientNetDetector
from fakelab.detection.pipeline import detector_device
from fakelab.detection.spec import DeepfakeDetector


def grad_cam(detector: DeepfakeDetector, images: torch.Tensor) -> torch.Tensor:
    """(N, h, w) Grad-CAM maps of a normalised batch, each scaled to [0, 1]."""
    captured: dict[str, torch.Tensor] = {}

    def keep(module, inputs, output):
        output.retain_grad()
        captured["activation"] = output

    handle = detector.cam_layer().register_forward_hook(keep)
    try:
        with torch.enable_grad():
            images = images.detach().requires_grad_(True)
            detector.fake_logit(images).sum().backward()
    finally:
        handle.remove()
    activation = captured["activation"]
    weights = activation.grad.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * activation).sum(dim=1)).detach()
    return _unit_range(cam)


def has_attention(detector: DeepfakeDetector) -> bool:
    return isinstance(detector, EfficientNetDetector) and detector.efficientnet.attention_block is not None


def heatmap_kind(detector: DeepfakeDetector) -> str:
    return "attention map" if has_attention(detector) else "Grad-CAM"


def attention_map(detector: DeepfakeDetector, images: torch.Tensor) -> torch.Tensor | None:
    """(N, h, w) attention of a detector with an attention gate, None for the others."""
    if not has_attention(detector):
        return None
    with torch.inference_mode():
        attention = detector.forward_with_attention(images)[1]
    return _unit_range(attention[:, 0].clone())


def _unit_range(maps: torch.Tensor) -> torch.Tensor:
    low = maps.amin(dim=(1, 2), keepdim=True)
    span = maps.amax(dim=(1, 2), keepdim=True) - low
    return torch.where(span > 0, (maps - low) / span.clamp_min(1e-12), torch.zeros_like(maps))


def heatmaps(detector: DeepfakeDetector, face_crops: Sequence[np.ndarray]) -> list[np.ndarray]:
    """One float32 map in [0, 1] per uint8 RGB crop, at the crop's size: the attention map
    when the detector has one, else Grad-CAM. The detector is left as it was found."""
    was_training = detector.training
    detector.eval()
    try:
        batch = detector.input_spec.prepare(face_crops).to(detector_device(detector))
        maps = attention_map(detector, batch)
        if maps is None:
            maps = grad_cam(detector, batch)
    finally:
        detector.train(was_training)
        detector.zero_grad(set_to_none=True)
    return [
        cv2.resize(m, (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_LINEAR)
        for m, crop in zip(maps.float().cpu().numpy(), face_crops)
    ]


def overlay(crop: np.ndarray, heatmap: np.ndarray, opacity: float = 0.45) -> np.ndarray:
    """The crop with the heatmap laid over it in the jet colours (red: looked at most)."""
    colours = cv2.applyColorMap(np.round(heatmap * 255).astype(np.uint8), cv2.COLORMAP_JET)[:, :, ::-1]
    mixed = crop.astype(np.float32) * (1 - opacity) + colours.astype(np.float32) * opacity
    return np.clip(np.rint(mixed), 0, 255).astype(np.uint8)
