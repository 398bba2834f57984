"""The FOMM training objective (Siarohin et al., NeurIPS 2019, Sec. 3.3).

- reconstruction: a multi-scale pyramid perceptual loss between the driving frame
  and its reconstruction from the source;
- equivariance: keypoints (and their Jacobians) must follow a random affine +
  thin-plate-spline warp of the driving frame;
- optionally (the -adv configs) an LSGAN multi-scale discriminator with feature matching.

`ReconstructionObjective` is the part that trains the keypoint detector and the
generator; it is one module so that DistributedDataParallel can wrap it. The
adversarial terms are separate functions, as the discriminator trains on its
own optimiser step.
"""

from __future__ import annotations

import torch
from torch import nn

from fakelab.animation.fomm import Keypoints, KPDetector, MultiScaleDiscriminator, OcclusionAwareGenerator
from fakelab.animation.fomm.blocks import AntiAliasInterpolation2d
from fakelab.training.params import LossWeights
from fakelab.training.perceptual import FeaturePyramid
from fakelab.training.warps import RandomWarp


def scale_key(scale: float) -> str:
    """Our pyramid's key of a scale (`prediction_1`, `prediction_0.5`), however the config spells it."""
    return f"prediction_{float(scale):g}"


class ImagePyramid(nn.Module):
    """Anti-aliased downscalings of an image, keyed `prediction_<scale>`."""

    def __init__(self, scales, num_channels: int):
        super().__init__()
        self.scales = tuple(scales)
        self.downs = nn.ModuleList(AntiAliasInterpolation2d(num_channels, scale) for scale in self.scales)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {scale_key(scale): down(images) for scale, down in zip(self.scales, self.downs)}


class ReconstructionObjective(nn.Module):
    """Keypoint detector + generator with their perceptual and equivariance losses.

    `forward` returns the weighted loss terms and the generator's outputs (with
    the keypoints and the pyramids, which the adversarial terms reuse).
    """

    def __init__(
        self,
        kp_detector: KPDetector,
        generator: OcclusionAwareGenerator,
        perceptual: FeaturePyramid | None,
        scales,
        extra_scales,
        weights: LossWeights,
    ):
        super().__init__()
        self.kp_detector = kp_detector
        self.generator = generator
        self.perceptual = perceptual
        self.scales = tuple(scales)
        self.pyramid = ImagePyramid(dict.fromkeys((*self.scales, *extra_scales)), generator.num_channels)
        self.weights = weights
        if perceptual is None and any(weights.perceptual):
            raise ValueError("perceptual loss weights are set but no perceptual network was given")

    def forward(self, source: torch.Tensor, driving: torch.Tensor, warp: RandomWarp | None) -> tuple[dict, dict]:
        kp_source = self.kp_detector(source)
        kp_driving = self.kp_detector(driving)
        generated = self.generator(source, kp_driving=kp_driving, kp_source=kp_source)
        generated.update(
            kp_source=kp_source,
            kp_driving=kp_driving,
            pyramid_real=self.pyramid(driving),
            pyramid_generated=self.pyramid(generated["prediction"]),
        )
        losses = {}
        if any(self.weights.perceptual):
            losses["perceptual"] = self.perceptual_loss(generated["pyramid_generated"], generated["pyramid_real"])
        if warp is not None:
            losses.update(self.equivariance_losses(driving, kp_driving, warp, generated))
        return losses, generated

    def perceptual_loss(self, generated: dict, real: dict) -> torch.Tensor:
        total = 0.0
        for scale in self.scales:
            features_generated = self.perceptual(generated[scale_key(scale)])
            features_real = self.perceptual(real[scale_key(scale)])
            for weight, ours, theirs in zip(self.weights.perceptual, features_generated, features_real):
                if weight:
                    total = total + weight * (ours - theirs.detach()).abs().mean()
        return total

    def equivariance_losses(
        self, driving: torch.Tensor, kp_driving: Keypoints, warp: RandomWarp, generated: dict
    ) -> dict[str, torch.Tensor]:
        warped = warp.warp_images(driving)
        kp_warped = self.kp_detector(warped)
        generated["warped"] = warped
        # Keypoint geometry in full precision, also under mixed-precision autocast.
        with torch.autocast(driving.device.type, enabled=False):
            return self._equivariance_terms(_as_float(kp_driving), _as_float(kp_warped), warp)

    def _equivariance_terms(self, kp_driving: Keypoints, kp_warped: Keypoints, warp: RandomWarp) -> dict:
        losses = {}
        if self.weights.equivariance_value:
            value = (kp_driving.value - warp(kp_warped.value)).abs().mean()
            losses["equivariance_value"] = self.weights.equivariance_value * value
        if self.weights.equivariance_jacobian and kp_warped.jacobian is not None:
            # J_driving^-1 dT J_warped should be the identity.
            followed = warp.jacobian(kp_warped.value) @ kp_warped.jacobian
            product = torch.inverse(kp_driving.jacobian) @ followed
            identity = torch.eye(2, dtype=product.dtype, device=product.device)
            losses["equivariance_jacobian"] = self.weights.equivariance_jacobian * (identity - product).abs().mean()
        return losses


