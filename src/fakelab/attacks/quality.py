"""What a perturbation costs in visual quality: L-infinity, PSNR and SSIM."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

# Wang et al., "Image quality assessment: from error visibility to structural similarity"
# (2004): an 11-tap Gaussian window of sigma 1.5, K1 = 0.01, K2 = 0.03.
SSIM_SIGMA = 1.5
SSIM_RADIUS = 5
SSIM_K1, SSIM_K2 = 0.01, 0.03


def linf_levels(original: np.ndarray, perturbed: np.ndarray) -> int:
    """Largest change of any uint8 channel value."""
    return int(np.abs(original.astype(np.int16) - perturbed.astype(np.int16)).max(initial=0))


def psnr(original: np.ndarray, perturbed: np.ndarray) -> float:
    """Peak signal-to-noise ratio of two uint8 images in dB; infinite when they are equal."""
    mse = np.mean((original.astype(np.float64) - perturbed.astype(np.float64)) ** 2)
    return math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)


def ssim(original: np.ndarray, perturbed: np.ndarray) -> float:
    """Mean structural similarity of two HxWx3 uint8 images, averaged over channels.

    The mean is over the pixels where the whole window fits (what scikit-image's
    `structural_similarity(..., gaussian_weights=True, use_sample_covariance=False)` gives).
    """
    a, b = (torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[:, None].double() / 255.0
            for image in (original, perturbed))
    taps = torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=torch.float64)
    kernel = torch.exp(-(taps**2) / (2 * SSIM_SIGMA**2))
    kernel = kernel / kernel.sum()

    def local_mean(x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(x, kernel.view(1, 1, 1, -1)), kernel.view(1, 1, -1, 1))

    mean_a, mean_b = local_mean(a), local_mean(b)
    var_a = local_mean(a * a) - mean_a**2
    var_b = local_mean(b * b) - mean_b**2
    covariance = local_mean(a * b) - mean_a * mean_b
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    index = ((2 * mean_a * mean_b + c1) * (2 * covariance + c2)) / (
        (mean_a**2 + mean_b**2 + c1) * (var_a + var_b + c2)
    )
    return float(index.mean())
