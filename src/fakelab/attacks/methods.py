"""The attacks, on a batch of images: white-box I-FGSM, PGD and their EOT-robust variant,
and black-box NES (plain and robust), after Neekhara, Hussain et al., "Adversarial
Deepfakes" (WACV 2021).

Every attack takes signed steps of `step` inside the L-infinity ball of radius `eps`
around the images (and inside [0, 1]), towards a target class, "real" unless told
otherwise, and stops for each image on its own as soon as it is classified as the target
with `margin` log-odds to spare (1 by default; 5 for the EOT attacks, whose perturbation
must keep the image on the target's side through compression). With `eps` and `step`
multiples of 1/255 and images read from uint8, every iterate stays on the uint8 grid, so
rounding the result changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from fakelab.attacks.scoring import Scorer, as_scorer
from fakelab.attacks.transforms import Transform, TransformRanges, sample_transform
from fakelab.detection.spec import DeepfakeDetector
from fakelab.errors import ConfigError

# Images per detector call when NES queries many perturbed copies at once.
QUERY_CHUNK = 64
DEFAULT_MARGIN = 1.0
ROBUST_MARGIN = 5.0
# NES sampling scales. Plain NES probes the clean image, where a tiny scale estimates the
# local gradient best. nes-robust scores its probes through H.264, JPEG and uint8 rounding,
# which erase any change under the 8-bit step (1/255 ~ 0.004): below it the estimate is
# the transformations' noise (measured: 6 steps at 0.001 left the score where it was,
# at 0.02 they lowered it on every crop and seed tried).
NES_SIGMA = 0.001
ROBUST_NES_SIGMA = 0.02


@dataclass(frozen=True)
class AttackConfig:
    eps: float = 16 / 255
    step: float = 1 / 255
    max_iterations: int = 100
    # Log-odds towards the target that count as done (early stop); None: the method's
    # default, DEFAULT_MARGIN, or ROBUST_MARGIN for the EOT attacks, which need room to
    # stay on the target's side through compression.
    margin: float | None = None
    # Transformations averaged per step by `robust` and `nes-robust`.
    eot_samples: int = 8
    # Queries per NES gradient estimate (antithetic pairs, so an even number).
    nes_samples: int = 20
    # None: the method's default, NES_SIGMA or ROBUST_NES_SIGMA.
    nes_sigma: float | None = None
    # NES samples one value per `nes_tile` x `nes_tile` square of pixels: a search space
    # that many times smaller, which estimates a coarser gradient from the same queries.
    nes_tile: int = 2
    # NES steps along a running average of its estimates (velocity = momentum * velocity +
    # estimate), which averages their noise over iterations.
    nes_momentum: float = 0.9
    transforms: TransformRanges = field(default_factory=TransformRanges)
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.eps <= 1 or not 0 < self.step <= 1:
            raise ConfigError(f"eps and step must be in (0, 1], got eps {self.eps} and step {self.step}")
        if self.max_iterations < 0:
            raise ConfigError(f"the iteration budget must be at least 0, got {self.max_iterations}")
        if self.eot_samples < 1:
            raise ConfigError(f"EOT needs at least one transformation per step, got {self.eot_samples}")
        if self.nes_samples < 2 or self.nes_samples % 2:
            raise ConfigError(f"NES samples come in antithetic pairs: give an even number, got {self.nes_samples}")
        if not 0 <= self.nes_momentum < 1:
            raise ConfigError(f"the NES momentum must be in [0, 1), got {self.nes_momentum}")
        if self.nes_tile < 1:
            raise ConfigError(f"the NES tile side must be at least 1 pixel, got {self.nes_tile}")
        if self.nes_sigma is not None and self.nes_sigma <= 0:
            raise ConfigError(f"the NES sigma must be positive, got {self.nes_sigma}")

    def for_method(self, method: str) -> AttackConfig:
        """This config with the method's default margin and NES scale filled in where unset."""
        eot = ATTACKS[method].eot
        margin = (ROBUST_MARGIN if eot else DEFAULT_MARGIN) if self.margin is None else self.margin
        sigma = (ROBUST_NES_SIGMA if eot else NES_SIGMA) if self.nes_sigma is None else self.nes_sigma
        return replace(self, margin=margin, nes_sigma=sigma)


@dataclass
class AttackResult:
    adversarial: torch.Tensor  # (N, 3, H, W) in [0, 1]
    logits_before: torch.Tensor  # (N,) fake log-odds of the clean images
    logits_after: torch.Tensor  # (N,) fake log-odds of the adversarial images
    iterations: torch.Tensor  # (N,) steps taken
    queries: torch.Tensor  # (N,) images the attack had the detector score
    target_fake: torch.Tensor  # (N,) bool: pushed towards "fake" rather than "real"

    @property
    def reached_target(self) -> torch.Tensor:
        """(N,) bool: classified as the target class (at log-odds 0, no margin)."""
        return torch.where(self.target_fake, self.logits_after >= 0, self.logits_after < 0)


