"""Self-reenactment (FOMM's reconstruction protocol) on ../shared/media: portrait vs
landmark-warp, side by side.

Each talking-head video is cut to its face (256x256, `fakelab crop`'s plan) and
its first frames animated from its own first frame; every generated frame is
compared with the real one: L1 (pixel values in [0, 1]), SSIM (grey, scikit-image),
AKD (dlib landmarks, px at 256) and AED (dlib 128-d embeddings), as
`fakelab evaluate reconstruction` scores them. landmark-warp runs as that command
runs it (absolute motion); the portrait model always takes motion relative to the
first frame, which for self-reenactment is the same thing.

    nice -n 10 python bench/portrait_reconstruction.py [--frames 100]
"""

from __future__ import annotations

import argparse
import time

import cv2
import numpy as np
from skimage.metrics import structural_similarity

from fakelab.animation.landmark_warp import LandmarkWarpAnimator
from fakelab.animation.portrait import PortraitAnimator
from fakelab.faces import apply_crop, plan_video_crop
from fakelab.metrics.evaluate import reconstruction_totals
from fakelab.metrics.faces import read_faces
from fakelab.metrics.scores import ScoreTotals
from fakelab.video import iter_frames
from portrait_common import DRIVERS, MEDIA
from itertools import islice


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    return float(
        structural_similarity(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), cv2.cvtColor(b, cv2.COLOR_RGB2GRAY), data_range=255)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100)
    parser.add_argument("--videos", nargs="*", default=list(DRIVERS))
    args = parser.parse_args()
    cv2.setNumThreads(1)
    models = {
        "landmark-warp": LandmarkWarpAnimator(size=(256, 256), adapt_scale=True, relative=False),
        "portrait": PortraitAnimator(size=(256, 256)),
    }
    totals = {name: ScoreTotals.empty() for name in models}
    similarity = {name: [] for name in models}
    for video in args.videos:
        path = MEDIA / f"{video}.mp4"
        plan = plan_video_crop(path)
        frames = list(islice(apply_crop(iter_frames(path), plan), args.frames))
        real_faces = read_faces(frames)
        for name, animator in models.items():
            started = time.perf_counter()
            generated = list(animator.animate(frames[0], frames))
            seconds = time.perf_counter() - started
            video_totals = reconstruction_totals(frames, generated, real_faces)
            totals[name].add(video_totals)
            scores = video_totals.scores()
            video_ssim = [ssim(g, r) for g, r in zip(generated, frames)]
            similarity[name] += video_ssim
            print(
                f"{video} {name:14s} L1 {scores['l1']:.4f} SSIM {np.mean(video_ssim):.3f} AKD {scores['akd']:.3f} "
                f"AED {scores['aed']:.3f} ({len(frames)} frames, {len(frames) / seconds:.1f} fps incl. tracking)",
                flush=True,
            )
    print()
    print("| model | L1 | SSIM | AKD | AED | MKR |")
    print("|---|---|---|---|---|---|")
    for name in models:
        scores = totals[name].scores()
        print(
            f"| {name} | {scores['l1']:.4f} | {np.mean(similarity[name]):.3f} | {scores['akd']:.3f} | "
            f"{scores['aed']:.3f} | {scores['mkr']:.3f} |"
        )


if __name__ == "__main__":
    main()
