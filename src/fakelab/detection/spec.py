"""What every detector carries: its input convention and a fake log-odds output."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from fakelab.errors import InputError

RGB = tuple[float, float, float]

IMAGENET_MEAN: RGB = (0.485, 0.456, 0.406)
IMAGENET_STD: RGB = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class InputSpec:
    """Square input side and the per-channel normalisation a model was trained with.

    `mean` and `std` apply to RGB values in [0, 1].
    """

    size: int
    mean: RGB
    std: RGB

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) RGB in [0, 1] -> the model's input scale."""
        mean = images.new_tensor(self.mean).view(1, 3, 1, 1)
        std = images.new_tensor(self.std).view(1, 3, 1, 1)
        return (images - mean) / std

    def prepare(self, images: Sequence[np.ndarray]) -> torch.Tensor:
        """uint8 RGB images (H, W, 3) of any size -> a normalised (N, 3, size, size) batch.

        Each image is centre-cropped to a square first, so nothing is stretched.
        """
        return torch.cat([self._prepare_one(image) for image in images])

    def _prepare_one(self, image: np.ndarray) -> torch.Tensor:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise InputError(f"expected a uint8 RGB image of shape (H, W, 3), got {image.dtype} {image.shape}")
        height, width = image.shape[:2]
        side = min(height, width)
        top, left = (height - side) // 2, (width - side) // 2
        square = np.ascontiguousarray(image[top : top + side, left : left + side])
        batch = torch.from_numpy(square).permute(2, 0, 1)[None].float() / 255.0
        if side != self.size:
            batch = F.interpolate(
                batch, size=(self.size, self.size), mode="bilinear", antialias=True, align_corners=False
            ).clamp_(0.0, 1.0)
        return self.normalize(batch)


class DeepfakeDetector(nn.Module, abc.ABC):
    """A face-crop classifier; `fake_logit` is the log-odds that the face is manipulated.

    Subclasses set `arch` (the registry name) and `input_spec`, so callers never guess
    the input size or normalisation.
    """

    arch: str
    input_spec: InputSpec

    @abc.abstractmethod
    def fake_logit(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) normalised images -> (N,) fake log-odds."""

    @abc.abstractmethod
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) normalised images -> (N, D) the pooled features the head classifies."""

    @abc.abstractmethod
    def classify(self, embedding: torch.Tensor) -> torch.Tensor:
        """(N, D) features from `embed` -> (N,) fake log-odds; classify(embed(x)) == fake_logit(x)."""

    @abc.abstractmethod
    def cam_layer(self) -> nn.Module:
        """The layer whose activations Grad-CAM weighs for a heatmap."""

    def conv_norm_pairs(self) -> Iterator[tuple[nn.Module, str, str]]:
        """(owner, convolution name, batch-norm name) for each convolution whose output goes
        straight into a batch norm, which inference can fold into it; none by default."""
        return iter(())


def fold_batch_norms(detector: DeepfakeDetector) -> DeepfakeDetector:
    """Fold each batch norm that follows a convolution into it, in place, for inference: the
    same outputs (to float rounding) from one operation fewer per layer. Needs eval mode,
    whose frozen statistics are what gets folded; the detector can no longer be trained."""
    if detector.training:
        raise InputError("batch norms can only be folded in eval mode")
    for owner, conv_name, norm_name in list(detector.conv_norm_pairs()):
        conv, norm = getattr(owner, conv_name), getattr(owner, norm_name)
        setattr(owner, conv_name, fuse_conv_bn_eval(conv, norm))
        setattr(owner, norm_name, nn.Identity())
    return detector
