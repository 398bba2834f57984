"""The image transformations that Expectation over Transformation averages over.

They stand for what happens to a frame between the attack and the detector: compression
(blur, downscale-upscale, JPEG), sensor-like noise, and a face crop that lands a few pixels
off. Each one is differentiable and maps (N, 3, H, W) images in [0, 1] to the same shape.
A sampled transform is fixed: calling it twice gives the same result, which lets the
two halves of an antithetic NES pair see the same transformation.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fakelab.attacks.jpeg import jpeg_approximation
from fakelab.errors import ConfigError
from fakelab.video import VideoWriter, iter_frames


TRANSFORM_KINDS = ("identity", "noise", "blur", "translate", "rescale", "jpeg", "h264")


@dataclass(frozen=True)
class TransformRanges:
    """The distribution EOT samples from: each of `kinds` is equally likely."""

    kinds: tuple[str, ...] = TRANSFORM_KINDS
    noise_std: tuple[float, float] = (0.005, 0.03)
    blur_sigma: tuple[float, float] = (0.4, 1.6)  # pixels of the attacked crop
    max_shift: float = 0.03  # of the crop's side
    downscale: tuple[float, float] = (0.3, 0.9)
    jpeg_quality: tuple[float, float] = (40.0, 90.0)
    # Real H.264 (an intra frame, as fakelab's writer encodes it), with the gradient
    # passed straight through. Above the target CRF, as frames between key frames
    # are quantised more coarsely.
    h264_crf: tuple[int, int] = (20, 30)

    def __post_init__(self) -> None:
        unknown = set(self.kinds) - set(TRANSFORM_KINDS)
        if unknown or not self.kinds:
            raise ConfigError(f"EOT transformations are among {', '.join(TRANSFORM_KINDS)}; got {', '.join(self.kinds)}")


@dataclass(frozen=True)
class Identity:
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return images


@dataclass(frozen=True)
class GaussianNoise:
    std: float
    seed: int

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        # One noise image for the whole batch: a transformation is one realization, so the
        # two halves of an NES antithetic pair see the same noise and their difference
        # measures the probe, not the noise.
        generator = torch.Generator().manual_seed(self.seed)
        noise = torch.randn(images.shape[-3:], generator=generator).to(images)
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


@dataclass(frozen=True)
class H264:
    """The images as fakelab's H.264 writer and reader give them back, with the macroblock
    grid shifted by (dx, dy) pixels; the gradient passes straight through (BPDA, Athalye
    et al. 2018), as the codec has none."""

    crf: int
    dx: int = 0
    dy: int = 0

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            coded = torch.stack([self._round_trip(image) for image in images]).to(images)
        return images + (coded - images).detach()

    def _round_trip(self, image: torch.Tensor) -> torch.Tensor:
        pixels = (image.detach().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
        shifted = np.pad(pixels, ((self.dy, 0), (self.dx, 0), (0, 0)), mode="edge")
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "frame.mp4"
            with VideoWriter(path, 25, crf=self.crf) as writer:
                writer.write(shifted)
            decoded = next(iter_frames(path))
        height, width = pixels.shape[:2]
        crop = decoded[self.dy : self.dy + height, self.dx : self.dx + width]
        return torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1).float() / 255


Transform = Identity | GaussianNoise | GaussianBlur | Translate | Rescale | Jpeg | H264
# The macroblock size of H.264: shifts beyond it give the same grid.
MACROBLOCK = 16


def sample_transform(ranges: TransformRanges, side: int, rng: np.random.Generator) -> Transform:
    """One transform for crops of `side` pixels."""
    kind = ranges.kinds[rng.integers(len(ranges.kinds))]
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
    if kind == "h264":
        low, high = ranges.h264_crf
        return H264(int(rng.integers(low, high + 1)), *(int(v) for v in rng.integers(0, MACROBLOCK, size=2)))
    return Identity()
