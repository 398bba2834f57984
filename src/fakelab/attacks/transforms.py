"""The image transformations that Expectation over Transformation averages over.

They stand for what happens to a frame between the attack and the detector: compression
(blur, downscale-upscale, JPEG), sensor-like noise, and a face crop that lands a few pixels
off. Each one is differentiable and maps (N, 3, H, W) images in [0, 1] to the same shape.
A sampled transform is fixed: calling it twice gives the same result, which lets the
two halves of an antithetic NES pair see the same transformation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fakelab.attacks.jpeg import jpeg_approximation


@dataclass(frozen=True)
class TransformRanges:
    """The distribution EOT samples from; each kind (and the identity) is equally likely."""

    noise_std: tuple[float, float] = (0.005, 0.03)
    blur_sigma: tuple[float, float] = (0.4, 1.6)  # pixels of the attacked crop
    max_shift: float = 0.03  # of the crop's side
    downscale: tuple[float, float] = (0.3, 0.9)
    jpeg_quality: tuple[float, float] = (40.0, 90.0)


@dataclass(frozen=True)
class Identity:
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return images


@dataclass(frozen=True)
class GaussianNoise:
    std: float
    seed: int

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed)
        noise = torch.randn(images.shape, generator=generator).to(images)
        return images + self.std * noise


@dataclass(frozen=True)
class GaussianBlur:
    sigma: float

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        radius = max(1, math.ceil(3 * self.sigma))
        taps = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
        kernel = torch.exp(-(taps**2) / (2 * self.sigma**2))
        kernel = (kernel / kernel.sum()).repeat(3, 1)
        padded = F.pad(images, (radius, radius, radius, radius), mode="replicate")
        rows = F.conv2d(padded, kernel.view(3, 1, 1, -1), groups=3)
        return F.conv2d(rows, kernel.view(3, 1, -1, 1), groups=3)


@dataclass(frozen=True)
class Translate:
    dx: int
    dy: int

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        pad = max(abs(self.dx), abs(self.dy))
        padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")
        top, left = pad - self.dy, pad - self.dx
        return padded[..., top : top + height, left : left + width]


@dataclass(frozen=True)
class Rescale:
    """Downscale by `factor`, then back up: the detail a smaller encode would lose."""

    factor: float

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        height, width = images.shape[-2:]
        small = (max(1, round(height * self.factor)), max(1, round(width * self.factor)))
        down = F.interpolate(images, size=small, mode="bilinear", antialias=True, align_corners=False)
        return F.interpolate(down, size=(height, width), mode="bilinear", align_corners=False)


@dataclass(frozen=True)
class Jpeg:
    quality: float

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return jpeg_approximation(images, self.quality)


Transform = Identity | GaussianNoise | GaussianBlur | Translate | Rescale | Jpeg
TRANSFORM_KINDS = ("identity", "noise", "blur", "translate", "rescale", "jpeg")


def sample_transform(ranges: TransformRanges, side: int, rng: np.random.Generator) -> Transform:
    """One transform for crops of `side` pixels."""
    kind = TRANSFORM_KINDS[rng.integers(len(TRANSFORM_KINDS))]
    if kind == "noise":
        return GaussianNoise(float(rng.uniform(*ranges.noise_std)), int(rng.integers(2**31)))
    if kind == "blur":
        return GaussianBlur(float(rng.uniform(*ranges.blur_sigma)))
    if kind == "translate":
        reach = max(1, round(ranges.max_shift * side))
        return Translate(*(int(v) for v in rng.integers(-reach, reach + 1, size=2)))
    if kind == "rescale":
        return Rescale(float(rng.uniform(*ranges.downscale)))
    if kind == "jpeg":
        return Jpeg(float(rng.uniform(*ranges.jpeg_quality)))
    return Identity()
