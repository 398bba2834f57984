"""The defence and its measure: adversarial training batches (a PGD inner loop, Madry et
al. 2018) and a detector's accuracy when every face is attacked.

Both work on what the detection code already handles: training batches as
`InputSpec.prepare` makes them (normalised, at the detector's input size) and face crops
as uint8 arrays.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from fakelab.attacks.methods import AttackConfig, run_attack, to_uint8
from fakelab.attacks.scoring import DetectorScorer
from fakelab.detection.pipeline import detector_device, score_frames
from fakelab.detection.spec import DeepfakeDetector
from fakelab.errors import InputError

# The inner loop of adversarial training: a fixed number of larger steps with no early
# stop (an infinite margin), as Madry et al. train; the budget is the attack default.
TRAINING_PGD = AttackConfig(eps=16 / 255, step=4 / 255, max_iterations=5, margin=float("inf"))


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
    config: AttackConfig = TRAINING_PGD,
    fraction: float = 1.0,
) -> torch.Tensor:
    """A training batch with (the first `fraction` of) its images replaced by PGD examples
    that push each one towards the wrong class: reals towards "fake", fakes towards "real".

    `batch` is normalised as `detector.input_spec.prepare` makes it; so is the result, which
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
    seed = int(torch.randint(2**31, (1,)).item())
    with eval_mode(detector):
        result = run_attack(
            "pgd", DetectorScorer(detector), images, replace(config, seed=seed), (labels[:count] == 0).cpu()
        )
    attacked = spec.normalize(result.adversarial.detach())
    return torch.cat([attacked, batch[count:]])


@dataclass(frozen=True)
class AttackedAccuracy:
    """A detector's frame accuracy on clean faces and on the same faces attacked."""

    method: str
    eps: float
    labels: np.ndarray  # 1 fake, 0 real
    clean_logits: np.ndarray
    attacked_logits: np.ndarray
    iterations: np.ndarray
    queries: np.ndarray

    @staticmethod
    def _accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
        return float(np.mean((logits >= 0) == (labels == 1))) if len(labels) else float("nan")

    @property
    def clean_accuracy(self) -> float:
        return self._accuracy(self.clean_logits, self.labels)

    @property
    def attacked_accuracy(self) -> float:
        return self._accuracy(self.attacked_logits, self.labels)

    def per_class(self) -> dict[str, dict[str, float]]:
        return {
            name: {
                "clean_accuracy": self._accuracy(self.clean_logits[mask], self.labels[mask]),
                "attacked_accuracy": self._accuracy(self.attacked_logits[mask], self.labels[mask]),
                "faces": int(mask.sum()),
            }
            for name, mask in (("real", self.labels == 0), ("fake", self.labels == 1))
        }

    def to_json(self) -> dict:
        return {
            "method": self.method,
            "eps": self.eps,
            "faces": int(len(self.labels)),
            "clean_accuracy": self.clean_accuracy,
            "attacked_accuracy": self.attacked_accuracy,
            "per_class": self.per_class(),
            "mean_iterations": float(np.mean(self.iterations)),
            "mean_queries": float(np.mean(self.queries)),
        }

    def summary(self) -> str:
        return (
            f"accuracy {self.clean_accuracy:.1%} clean, {self.attacked_accuracy:.1%} under {self.method} "
            f"at eps {self.eps * 255:g}/255 ({len(self.labels)} faces)"
        )


def evaluate_under_attack(
    detector: DeepfakeDetector,
    crops: Sequence[np.ndarray],
    labels: Sequence[int],
    method: str = "pgd",
    config: AttackConfig = AttackConfig(),
    batch_size: int = 16,
    progress: Callable[[Iterable], Iterable] | None = None,
) -> AttackedAccuracy:
    """Attack every uint8 face crop (all of one size) towards the wrong class (each fake towards "real", each
    real towards "fake"), round the result to uint8, and score clean and attacked crops
    through the detection pipeline."""
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) != len(crops) or len(crops) == 0:
        raise InputError(f"need one label (0 real, 1 fake) per face crop: {len(crops)} crops, {len(labels)} labels")
    if len({crop.shape for crop in crops}) > 1:
        raise InputError("the face crops must all have one size (the detector's input size, as the pipeline crops)")
    device = detector_device(detector)
    scorer = DetectorScorer(detector)
    attacked, iterations, queries = [], [], []
    starts = range(0, len(crops), batch_size)
    with eval_mode(detector):
        for start in progress(starts) if progress else starts:
            chunk = np.stack(crops[start : start + batch_size])
            images = torch.from_numpy(chunk).permute(0, 3, 1, 2).float().div(255).to(device)
            targets = torch.from_numpy(labels[start : start + batch_size] == 0)
            result = run_attack(method, scorer, images, replace(config, seed=config.seed + start), targets)
            rounded = to_uint8(images, result.adversarial, config.eps).byte().permute(0, 2, 3, 1).cpu().numpy()
            attacked += list(rounded)
            iterations += result.iterations.tolist()
            queries += result.queries.tolist()
    return AttackedAccuracy(
        method=method,
        eps=config.eps,
        labels=labels,
        clean_logits=score_frames(detector, list(crops), batch_size),
        attacked_logits=score_frames(detector, attacked, batch_size),
        iterations=np.asarray(iterations),
        queries=np.asarray(queries),
    )
