"""Clip augmentations of the reference configs: flips in space and time, colour jitter.

A clip is a (T, 3, H, W) float tensor in [0, 1]; every frame of a clip gets the
same random parameters, so that source and driving frames stay consistent.
Randomness comes from the numpy Generator passed in, which keeps sampling
reproducible (and training resumable) whatever process draws the sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from fakelab.errors import ConfigError

# ITU-R 601 luma, as image libraries use for greyscale.
LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class FlipParams:
    horizontal_flip: bool = False
    time_flip: bool = False


@dataclass(frozen=True)
class JitterParams:
    """Jitter strengths: brightness, contrast and saturation factors are drawn from
    [1 - s, 1 + s], the hue shift from [-hue, hue] turns of the colour wheel."""

    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0


def greyscale(clip: torch.Tensor) -> torch.Tensor:
    weights = clip.new_tensor(LUMA).view(1, 3, 1, 1)
    return (clip * weights).sum(dim=1, keepdim=True)


def adjust_brightness(clip: torch.Tensor, factor: float) -> torch.Tensor:
    return (clip * factor).clamp(0, 1)


def adjust_contrast(clip: torch.Tensor, factor: float) -> torch.Tensor:
    """Blend each frame with its mean grey level."""
    mean = greyscale(clip).mean(dim=(1, 2, 3), keepdim=True)
    return (factor * clip + (1 - factor) * mean).clamp(0, 1)


def adjust_saturation(clip: torch.Tensor, factor: float) -> torch.Tensor:
    """Blend each pixel with its grey level."""
    return (factor * clip + (1 - factor) * greyscale(clip)).clamp(0, 1)


def rgb_to_hsv(rgb: torch.Tensor) -> torch.Tensor:
    r, g, b = rgb.unbind(dim=1)
    value, _ = rgb.max(dim=1)
    chroma = value - rgb.min(dim=1).values
    safe_chroma = torch.where(chroma > 0, chroma, torch.ones_like(chroma))
    saturation = chroma / value.clamp(min=1e-12)  # 0 for black, where chroma is 0 too
    hue = torch.where(
        value == r,
        ((g - b) / safe_chroma) % 6,
        torch.where(value == g, (b - r) / safe_chroma + 2, (r - g) / safe_chroma + 4),
    )
    hue = torch.where(chroma > 0, hue / 6, torch.zeros_like(hue))
    return torch.stack([hue, saturation, value], dim=1)


def hsv_to_rgb(hsv: torch.Tensor) -> torch.Tensor:
    hue, saturation, value = hsv.unbind(dim=1)
    # Each channel is value minus chroma times a clamped triangle wave of the hue.
    offsets = hsv.new_tensor([5.0, 3.0, 1.0]).view(1, 3, 1, 1)
    k = (offsets + hue.unsqueeze(1) * 6) % 6
    ramp = torch.minimum(k, 4 - k).clamp(0, 1)
    return value.unsqueeze(1) - (value * saturation).unsqueeze(1) * ramp


def adjust_hue(clip: torch.Tensor, shift: float) -> torch.Tensor:
    """Rotate hues by `shift` turns of the colour wheel."""
    hsv = rgb_to_hsv(clip)
    hsv[:, 0] = (hsv[:, 0] + shift) % 1.0
    return hsv_to_rgb(hsv).clamp(0, 1)


class ColorJitter:
    """Brightness, contrast, saturation and hue changes, applied in a random order."""

    def __init__(self, params: JitterParams):
        if not 0 <= params.hue <= 0.5:
            raise ConfigError(f"jitter_param hue must be in [0, 0.5], got {params.hue}")
        self.params = params

    def __call__(self, clip: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        p = self.params
        changes = []
        for strength, adjust in (
            (p.brightness, adjust_brightness),
            (p.contrast, adjust_contrast),
            (p.saturation, adjust_saturation),
        ):
            if strength > 0:
                changes.append((adjust, rng.uniform(max(0.0, 1 - strength), 1 + strength)))
        if p.hue > 0:
            changes.append((adjust_hue, rng.uniform(-p.hue, p.hue)))
        for index in rng.permutation(len(changes)):
            adjust, amount = changes[index]
            clip = adjust(clip, float(amount))
        return clip


class ClipAugmentation:
    """The augmentations a config's `augmentation_params` asks for; flips each with probability 1/2."""

    def __init__(self, flip: FlipParams = FlipParams(), jitter: JitterParams | None = None):
        self.flip = flip
        self.jitter = ColorJitter(jitter) if jitter is not None else None

    @classmethod
    def from_config(cls, augmentation_params: dict | None) -> ClipAugmentation:
        params = dict(augmentation_params or {})
        flip = params.pop("flip_param", None)
        jitter = params.pop("jitter_param", None)
        if params:
            raise ConfigError(
                f"augmentation_params.{sorted(params)[0]} is not supported (supported: flip_param, jitter_param)"
            )
        try:
            return cls(FlipParams(**(flip or {})), JitterParams(**jitter) if jitter else None)
        except TypeError as error:
            raise ConfigError(f"augmentation_params: {error}") from None

    def __call__(self, clip: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
        if self.flip.time_flip and rng.random() < 0.5:
            clip = clip.flip(0)
        if self.flip.horizontal_flip and rng.random() < 0.5:
            clip = clip.flip(3)
        if self.jitter is not None:
            clip = self.jitter(clip, rng)
        return clip
