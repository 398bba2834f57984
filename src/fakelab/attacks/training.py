"""The defence: adversarial training batches, from a PGD inner loop (Madry et al., "Towards
Deep Learning Models Resistant to Adversarial Attacks", ICLR 2018), for the training loop
of `fakelab.detection.train`, whose batches are what `InputSpec.prepare` makes
(normalised, at the detector's input size)."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from typing import Iterator

import torch

from fakelab.attacks.methods import AttackConfig, run_attack
from fakelab.attacks.scoring import DetectorScorer
from fakelab.detection.spec import DeepfakeDetector
from fakelab.errors import InputError

# What `fakelab train-detector --adversarial` accepts.
ADVERSARIAL_METHODS = ("pgd",)
TRAINING_EPS = 4 / 255
TRAINING_STEPS = 5


def training_pgd(eps: float = TRAINING_EPS) -> AttackConfig:
    """The inner loop of adversarial training: TRAINING_STEPS steps of 2.5 eps / steps with no
    early stop (an infinite margin), as Madry et al. train."""
    return AttackConfig(eps=eps, step=2.5 * eps / TRAINING_STEPS, max_iterations=TRAINING_STEPS, margin=float("inf"))


@contextlib.contextmanager
def eval_mode(module: torch.nn.Module) -> Iterator[None]:
    """Evaluate `module` inside the block (batch-norm statistics frozen), then restore its mode."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def adversarial_batch(
    detector: DeepfakeDetector,
    batch: torch.Tensor,
    labels: torch.Tensor,
    config: AttackConfig | None = None,
    fraction: float = 0.5,
) -> torch.Tensor:
    """A training batch with the first `fraction` of its images replaced by PGD examples
    that push each one towards the wrong class: reals towards "fake", fakes towards "real".
    Half adversarial, half clean by default (Kurakin et al., "Adversarial Machine Learning at
    Scale", ICLR 2017), which costs less clean accuracy than all-adversarial batches; the
    training loop shuffles its batches, so the first half is a random half.

    `config` is the inner loop, `training_pgd()` by default. `batch` is normalised as
    `detector.input_spec.prepare` makes it; so is the result, which
    carries no gradient. The search runs in eval mode and leaves the detector's mode and
    parameter gradients as they were. A new random start is drawn for each call.
    """
    if not 0.0 <= fraction <= 1.0:
        raise InputError(f"the adversarial fraction of a batch must be in [0, 1], got {fraction}")
    count = round(fraction * len(batch))
    if count == 0:
        return batch
    spec = detector.input_spec
    mean = batch.new_tensor(spec.mean).view(1, 3, 1, 1)
    std = batch.new_tensor(spec.std).view(1, 3, 1, 1)
    images = (batch[:count] * std + mean).clamp(0.0, 1.0)
    config = config or training_pgd()
    seed = int(torch.randint(2**31, (1,)).item())
    with eval_mode(detector):
        result = run_attack(
            "pgd", DetectorScorer(detector), images, replace(config, seed=seed), (labels[:count] == 0).cpu()
        )
    attacked = spec.normalize(result.adversarial.detach())
    return torch.cat([attacked, batch[count:]])
