"""The video-reconstruction scores of the FOMM paper, as plain functions of arrays.

- L1: mean absolute difference of pixel values in [0, 1].
- AKD (average keypoint distance): mean Euclidean distance, in pixels, between
  the facial landmarks of a real and a generated frame, over the frames where
  both show a face. (The reference script `pose-evaluation/cmp_kp.py` averages
  |dx| and |dy| instead; for the same landmarks that is between 1/2 and
  1/sqrt(2) of the Euclidean distance.)
- MKR (missing keypoint rate): the fraction of frames with a face in the real
  frame where none is found in the generated one. With a face detector, all of a
  face's landmarks are found or missed together.
- AED (average embedding distance): mean L2 distance between identity
  embeddings; `squared` gives the mean squared L2 distance, which is what the
  reference script `pose-evaluation/cmp.py` reports as AED.

Frames without a face are given as None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

Optional = np.ndarray | None


def l1_error(generated: np.ndarray, real: np.ndarray) -> float:
    """Mean absolute difference of uint8 (or [0, 1] float) frames, on the [0, 1] scale."""
    generated, real = np.asarray(generated), np.asarray(real)
    if generated.shape != real.shape:
        raise ValueError(f"frames differ in shape: {generated.shape} vs {real.shape}")
    scale = 255.0 if generated.dtype == np.uint8 else 1.0
    return float(np.abs(generated.astype(np.float64) - real.astype(np.float64)).mean() / scale)


def _pairs(real: Sequence[Optional], generated: Sequence[Optional]) -> list[tuple[np.ndarray, np.ndarray]]:
    if len(real) != len(generated):
        raise ValueError(f"{len(real)} real frames but {len(generated)} generated ones")
    return [(r, g) for r, g in zip(real, generated) if r is not None and g is not None]


def keypoint_distances(real: Sequence[Optional], generated: Sequence[Optional]) -> list[float]:
    """Per frame with a face in both: the mean Euclidean distance between corresponding keypoints."""
    return [float(np.linalg.norm(np.asarray(r) - np.asarray(g), axis=-1).mean()) for r, g in _pairs(real, generated)]


def missing_flags(real: Sequence[Optional], generated: Sequence[Optional]) -> list[bool]:
    """Per frame with a face in the real frame: whether the generated frame lacks one."""
    if len(real) != len(generated):
        raise ValueError(f"{len(real)} real frames but {len(generated)} generated ones")
    return [g is None for r, g in zip(real, generated) if r is not None]


def embedding_distances(real: Sequence[Optional], generated: Sequence[Optional]) -> list[float]:
    """Per frame with a face in both: the L2 distance between the identity embeddings."""
    return [float(np.linalg.norm(np.asarray(r) - np.asarray(g))) for r, g in _pairs(real, generated)]


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


@dataclass
class ScoreTotals:
    """Per-frame values collected over many videos; scores average over all frames, as the reference does."""

    l1: list[float]
    keypoint: list[float]
    missing: list[bool]
    embedding: list[float]

    @classmethod
    def empty(cls) -> ScoreTotals:
        return cls([], [], [], [])

    def add(self, other: ScoreTotals) -> None:
        self.l1 += other.l1
        self.keypoint += other.keypoint
        self.missing += other.missing
        self.embedding += other.embedding

    def scores(self) -> dict[str, float | None]:
        """None where a score has nothing to average (e.g. no face anywhere, or no ground truth for L1)."""
        return {
            "l1": _mean(self.l1),
            "akd": _mean(self.keypoint),
            "mkr": _mean([float(flag) for flag in self.missing]),
            "aed": _mean(self.embedding),
            "aed_squared": _mean([distance**2 for distance in self.embedding]),
        }
