"""What `fakelab attack` measured, per frame and overall, as JSON and as Markdown.

A frame is "called fake" when the detector gives it P(fake) >= 0.5. The attack succeeds on
a frame that was called fake before and is called real after; a video is fooled when under
half of its frames are called fake. The detector's own video verdict (sigmoid of the mean
frame logit, as `fakelab detect` decides) is reported beside it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from fakelab.detection.pipeline import sigmoid

FRAME_THRESHOLD = 0.5
FOOLED_BELOW = 0.5  # of the frames called fake


@dataclass
class FrameRecord:
    index: int
    box: list[int]  # the attacked crop: left, top, right, bottom
    face_found: bool  # False: the tracker held the box of a nearby frame
    iterations: int
    queries: int
    linf: int  # largest change of a channel, in uint8 levels
    psnr: float  # dB over the crop; inf when nothing changed
    ssim: float  # over the crop
    # Fake log-odds of the crop as the detection pipeline scores the written pixels.
    logit_before: float = math.nan
    logit_after: float = math.nan
    # H.264 CRF -> the frame's fake logit in the video re-encoded at that CRF.
    recompressed: dict[int, float] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "index": self.index,
            "box": self.box,
            "face_found": self.face_found,
            "p_fake_before": float(sigmoid(self.logit_before)),
            "p_fake_after": float(sigmoid(self.logit_after)),
            "success": bool(_called_fake(self.logit_before) and not _called_fake(self.logit_after)),
            "iterations": self.iterations,
            "queries": self.queries,
            "linf": self.linf,
            "linf_fraction": self.linf / 255,
            "psnr_db": None if math.isinf(self.psnr) else self.psnr,
            "ssim": self.ssim,
            "p_fake_recompressed": {str(crf): float(sigmoid(logit)) for crf, logit in self.recompressed.items()},
        }


@dataclass(frozen=True)
class Verdicts:
    """How a set of frame logits reads: per frame and for the video."""

    logits: np.ndarray

    @property
    def fake_rate(self) -> float:
        return float(np.mean(self.logits >= 0))

    @property
    def video_fooled(self) -> bool:
        return self.fake_rate < FOOLED_BELOW

    @property
    def detector_score(self) -> float:
        return float(sigmoid(np.mean(self.logits)))

    def to_json(self) -> dict:
        return {
            "frames_called_fake": self.fake_rate,
            "video_fooled": self.video_fooled,
            "detector_video_score": self.detector_score,
            "mean_p_fake": float(np.mean(sigmoid(self.logits))),
        }


@dataclass
class VideoAttackReport:
    source: Path
    output: Path
    lossless: Path
    method: str
    detector: str
    config: dict
    frames: list[FrameRecord]
    recompressed_videos: dict[int, Path]  # CRF -> file, the delivered mp4 among them
    delivered_crf: int
    seconds: float

    @property
    def before(self) -> Verdicts:
        return Verdicts(np.array([f.logit_before for f in self.frames]))

    @property
    def after(self) -> Verdicts:
        return Verdicts(np.array([f.logit_after for f in self.frames]))

    def after_recompression(self, crf: int) -> Verdicts:
        return Verdicts(np.array([f.recompressed[crf] for f in self.frames]))

    @property
    def success_rate(self) -> float:
        """Of the frames called fake before the attack, the fraction called real after it."""
        attacked = [f for f in self.frames if _called_fake(f.logit_before)]
        if not attacked:
            return math.nan
        return sum(not _called_fake(f.logit_after) for f in attacked) / len(attacked)

    def _mean(self, name: str) -> float:
        values = [getattr(f, name) for f in self.frames]
        finite = [v for v in values if not math.isinf(v)]
        return float(np.mean(finite)) if finite else math.inf

    def to_json(self) -> dict:
        psnr = self._mean("psnr")
        return {
            "source": str(self.source),
            "output": str(self.output),
            "lossless": str(self.lossless),
            "method": self.method,
            "detector": self.detector,
            "config": self.config,
            "frame_threshold": FRAME_THRESHOLD,
            "video_fooled_when_frames_called_fake_below": FOOLED_BELOW,
            "seconds": self.seconds,
            "overall": {
                "frames": len(self.frames),
                "before": self.before.to_json(),
                "after": self.after.to_json(),
                "frame_success_rate": self.success_rate,
                "max_linf": max(f.linf for f in self.frames),
                "mean_psnr_db": None if math.isinf(psnr) else psnr,
                "mean_ssim": self._mean("ssim"),
                "mean_iterations": self._mean("iterations"),
                "total_queries": sum(f.queries for f in self.frames),
                "recompressed": {
                    str(crf): {"file": str(path), **self.after_recompression(crf).to_json()}
                    for crf, path in self.recompressed_videos.items()
                },
            },
            "frames": [f.to_json() for f in self.frames],
        }

    def to_markdown(self) -> str:
        before, after = self.before, self.after
        crfs = list(self.recompressed_videos)
        lines = [
            f"# Attack report: {self.source.name}",
            "",
            f"- method **{self.method}** against **{self.detector}**, eps {self.config['eps'] * 255:g}/255, "
            f"step {self.config['step'] * 255:g}/255, at most {self.config['max_iterations']} iterations, "
            f"early stop at {self.config['margin']:g} log-odds towards real",
            f"- output: `{self.output}` (H.264 CRF {self.delivered_crf}), lossless: `{self.lossless}`",
            f"- {len(self.frames)} frames in {self.seconds:.1f} s; a frame is called fake at P(fake) >= "
            f"{FRAME_THRESHOLD}; a video is fooled when under {FOOLED_BELOW:.0%} of its frames are called fake",
            "",
            "| | frames called fake | video fooled | detector's video score |",
            "|---|---|---|---|",
            _verdict_row("before the attack", before),
            _verdict_row("after (lossless)", after),
            *(_verdict_row(f"after, H.264 CRF {crf}", self.after_recompression(crf)) for crf in crfs),
            "",
            f"Frame success rate (called fake before, real after): {_percent(self.success_rate)}; "
            f"max L-inf {max(f.linf for f in self.frames)}/255; mean PSNR {_db(self._mean('psnr'))}; "
            f"mean SSIM {self._mean('ssim'):.4f}; mean iterations {self._mean('iterations'):.1f}; "
            f"queries {sum(f.queries for f in self.frames)}.",
            "",
            "| frame | P(fake) before | after | " + " | ".join(f"CRF {crf}" for crf in crfs)
            + " | L-inf | PSNR | SSIM | iterations | queries |",
            "|" + "---|" * (8 + len(crfs)),
        ]
        for frame in self.frames:
            recompressed = " | ".join(f"{sigmoid(frame.recompressed[crf]):.3f}" for crf in crfs)
            lines.append(
                f"| {frame.index} | {sigmoid(frame.logit_before):.3f} | {sigmoid(frame.logit_after):.3f} | "
                + (recompressed + " | " if crfs else "")
                + f"{frame.linf} | {_db(frame.psnr)} | {frame.ssim:.4f} | {frame.iterations} | {frame.queries} |"
            )
        return "\n".join(lines) + "\n"

    def summary(self) -> str:
        parts = [
            f"{self.method}: frames called fake {self.before.fake_rate:.0%} -> {self.after.fake_rate:.0%} "
            f"(video {'fooled' if self.after.video_fooled else 'NOT fooled'})",
            *(
                f"CRF {crf}: {self.after_recompression(crf).fake_rate:.0%}"
                for crf in self.recompressed_videos
            ),
            f"PSNR {_db(self._mean('psnr'))}",
            f"SSIM {self._mean('ssim'):.4f}",
            f"{sum(f.queries for f in self.frames)} queries",
        ]
        return "; ".join(parts) + f" -> {self.output}"


def _called_fake(logit: float) -> bool:
    return logit >= 0


def _verdict_row(label: str, verdicts: Verdicts) -> str:
    fooled = "yes" if verdicts.video_fooled else "no"
    return f"| {label} | {verdicts.fake_rate:.1%} | {fooled} | {verdicts.detector_score:.3f} |"


def _percent(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1%}"


def _db(value: float) -> str:
    return "inf" if math.isinf(value) else f"{value:.2f} dB"
