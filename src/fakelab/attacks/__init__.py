"""Adversarial attacks on deepfake detectors, and the defence.

- `methods`: the attacks on a batch of [0, 1] images against any detector (ifgsm, pgd,
  robust, nes, nes-robust), as functions and by name through `run_attack`.
- `scoring`: a detector as a differentiable function of native-resolution face crops.
- `transforms`, `jpeg`: what the robust attacks average over, with a differentiable JPEG.
- `video`: `attack_video`, the engine of `fakelab attack`; `report`: what it measures.
- `quality`: L-infinity, PSNR and SSIM of a perturbation.
- `training`: PGD batches for adversarial training, and accuracy under attack.
"""

from fakelab.attacks.methods import (
    ATTACKS,
    AttackConfig,
    AttackResult,
    ifgsm,
    nes,
    nes_robust,
    pgd,
    robust,
    run_attack,
    to_uint8,
)
from fakelab.attacks.scoring import DetectorScorer, Scorer, as_scorer
from fakelab.attacks.transforms import TransformRanges

__all__ = [
    "ATTACKS",
    "AttackConfig",
    "AttackResult",
    "DetectorScorer",
    "Scorer",
    "TransformRanges",
    "as_scorer",
    "ifgsm",
    "nes",
    "nes_robust",
    "pgd",
    "robust",
    "run_attack",
    "to_uint8",
]
