"""A differentiable approximation of baseline JPEG, after Shin & Song, "JPEG-resistant
Adversarial Images" (NIPS 2017 workshop on machine learning and computer security).

The pipeline is libjpeg's at 4:2:0: full-range YCbCr, 2x2 averaged chroma, 8x8 DCT,
quantisation with the standard tables scaled by the quality factor, and on decoding a
triangle-filter ("fancy") chroma upsampling, which is bilinear interpolation at scale 2.
Rounding to integers has no gradient, so the quantised coefficients are rounded with
round(x) + (x - round(x))^3, which has the same value at integers and a gradient elsewhere.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

BLOCK = 8
# A 4:2:0 minimum coded unit covers 16x16 pixels; images are padded to it by repeating
# their last row and column, as libjpeg does.
MCU = 16

# Annex K of ITU-T T.81: the tables for quality 50.
LUMINANCE_TABLE = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
CHROMINANCE_TABLE = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
    *((99,) * 8 for _ in range(4)),
)

# JFIF's full-range conversion; the chroma offset of 128 is applied separately.
RGB_TO_YCBCR = (
    (0.299, 0.587, 0.114),
    (-0.168736, -0.331264, 0.5),
    (0.5, -0.418688, -0.081312),
)


def quantisation_table(base: tuple[tuple[int, ...], ...], quality: float) -> torch.Tensor:
    """libjpeg's scaling of a quality-50 table to `quality` (1..100)."""
    quality = min(max(float(quality), 1.0), 100.0)
    scale = 5000.0 / quality if quality < 50 else 200.0 - 2.0 * quality
    table = torch.tensor(base, dtype=torch.float32)
    return torch.floor((table * scale + 50.0) / 100.0).clamp(1.0, 255.0)


def dct_matrix() -> torch.Tensor:
    """The orthonormal 8-point DCT-II, which is JPEG's transform: coefficients = D @ block @ D.T."""
    k = torch.arange(BLOCK, dtype=torch.float64)[:, None]
    n = torch.arange(BLOCK, dtype=torch.float64)[None, :]
    matrix = torch.cos((2 * n + 1) * k * math.pi / (2 * BLOCK)) * math.sqrt(2 / BLOCK)
    matrix[0] /= math.sqrt(2)
    return matrix.float()


def soft_round(x: torch.Tensor) -> torch.Tensor:
    """round(x) in value, with the gradient 3 (x - round(x))^2 instead of zero."""
    rounded = torch.round(x)
    return rounded + (x - rounded) ** 3


def jpeg_approximation(
    images: torch.Tensor,
    quality: float,
    rounding: Callable[[torch.Tensor], torch.Tensor] = soft_round,
) -> torch.Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> the same images as JPEG at `quality` would decode them.

    `rounding=torch.round` gives the exact quantisation, without a gradient.
    """
    height, width = images.shape[-2:]
    padded = F.pad(images, (0, -width % MCU, 0, -height % MCU), mode="replicate")
    ycbcr = _rgb_to_ycbcr(padded * 255.0)
    luma, chroma = ycbcr[:, :1], F.avg_pool2d(ycbcr[:, 1:], 2)
    luma_table, chroma_table = (quantisation_table(t, quality) for t in (LUMINANCE_TABLE, CHROMINANCE_TABLE))
    luma = _quantise_blocks(luma - 128.0, luma_table, rounding) + 128.0
    chroma = _quantise_blocks(chroma - 128.0, chroma_table, rounding) + 128.0
    chroma = F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False)
    rgb = _ycbcr_to_rgb(torch.cat([luma, chroma], dim=1)) / 255.0
    return rgb[..., :height, :width].clamp(0.0, 1.0)


def _rgb_to_ycbcr(rgb: torch.Tensor) -> torch.Tensor:
    matrix = rgb.new_tensor(RGB_TO_YCBCR)
    offset = rgb.new_tensor([0.0, 128.0, 128.0]).view(1, 3, 1, 1)
    return torch.einsum("ij,njhw->nihw", matrix, rgb) + offset


def _ycbcr_to_rgb(ycbcr: torch.Tensor) -> torch.Tensor:
    matrix = torch.linalg.inv(ycbcr.new_tensor(RGB_TO_YCBCR))
    offset = ycbcr.new_tensor([0.0, 128.0, 128.0]).view(1, 3, 1, 1)
    return torch.einsum("ij,njhw->nihw", matrix, ycbcr - offset)


def _quantise_blocks(planes: torch.Tensor, table: torch.Tensor, rounding) -> torch.Tensor:
    """DCT each 8x8 block, quantise its coefficients with `table`, and transform back."""
    n, c, h, w = planes.shape
    blocks = planes.reshape(n, c, h // BLOCK, BLOCK, w // BLOCK, BLOCK).transpose(3, 4)
    dct = dct_matrix().to(planes)
    table = table.to(planes)
    coefficients = dct @ blocks @ dct.T
    restored = dct.T @ (rounding(coefficients / table) * table) @ dct
    return restored.transpose(3, 4).reshape(n, c, h, w)
