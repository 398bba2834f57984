"""The `train_params` section of a FOMM config, as dataclasses.

Everything the reference configs hold is understood; `adam_betas` is our
addition (the reference hard-codes (0.5, 0.999)), for the optimiser studies
that try e.g. (0.75, 0.999).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from fakelab.animation.config import FommConfig, check_field
from fakelab.errors import ConfigError


@dataclass(frozen=True)
class TransformParams:
    """Random warps for the equivariance losses: affine noise, thin-plate-spline noise on a grid of control points."""

    sigma_affine: float = 0.05
    sigma_tps: float = 0.005
    points_tps: int = 5


@dataclass(frozen=True)
class LossWeights:
    generator_gan: float = 0.0
    discriminator_gan: float = 1.0
    feature_matching: tuple[float, ...] = (10, 10, 10, 10)
    perceptual: tuple[float, ...] = (10, 10, 10, 10, 10)
    equivariance_value: float = 10.0
    equivariance_jacobian: float = 10.0

    @property
    def adversarial(self) -> bool:
        """Whether the discriminator trains: the reference trains it only when the generator is scored by it."""
        return self.generator_gan != 0


@dataclass(frozen=True)
class TrainParams:
    num_epochs: int = 100
    num_repeats: int = 1
    epoch_milestones: tuple[int, ...] = ()
    lr_generator: float = 2e-4
    lr_discriminator: float = 2e-4
    lr_kp_detector: float = 2e-4
    batch_size: int = 40
    scales: tuple[float, ...] = (1, 0.5, 0.25, 0.125)
    checkpoint_freq: int = 50
    transform_params: TransformParams = field(default_factory=TransformParams)
    loss_weights: LossWeights = field(default_factory=LossWeights)
    adam_betas: tuple[float, float] = (0.5, 0.999)

    def steps_per_epoch(self, dataset_size: int) -> int:
        """Steps in one reference epoch: `num_repeats` passes over the dataset in whole batches."""
        return max(1, self.num_repeats * dataset_size // self.batch_size)

    def lr_factor(self, epoch: int) -> float:
        """The multi-step schedule: the learning rates drop tenfold at each milestone epoch."""
        return 0.1 ** sum(epoch >= milestone for milestone in self.epoch_milestones)


_NESTED = {"transform_params": TransformParams, "loss_weights": LossWeights}


def _build(cls, values: dict, where: str):
    if values is None:
        raise ConfigError(f"{where} is empty")
    if not isinstance(values, dict):
        raise ConfigError(f"{where} must be a mapping")
    if any(not isinstance(key, str) for key in values):
        raise ConfigError(f"{where} has a key that is not a name")
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{where} has unknown key '{unknown[0]}' (known: {', '.join(sorted(known))})")
    kwargs = {}
    for name, value in values.items():
        if name in _NESTED:
            value = _build(_NESTED[name], value, f"{where}.{name}")
        else:
            value = check_field(str(known[name].type), value, name, where)
        kwargs[name] = value
    return cls(**kwargs)


def train_params(config: FommConfig) -> TrainParams:
    """The config's training hyperparameters, checked."""
    raw = config.sections.get("train_params")
    if raw is None:
        raise ConfigError(f"config {config.name} has no train_params section: it cannot be trained")
    params = _build(TrainParams, raw, f"config {config.name}: train_params")
    if not 1 <= params.batch_size <= 4096:
        raise ConfigError(f"config {config.name}: train_params.batch_size must be between 1 and 4096")
    if params.num_epochs < 1 or params.num_repeats < 1:
        raise ConfigError(f"config {config.name}: train_params.num_epochs and num_repeats must be at least 1")
    if any(value < 0 for value in (params.lr_generator, params.lr_discriminator, params.lr_kp_detector)):
        raise ConfigError(f"config {config.name}: train_params learning rates must not be negative")
    if len(params.adam_betas) != 2:
        raise ConfigError(f"config {config.name}: train_params.adam_betas must be two numbers")
    return params
