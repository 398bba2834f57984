"""What every attack optimises against: a callable from [0, 1] images to fake logits.

Attacks perturb face crops at their native resolution; the detector's own input size and
normalisation are applied inside the scorer, differentiably, so the gradient reaches the
native pixels that end up in the video.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from fakelab.detection.spec import DeepfakeDetector, InputSpec

# (N, 3, H, W) RGB in [0, 1], any size -> (N,) fake log-odds.
Scorer = Callable[[torch.Tensor], torch.Tensor]


def to_detector_input(images: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """[0, 1] images of any size -> normalised (N, 3, S, S) input, made differentiably the way
    the detection pipeline makes it from a face crop (`fakelab.faces.crop_frame`, then
    `InputSpec.prepare`): the centre square, shrunk by area averaging (OpenCV's INTER_AREA)
    or enlarged bicubically (INTER_CUBIC)."""
    height, width = images.shape[-2:]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    square = images[..., top : top + side, left : left + side]
    if side > spec.size:
        weights = area_weights(side, spec.size).to(images)
        square = weights @ square @ weights.T
    elif side < spec.size:
        square = F.interpolate(square, size=(spec.size, spec.size), mode="bicubic", align_corners=False)
        square = square.clamp(0.0, 1.0)
    return spec.normalize(square)


def area_weights(size: int, new_size: int) -> torch.Tensor:
    """(new_size, size) matrix of area-averaging downscaling: each output pixel is the mean of
    the input interval it covers, fractional pixels weighted by their overlap."""
    scale = size / new_size
    starts = torch.arange(new_size, dtype=torch.float64)[:, None] * scale
    pixels = torch.arange(size, dtype=torch.float64)[None, :]
    overlap = torch.minimum(pixels + 1, starts + scale) - torch.maximum(pixels, starts)
    return (overlap.clamp(min=0.0) / scale).float()


class DetectorScorer:
    """A `DeepfakeDetector` seen as a `Scorer`.

    The detector is used as it is: put it in eval mode first, or batch-norm statistics of
    the attacked batch leak into the score.
    """

    def __init__(self, detector: DeepfakeDetector):
        self.detector = detector

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.detector.fake_logit(to_detector_input(images, self.detector.input_spec))


def as_scorer(detector: DeepfakeDetector | Scorer) -> Scorer:
    """Detectors get their input convention applied; any other callable is taken as a Scorer."""
    return DetectorScorer(detector) if isinstance(detector, DeepfakeDetector) else detector
