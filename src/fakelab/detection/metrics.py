"""Binary detection metrics as FaceForensics++ and DeepfakeBench report them.

Labels are 1 for fake (the positive class) and 0 for real; scores are higher for
"more likely fake" (probabilities or logits: every metric but accuracy only uses
their order). Tied scores are handled as one threshold, as scikit-learn does.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from fakelab.errors import InputError


def _checked(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).astype(np.int64).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise InputError(f"{labels.size} labels but {scores.size} scores")
    if not np.isin(labels, (0, 1)).all():
        raise InputError("labels must be 0 (real) or 1 (fake)")
    if labels.min(initial=1) == labels.max(initial=0):
        raise InputError("the metrics need both real (0) and fake (1) examples")
    return labels, scores


def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(false positive rates, true positive rates, thresholds), from (0, 0) to (1, 1).

    Point k counts as fake every example scoring at least thresholds[k]; the first
    threshold is +inf (nothing called fake).
    """
    labels, scores = _checked(labels, scores)
    order = np.argsort(-scores, kind="stable")
    labels, scores = labels[order], scores[order]
    # The last position of each run of equal scores: one ROC point per distinct score.
    ends = np.flatnonzero(np.diff(scores) != 0).tolist() + [len(scores) - 1]
    true_positives = np.cumsum(labels)[ends]
    false_positives = (np.asarray(ends) + 1) - true_positives
    tpr = np.concatenate([[0.0], true_positives / labels.sum()])
    fpr = np.concatenate([[0.0], false_positives / (len(labels) - labels.sum())])
    thresholds = np.concatenate([[np.inf], scores[ends]])
    return fpr, tpr, thresholds


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve (trapezoids): the chance that a random fake outscores a
    random real, ties counting one half."""
    fpr, tpr, _ = roc_curve(labels, scores)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def equal_error_rate(labels, scores) -> float:
    """The error rate where the false positive rate equals the false negative rate,
    interpolated linearly between the two ROC points around the crossing."""
    fpr, tpr, _ = roc_curve(labels, scores)
    fnr = 1.0 - tpr
    gap = fpr - fnr  # rises from -1 to +1 along the curve
    crossing = int(np.argmax(gap >= 0))
    if gap[crossing] == 0:
        return float(fpr[crossing])
    before, after = crossing - 1, crossing
    t = -gap[before] / (gap[after] - gap[before])
    return float(fpr[before] + t * (fpr[after] - fpr[before]))


def average_precision(labels, scores) -> float:
    """Average precision: the precision at each distinct threshold weighted by the recall
    it adds (no interpolation, as scikit-learn computes it)."""
    labels, scores = _checked(labels, scores)
    fpr, tpr, _ = roc_curve(labels, scores)
    positives = labels.sum()
    negatives = len(labels) - positives
    true_positives = tpr[1:] * positives
    called_fake = true_positives + fpr[1:] * negatives
    precision = true_positives / called_fake
    return float(np.sum(np.diff(tpr) * precision))


def accuracy(labels, probabilities, threshold: float = 0.5) -> float:
    """The fraction of examples whose verdict (fake when probability >= threshold) is right."""
    labels, probabilities = _checked(labels, probabilities)
    return float(np.mean((probabilities >= threshold) == (labels == 1)))


@dataclass(frozen=True)
class DetectionMetrics:
    accuracy: float
    auc: float
    eer: float
    ap: float
    reals: int
    fakes: int

    def to_json(self) -> dict:
        return asdict(self)


def detection_metrics(labels, probabilities, threshold: float = 0.5) -> DetectionMetrics:
    """ACC at `threshold`, AUC, EER and AP of fake probabilities against labels (1 = fake)."""
    labels, probabilities = _checked(labels, probabilities)
    return DetectionMetrics(
        accuracy=accuracy(labels, probabilities, threshold),
        auc=roc_auc(labels, probabilities),
        eer=equal_error_rate(labels, probabilities),
        ap=average_precision(labels, probabilities),
        reals=int((labels == 0).sum()),
        fakes=int(labels.sum()),
    )
