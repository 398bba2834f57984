"""A detector's accuracy when every face it is shown is attacked.

Each face crop, at the detector's input size as the detection pipeline cuts it, is pushed
towards the wrong class (fakes towards "real", reals towards "fake"), rounded to uint8
within the budget, and scored again by the pipeline. `evaluate_under_attack` does this for
labelled crops; `evaluate_detection_under_attack` for folders of real and fake videos, with
the metrics of `fakelab evaluate detection` (the engine of its `--attack` option).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Callable, Iterable, Sequence

import numpy as np
import torch

from fakelab.attacks.methods import AttackConfig, run_attack, to_uint8
from fakelab.attacks.scoring import DetectorScorer
from fakelab.attacks.training import eval_mode
from fakelab.detection.evaluate import EvaluationResult, LabelledScore
from fakelab.detection.pipeline import (
    DEFAULT_FRAMES,
    DEFAULT_THRESHOLD,
    ScanFailure,
    VideoScore,
    detector_device,
    file_faces,
    media_files,
    score_faces,
    score_frames,
)
from fakelab.detection.spec import DeepfakeDetector
from fakelab.errors import FakelabError, InputError

PathLike = str | os.PathLike
Progress = Callable[[Iterable], Iterable]


@dataclass(frozen=True)
class AttackedCrops:
    crops: list[np.ndarray]  # uint8, as the crops given
    iterations: np.ndarray
    queries: np.ndarray


def attack_face_crops(
    detector: DeepfakeDetector,
    crops: Sequence[np.ndarray],
    labels: Sequence[int],
    method: str = "pgd",
    config: AttackConfig = AttackConfig(),
    batch_size: int = 16,
    progress: Progress | None = None,
) -> AttackedCrops:
    """Each uint8 crop (all of one size) attacked towards the wrong class: label 1 (fake)
    towards "real", label 0 towards "fake"."""
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
            towards_fake = torch.from_numpy(labels[start : start + batch_size] == 0)
            result = run_attack(method, scorer, images, replace(config, seed=config.seed + start), towards_fake)
            rounded = to_uint8(images, result.adversarial, config.eps).byte().permute(0, 2, 3, 1).cpu().numpy()
            attacked += list(rounded)
            iterations += result.iterations.tolist()
            queries += result.queries.tolist()
    return AttackedCrops(attacked, np.asarray(iterations), np.asarray(queries))


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
    progress: Progress | None = None,
) -> AttackedAccuracy:
    """Accuracy on labelled uint8 face crops (all of one size), clean and attacked."""
    attacked = attack_face_crops(detector, crops, labels, method, config, batch_size, progress)
    return AttackedAccuracy(
        method=method,
        eps=config.eps,
        labels=np.asarray(labels, dtype=np.int64),
        clean_logits=score_frames(detector, list(crops), batch_size),
        attacked_logits=score_frames(detector, attacked.crops, batch_size),
        iterations=attacked.iterations,
        queries=attacked.queries,
    )


def evaluate_detection_under_attack(
    detector: DeepfakeDetector,
    real: PathLike,
    fake: PathLike,
    method: str = "pgd",
    config: AttackConfig = AttackConfig(),
    frames: int = DEFAULT_FRAMES,
    threshold: float = DEFAULT_THRESHOLD,
    face_detector: str | None = None,
    on_result: Callable[[VideoScore | ScanFailure], None] | None = None,
) -> EvaluationResult:
    """`fakelab.detection.evaluate.evaluate_detection` with every scored face attacked
    first; files that cannot be scored are recorded as failures, as there."""
    result = EvaluationResult([], threshold)
    for label, folder in ((0, real), (1, fake)):
        for path in media_files(folder, recursive=True):
            try:
                faces = file_faces(path, detector.input_spec.size, frames, face_detector)
            except FakelabError as error:
                outcome: VideoScore | ScanFailure = ScanFailure(path, str(error))
                result.failures.append(outcome)
            else:
                attacked = attack_face_crops(detector, faces.crops, [label] * len(faces), method, config)
                outcome = score_faces(detector, replace(faces, crops=attacked.crops), threshold)
                result.scores.append(LabelledScore(outcome, label))
            if on_result:
                on_result(outcome)
    if len({s.label for s in result.scores}) < 2:
        raise InputError("evaluation needs at least one scored real and one scored fake file")
    return result