@dataclass
class Probe:
    """One look at the current iterates: how far each is towards its target, and how to get
    the gradient of the attack loss for those that go on."""

    progress: torch.Tensor  # (n,) log-odds towards the target
    queries: int  # images scored per iterate for this look
    gradient: Callable[[torch.Tensor], tuple[torch.Tensor, int]]  # keep mask -> (grad, queries each)


ProbeFactory = Callable[[torch.Tensor, torch.Tensor], Probe]  # (iterates, target signs) -> Probe


@dataclass(frozen=True)
class Method:
    """One attack: where it starts, whether it averages over transformations (EOT) and
    whether it sees gradients or only scores. Call it as
    `method(detector, images, config, target_fake)`."""

    name: str
    description: str
    random_start: bool = False
    eot: bool = False
    black_box: bool = False

    def __call__(
        self,
        detector: DeepfakeDetector | Scorer,
        images: torch.Tensor,
        config: AttackConfig = AttackConfig(),
        target_fake: torch.Tensor | None = None,
    ) -> AttackResult:
        config = config.for_method(self.name)
        scorer = as_scorer(detector)
        start = random_start(images, config) if self.random_start else images
        side = min(images.shape[-2:])

        def probes(rng: np.random.Generator) -> ProbeFactory:
            transforms = _sample_transforms(config, side, rng) if self.eot else []
            return _nes(scorer, config, transforms, rng) if self.black_box else _white_box(scorer, transforms)

        return _attack(self, scorer, images, config, target_fake, start, probes)


ifgsm = Method("ifgsm", "Iterative FGSM: signed gradient steps from the clean images.")
pgd = Method("pgd", "Projected gradient descent (Madry et al.): I-FGSM from a uniform random start in the ball.", random_start=True)
robust = Method(
    "robust",
    "I-FGSM on the loss averaged over the clean images and `eot_samples` random transformations of "
    "them, drawn afresh each step (Expectation over Transformation). An image is done when both its "
    "clean score and its mean transformed score reach the margin, ROBUST_MARGIN unless the config sets one.",
    eot=True,
)
nes = Method(
    "nes",
    "Black box: I-FGSM on gradients estimated from scores only, with antithetic Gaussian samples "
    "(Natural Evolution Strategies, Ilyas et al. 2018), stepping along their momentum average.",
    black_box=True,
)
nes_robust = Method(
    "nes-robust", "NES on the EOT loss: each antithetic pair is scored through its own random transformation.",
    eot=True, black_box=True,
)

ATTACKS: dict[str, Method] = {method.name: method for method in (ifgsm, pgd, robust, nes, nes_robust)}


def run_attack(
    method: str,
    detector: DeepfakeDetector | Scorer,
    images: torch.Tensor,
    config: AttackConfig = AttackConfig(),
    target_fake: torch.Tensor | None = None,
) -> AttackResult:
    """The attack named `method` (a key of ATTACKS)."""
    if method not in ATTACKS:
        raise ConfigError(f"unknown attack {method!r}; known: {', '.join(ATTACKS)}")
    return ATTACKS[method](detector, images, config, target_fake)


def random_start(images: torch.Tensor, config: AttackConfig) -> torch.Tensor:
    """A uniform point of the ball on the uint8 grid (whole 1/255 steps)."""
    reach = int(np.floor(config.eps * 255 + 1e-6))
    generator = torch.Generator().manual_seed(config.seed)
    offsets = torch.randint(-reach, reach + 1, images.shape, generator=generator).to(images) / 255
    return project(images + offsets, images, config.eps)


def project(x: torch.Tensor, images: torch.Tensor, eps: float) -> torch.Tensor:
    """Clip `x` into the L-infinity ball of radius `eps` around `images`, and into [0, 1]."""
    return torch.minimum(torch.maximum(x, images - eps), images + eps).clamp(0.0, 1.0)


def to_uint8(images: torch.Tensor, adversarial: torch.Tensor, eps: float) -> torch.Tensor:
    """Adversarial [0, 1] images rounded to uint8 values (still as floats 0..255), their change
    from `images` (which are on the uint8 grid) clipped to the whole levels inside `eps`, so
    that the budget holds exactly in a file."""
    levels = int(np.floor(eps * 255 + 1e-6))
    original = torch.round(images * 255)
    change = torch.round(adversarial * 255 - original).clamp(-levels, levels)
    return (original + change).clamp(0, 255)


def _attack(
    method: Method,
    scorer: Scorer,
    images: torch.Tensor,
    config: AttackConfig,
    target_fake: torch.Tensor | None,
    start: torch.Tensor,
    probe_factory: Callable[[np.random.Generator], ProbeFactory],
) -> AttackResult:
    margin = config.margin
    momentum = config.nes_momentum if method.black_box else 0.0
    images = images.detach()
    count = images.shape[0]
    target_fake = torch.zeros(count, dtype=torch.bool) if target_fake is None else target_fake.bool()
    signs = target_fake.to(images.dtype) * 2 - 1
    rng = np.random.default_rng(config.seed)
    with torch.no_grad():
        logits_before = scorer(images)
    x = start.detach().clone()
    velocity = torch.zeros_like(x)
    iterations = torch.zeros(count, dtype=torch.long)
    queries = torch.zeros(count, dtype=torch.long)
    active = torch.arange(count)
    for iteration in range(config.max_iterations + 1):
        probe = probe_factory(rng)(x[active], signs[active])
        queries[active] += probe.queries
        going_on = probe.progress < margin
        if iteration == config.max_iterations or not going_on.any():
            break
        gradient, used = probe.gradient(going_on)
        active = active[going_on]
        queries[active] += used
        velocity[active] = momentum * velocity[active] + gradient
        # The loss falls as the score moves towards the target, so step against its gradient.
        x[active] = project(x[active] - config.step * velocity[active].sign(), images[active], config.eps)
        iterations[active] += 1
    with torch.no_grad():
        logits_after = scorer(x)
    return AttackResult(x, logits_before, logits_after, iterations, queries, target_fake)


