"""How well the attacks fool a trained detector, and what is left after H.264 re-encoding.

The detector and clips are those of `attack_common.py` (Lite0 trained by the detection
package on landmark-warp fakes, reals and self-blended pseudo-fakes). The attacked clips
are held-out fakes that the detector catches: at least 90% of their frames called fake.
Each clip goes through `attack_video` (the engine of `fakelab attack`) for each method,
with the default budget (eps 16/255, step 1/255, at most 100 iterations, early stop at the
method's default margin: 1 log-odds, 5 for robust) and is scored again after re-encoding
at each CRF. `ifgsm:5` (I-FGSM stopped at robust's margin) separates what EOT brings from
what a wider margin brings. Then `fakelab detect`'s own
pipeline (`score_file`: the face tracked afresh, every frame) is run on the delivered mp4.

Prints, per method: frames called fake before and after (lossless and each CRF), videos
fooled (under half their frames called fake), mean PSNR and SSIM over the face crops,
iterations and queries; writes recompression.json in the work folder.

    python bench/attack_recompression.py [--work /tmp/fakelab-attack-bench] [--clips 3]
        [--methods ifgsm robust ifgsm:5] [--crfs 23 30 40] [--frames N] [--eps 16] [--json recompression.json]

The black-box figures: --methods nes --frames 8 --json nes.json
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from attack_common import DEFAULT_WORK, caught_fakes, log, prepare_clips, trained_detector
from fakelab.attacks.methods import ATTACKS, ROBUST_MARGIN, AttackConfig
from fakelab.attacks.video import attack_video
from fakelab.detection.checkpoint import load_detector
from fakelab.detection.pipeline import score_file


def method_spec(text: str) -> str:
    method, _, margin = text.partition(":")
    if method not in ATTACKS:
        raise argparse.ArgumentTypeError(f"unknown attack {method!r}; known: {', '.join(ATTACKS)}")
    if margin:
        float(margin)
    return text


def summarise(method: str, reports: list, crfs: list[int], detect_rates: list[float]) -> dict:
    frames = [frame for report in reports for frame in report.frames]

    def rate(logits) -> float:
        return float(np.mean(np.asarray(logits) >= 0))

    psnr = [f.psnr for f in frames if not math.isinf(f.psnr)]
    summary = {
        "method": method,
        "clips": len(reports),
        "frames": len(frames),
        "called_fake_before": rate([f.logit_before for f in frames]),
        "called_fake_after": rate([f.logit_after for f in frames]),
        "videos_fooled": sum(r.after.video_fooled for r in reports),
        "called_fake_after_crf": {crf: rate([f.recompressed[crf] for f in frames]) for crf in crfs},
        "videos_fooled_after_crf": {crf: sum(r.after_recompression(crf).video_fooled for r in reports) for crf in crfs},
        "fakelab_detect_on_delivered_mp4": float(np.mean(detect_rates)),
        "mean_psnr_db": float(np.mean(psnr)) if psnr else math.inf,
        "mean_ssim": float(np.mean([f.ssim for f in frames])),
        "max_linf": max(f.linf for f in frames),
        "mean_iterations": float(np.mean([f.iterations for f in frames])),
        "mean_queries": float(np.mean([f.queries for f in frames])),
        "seconds": sum(r.seconds for r in reports),
    }
    return summary


def print_table(summaries: list[dict], crfs: list[int]) -> None:
    header = ["method", "frames", "fake before", "after (lossless)", *(f"after CRF {c}" for c in crfs),
              "videos fooled", "PSNR dB", "SSIM", "iterations", "queries"]
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for s in summaries:
        clips = s["clips"]
        cells = [
            s["method"], str(s["frames"]), f"{s['called_fake_before']:.1%}", f"{s['called_fake_after']:.1%}",
            *(f"{s['called_fake_after_crf'][c]:.1%}" for c in crfs),
            f"{s['videos_fooled']}/{clips} (CRF {crfs[0]}: {s['videos_fooled_after_crf'][crfs[0]]}/{clips})",
            f"{s['mean_psnr_db']:.2f}", f"{s['mean_ssim']:.4f}", f"{s['mean_iterations']:.1f}", f"{s['mean_queries']:.0f}",
        ]
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, default=DEFAULT_WORK)
    parser.add_argument("--clips", type=int, default=3, help="caught test fakes to attack")
    parser.add_argument(
        "--methods", nargs="+", type=method_spec, default=["ifgsm", "robust", f"ifgsm:{ROBUST_MARGIN:g}"],
        help="attacks, each with an optional early-stop margin: ifgsm, robust, ifgsm:5 ...",
    )
    parser.add_argument("--crfs", nargs="+", type=int, default=[23, 30, 40])
    parser.add_argument("--frames", type=int, help="attack only the first N frames of each clip")
    parser.add_argument("--json", default="recompression.json", help="file written in the work folder")
    parser.add_argument("--eps", type=float, default=16, help="budget in uint8 levels (default 16)")
    args = parser.parse_args()
    torch.manual_seed(0)

    clips = prepare_clips(args.work)
    detector = load_detector(trained_detector(clips))
    targets = caught_fakes(detector, clips, limit=args.clips)
    log("attacking " + ", ".join(f"{path.name} ({rate:.0%} of frames called fake)" for path, rate in targets))
    summaries = []
    for spec in args.methods:
        method, _, margin = spec.partition(":")
        config = AttackConfig(eps=args.eps / 255, margin=float(margin) if margin else None)
        reports, detect_rates = [], []
        for clip, _ in targets:
            output = args.work / "attacks" / f"{spec.replace(':', '-margin')}-eps{args.eps:g}" / f"{clip.stem}.mp4"
            started = time.perf_counter()
            report = attack_video(clip, detector, output, method, config, frames=args.frames, recompress=args.crfs)
            reports.append(report)
            detected = score_file(detector, output, frames=10**6)
            detect_rates.append(float(np.mean(detected.logits >= 0)))
            log(f"{spec} {clip.name}: {report.summary()} ({time.perf_counter() - started:.0f} s); "
                f"fakelab detect on the mp4: {detect_rates[-1]:.0%} of frames fake, verdict {detected.verdict}")
        summaries.append(summarise(spec, reports, args.crfs, detect_rates))
        summaries[-1]["margin"] = report.config["margin"]
    print_table(summaries, args.crfs)
    result = {
        "detector": str(trained_detector(clips)),
        "clips": [{"file": str(path), "called_fake": rate} for path, rate in targets],
        "config": {key: value for key, value in asdict(AttackConfig(eps=args.eps / 255)).items() if key != "margin"},
        "methods": summaries,
    }
    (args.work / args.json).write_text(json.dumps(result, indent=2))
    log(f"wrote {args.work / args.json}")


if __name__ == "__main__":
    main()
