"""Evaluate a detector on folders of real and fake videos (or images), as FaceForensics++
and DeepfakeBench report: ACC, AUC, EER and AP at frame level (every scored frame
carries its video's label) and at video level (the video score of `pipeline.py`)."""

from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from fakelab.atomic import atomic_output
from fakelab.detection.metrics import DetectionMetrics, detection_metrics, roc_curve
from fakelab.detection.pipeline import (
    DEFAULT_FRAMES,
    DEFAULT_THRESHOLD,
    SCORING_RULE,
    ScanFailure,
    VideoScore,
    media_files,
    scan,
)
from fakelab.detection.plots import roc_png
from fakelab.detection.spec import DeepfakeDetector
from fakelab.errors import InputError

PathLike = str | os.PathLike
LEVELS = ("frame", "video")


@dataclass
class LabelledScore:
    score: VideoScore
    label: int  # 1 fake, 0 real


@dataclass
class EvaluationResult:
    scores: list[LabelledScore]
    threshold: float
    failures: list[ScanFailure] = field(default_factory=list)

    def labels_and_probabilities(self, level: str) -> tuple[np.ndarray, np.ndarray]:
        if level == "video":
            return (
                np.array([s.label for s in self.scores]),
                np.array([s.score.score for s in self.scores]),
            )
        return (
            np.concatenate([np.full(len(s.score.logits), s.label) for s in self.scores]),
            np.concatenate([s.score.probabilities for s in self.scores]),
        )

    def metrics(self, level: str) -> DetectionMetrics:
        return detection_metrics(*self.labels_and_probabilities(level), self.threshold)

    def to_json(self) -> dict:
        return {
            "scoring": SCORING_RULE,
            "threshold": self.threshold,
            **{level: self.metrics(level).to_json() for level in LEVELS},
            "failures": [failure.to_json() for failure in self.failures],
        }

    def table(self) -> str:
        """The metrics as an aligned text table."""
        lines = [f"{'level':<7}{'ACC':>8}{'AUC':>8}{'EER':>8}{'AP':>8}{'real':>7}{'fake':>7}"]
        for level in LEVELS:
            m = self.metrics(level)
            lines.append(f"{level:<7}{m.accuracy:8.4f}{m.auc:8.4f}{m.eer:8.4f}{m.ap:8.4f}{m.reals:7d}{m.fakes:7d}")
        return "\n".join(lines)


def evaluate_detection(
    detector: DeepfakeDetector,
    real: PathLike | Sequence[PathLike],
    fake: PathLike | Sequence[PathLike],
    frames: int = DEFAULT_FRAMES,
    threshold: float = DEFAULT_THRESHOLD,
    face_detector: str | None = None,
    on_result: Callable[[VideoScore | ScanFailure], None] | None = None,
) -> EvaluationResult:
    """Score every real and fake file (a folder, searched recursively, or a list of files).

    Files that cannot be scored are recorded in `failures` and left out of the metrics.
    """
    result = EvaluationResult([], threshold)
    for label, source in ((0, real), (1, fake)):
        paths = media_files(source, recursive=True) if isinstance(source, (str, os.PathLike)) else list(source)
        scanned = scan(detector, paths, frames, threshold, face_detector, on_result)
        result.scores += [LabelledScore(score, label) for score in scanned.scores]
        result.failures += scanned.failures
    if len({s.label for s in result.scores}) < 2:
        raise InputError("evaluation needs at least one scored real and one scored fake file")
    return result


def write_evaluation(result: EvaluationResult, folder: PathLike) -> dict[str, Path]:
    """Write metrics.json, scores.csv (one row per file) and roc.png into `folder`."""
    folder = Path(folder)
    paths = {name: folder / name for name in ("metrics.json", "scores.csv", "roc.png")}
    with atomic_output(paths["metrics.json"]) as tmp:
        tmp.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    with atomic_output(paths["scores.csv"]) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["file", "label", "score", "verdict", "frames_scored"])
        for item in result.scores:
            label = "fake" if item.label else "real"
            writer.writerow([item.score.source, label, f"{item.score.score:.6f}", item.score.verdict, len(item.score.logits)])
    curves = {}
    for level in LEVELS:
        labels, probabilities = result.labels_and_probabilities(level)
        fpr, tpr, _ = roc_curve(labels, probabilities)
        curves[f"{level} level"] = (fpr, tpr, result.metrics(level).auc)
    with atomic_output(paths["roc.png"]) as tmp:
        tmp.write_bytes(roc_png(curves, "ROC, fake = positive"))
    return paths