def _progress(towards: torch.Tensor) -> torch.Tensor:
    """(views, n) log-odds towards the target -> (n,): the clean view's, or with transformed
    views, the lesser of the clean one and their mean."""
    if towards.shape[0] == 1:
        return towards[0]
    return torch.minimum(towards[0], towards[1:].mean(0))


def _attack_loss(towards: torch.Tensor) -> torch.Tensor:
    """Cross-entropy with the target class, from log-odds towards it."""
    return F.softplus(-towards)


def _sample_transforms(config: AttackConfig, side: int, rng: np.random.Generator) -> list[Transform]:
    return [sample_transform(config.transforms, side, rng) for _ in range(config.eot_samples)]


def _white_box(scorer: Scorer, transforms: Sequence[Transform]) -> ProbeFactory:
    def probe(x: torch.Tensor, signs: torch.Tensor) -> Probe:
        x = x.detach().requires_grad_()
        views = torch.cat([x] + [transform(x) for transform in transforms])
        towards = scorer(views).view(len(transforms) + 1, -1) * signs
        loss = _attack_loss(towards).mean(0)

        def gradient(keep: torch.Tensor) -> tuple[torch.Tensor, int]:
            (grad,) = torch.autograd.grad(loss[keep].sum(), x)
            return grad[keep], 0

        return Probe(_progress(towards.detach()), len(transforms) + 1, gradient)

    return probe


def _nes(
    scorer: Scorer, config: AttackConfig, transforms: Sequence[Transform], rng: np.random.Generator
) -> ProbeFactory:
    """NES probes: the look scores the clean iterates (and the EOT views, if any); the
    gradient is estimated from `nes_samples` more queries each."""
    generator = torch.Generator().manual_seed(int(rng.integers(2**62)))

    def probe(x: torch.Tensor, signs: torch.Tensor) -> Probe:
        with torch.no_grad():
            views = torch.cat([x] + [transform(x) for transform in transforms])
            towards = _score_in_chunks(scorer, views).view(len(transforms) + 1, -1) * signs

        def gradient(keep: torch.Tensor) -> tuple[torch.Tensor, int]:
            return _nes_gradient(scorer, x[keep], signs[keep], config, bool(transforms), rng, generator)

        return Probe(_progress(towards), len(transforms) + 1, gradient)

    return probe


@torch.no_grad()
def _nes_gradient(
    scorer: Scorer,
    x: torch.Tensor,
    signs: torch.Tensor,
    config: AttackConfig,
    eot: bool,
    rng: np.random.Generator,
    generator: torch.Generator,
) -> tuple[torch.Tensor, int]:
    """Antithetic NES: E[u (L(x + s u) - L(x - s u))] / (2 s), u ~ N(0, I), per image.

    With `eot`, each pair is scored through a random transformation of its own."""
    pairs = config.nes_samples // 2
    directions = _tiled_noise((pairs, *x.shape), config.nes_tile, generator).to(x)
    step = config.nes_sigma * directions
    perturbed = torch.stack([x + step, x - step], dim=1)  # (pairs, 2, n, 3, H, W)
    if eot:
        side = min(x.shape[-2:])
        perturbed = torch.stack(
            [sample_transform(config.transforms, side, rng)(pair.flatten(0, 1)).view_as(pair) for pair in perturbed]
        )
    towards = _score_in_chunks(scorer, perturbed.flatten(0, 2)).view(pairs, 2, -1) * signs
    losses = _attack_loss(towards)
    weights = (losses[:, 0] - losses[:, 1]) / (2 * config.nes_sigma * pairs)
    return torch.einsum("pn,pnchw->nchw", weights, directions), 2 * pairs


def _tiled_noise(shape: tuple[int, ...], tile: int, generator: torch.Generator) -> torch.Tensor:
    """Standard normal noise that is constant over tile x tile squares."""
    *leading, height, width = shape
    coarse = torch.randn((*leading, -(-height // tile), -(-width // tile)), generator=generator)
    fine = coarse.repeat_interleave(tile, dim=-2).repeat_interleave(tile, dim=-1)
    return fine[..., :height, :width]


def _score_in_chunks(scorer: Scorer, images: torch.Tensor) -> torch.Tensor:
    return torch.cat([scorer(chunk) for chunk in images.split(QUERY_CHUNK)])