def _as_float(kp: Keypoints) -> Keypoints:
    return Keypoints(kp.value.float(), None if kp.jacobian is None else kp.jacobian.float())


def _discriminate(
    discriminator: MultiScaleDiscriminator, real: dict, generated: dict, kp: Keypoints
) -> tuple[dict, dict]:
    """Score real and generated pyramids in one batch (its instance norms keep samples apart)."""
    batch = next(iter(real.values())).shape[0]
    both = {key: torch.cat([real[key], generated[key]]) for key in real}
    kp = kp.detach()
    kp_both = Keypoints(torch.cat([kp.value, kp.value]), None if kp.jacobian is None else torch.cat([kp.jacobian] * 2))
    maps = discriminator(both, kp=kp_both)
    real_maps = {key: _first_half(value, batch) for key, value in maps.items()}
    generated_maps = {key: _second_half(value, batch) for key, value in maps.items()}
    return real_maps, generated_maps


def _first_half(value, batch: int):
    return [v[:batch] for v in value] if isinstance(value, list) else value[:batch]


def _second_half(value, batch: int):
    return [v[batch:] for v in value] if isinstance(value, list) else value[batch:]


def _pick_scales(pyramid: dict, scales) -> dict:
    """The pyramid levels a discriminator reads, keyed as it spells its scales (`prediction_1`)."""
    return {f"prediction_{scale}": pyramid[scale_key(scale)] for scale in scales}


def generator_adversarial_losses(
    discriminator: MultiScaleDiscriminator, generated: dict, weights: LossWeights
) -> dict[str, torch.Tensor]:
    """LSGAN generator loss and discriminator feature matching; the discriminator's weights get no gradient."""
    scales = discriminator.scales
    real = _pick_scales(generated["pyramid_real"], scales)
    fake = _pick_scales(generated["pyramid_generated"], scales)
    parameters = list(discriminator.parameters())
    for parameter in parameters:
        parameter.requires_grad_(False)
    try:
        real_maps, fake_maps = _discriminate(discriminator, real, fake, generated["kp_driving"])
    finally:
        for parameter in parameters:
            parameter.requires_grad_(True)
    gan = sum(((1 - fake_maps[f"prediction_map_{scale}"]) ** 2).mean() for scale in scales)
    losses = {"generator_gan": weights.generator_gan * gan}
    if any(weights.feature_matching):
        matching = 0.0
        for scale in scales:
            pairs = zip(weights.feature_matching, real_maps[f"feature_maps_{scale}"], fake_maps[f"feature_maps_{scale}"])
            for weight, real_features, fake_features in pairs:
                if weight:
                    matching = matching + weight * (real_features - fake_features).abs().mean()
        losses["feature_matching"] = matching
    return losses


def discriminator_loss(discriminator: nn.Module, scales, generated: dict, weights: LossWeights) -> torch.Tensor:
    """LSGAN discriminator loss: real frames towards 1, generated (detached) towards 0."""
    real = _pick_scales(generated["pyramid_real"], scales)
    fake = {key: value.detach() for key, value in _pick_scales(generated["pyramid_generated"], scales).items()}
    real_maps, fake_maps = _discriminate(discriminator, real, fake, generated["kp_driving"])
    total = 0.0
    for scale in scales:
        key = f"prediction_map_{scale}"
        total = total + ((1 - real_maps[key]) ** 2 + fake_maps[key] ** 2).mean()
    return weights.discriminator_gan * total
