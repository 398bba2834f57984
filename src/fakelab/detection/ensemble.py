"""Ensembles of detectors: the members' fake logits averaged (Bonettini et al., ICPR 2020,
fuse their EfficientNets this way), and the cue model as one more member at video level.

`EnsembleDetector` is itself a `DeepfakeDetector`, so everything that scores, reports on or
attacks one detector takes an ensemble: its input is RGB in [0, 1] at the largest member's
size, and each member gets the images resized and normalised its own way. Gradients flow
through every member.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fakelab.detection.spec import DeepfakeDetector, InputSpec
from fakelab.errors import InputError


class EnsembleDetector(DeepfakeDetector):
    """Mean of the members' fake logits."""

    def __init__(self, members: Sequence[DeepfakeDetector]):
        super().__init__()
        if len(members) < 1:
            raise InputError("an ensemble needs at least one detector")
        self.members = nn.ModuleList(members)
        self.arch = "ensemble(" + " + ".join(member.arch for member in members) + ")"
        self.input_spec = InputSpec(max(member.input_spec.size for member in members), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))

    def _member_input(self, member: DeepfakeDetector, images: torch.Tensor) -> torch.Tensor:
        size = member.input_spec.size
        if images.shape[-1] != size or images.shape[-2] != size:
            images = F.interpolate(images, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
        return member.input_spec.normalize(images)

    def member_logits(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) RGB in [0, 1] -> (members, N) fake logits."""
        return torch.stack([member.fake_logit(self._member_input(member, images)) for member in self.members])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fake_logit(images)

    def fake_logit(self, images: torch.Tensor) -> torch.Tensor:
        return self.member_logits(images).mean(dim=0)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """The members' embeddings side by side."""
        return torch.cat([member.embed(self._member_input(member, images)) for member in self.members], dim=1)

    def embedding_widths(self) -> list[int]:
        """How many features of `embed` each member contributes (measured once on a blank image)."""
        if not hasattr(self, "_widths"):
            reference = next(self.parameters())
            blank = torch.zeros(1, 3, self.input_spec.size, self.input_spec.size, device=reference.device)
            was_training = self.training
            self.eval()
            with torch.no_grad():
                self._widths = [
                    member.embed(self._member_input(member, blank)).shape[1] for member in self.members
                ]
            self.train(was_training)
        return self._widths

    def classify(self, embedding: torch.Tensor) -> torch.Tensor:
        logits, start = [], 0
        for member, width in zip(self.members, self.embedding_widths()):
            logits.append(member.classify(embedding[:, start : start + width]))
            start += width
        return torch.stack(logits).mean(dim=0)

    def cam_layer(self) -> nn.Module:
        return self.members[0].cam_layer()

    def conv_norm_pairs(self):
        for member in self.members:
            yield from member.conv_norm_pairs()


@dataclass(frozen=True)
class MemberScore:
    """One ensemble member's video-level log-odds."""

    name: str
    logit: float

    @property
    def probability(self) -> float:
        return 1 / (1 + math.exp(-max(-60.0, min(60.0, self.logit))))


@dataclass(frozen=True)
class CombinedVerdict:
    """`--method all`: the video logits of the CNN (ensemble) and of the cue model, averaged."""

    source: str
    members: tuple[MemberScore, ...]
    threshold: float

    @property
    def logit(self) -> float:
        return sum(member.logit for member in self.members) / len(self.members)

    @property
    def probability_fake(self) -> float:
        return MemberScore("all", self.logit).probability

    @property
    def verdict(self) -> str:
        return "fake" if self.probability_fake >= self.threshold else "real"

    def summary(self) -> str:
        parts = ", ".join(f"{m.name} {m.probability:.3f}" for m in self.members)
        return (
            f"{self.source}: {self.verdict.upper()} (method all, probability fake {self.probability_fake:.3f}, "
            f"threshold {self.threshold:g}; mean of the members' logits: {parts})"
        )

    def to_json(self) -> dict:
        return {
            "file": self.source,
            "method": "all",
            "verdict": self.verdict,
            "probability_fake": self.probability_fake,
            "logit": self.logit,
            "threshold": self.threshold,
            "members": [{"name": m.name, "logit": m.logit, "probability": m.probability} for m in self.members],
        }


def load_detectors(paths: Sequence, arch: str | None = None) -> DeepfakeDetector:
    """One detector, or the ensemble of several checkpoints (each with `arch`, else its own)."""
    from fakelab.detection.checkpoint import load_detector

    detectors = [load_detector(path, arch) for path in paths]
    return detectors[0] if len(detectors) == 1 else EnsembleDetector(detectors).eval()
