"""Frames per second of the portrait model on CPU, at 256x256 and at s0.jpg's native size,
beside landmark-warp's renderer on the same frames.

`render` is timed given the driving landmarks (what a live avatar that already
tracks the face calls: the live budget is 15-25 ms a frame), and with the model's
own face tracking. One OpenCV, BLAS and torch thread: the numbers are for one core.
Each figure is given as wall-clock and as this process's CPU time, which a machine
shared with other jobs inflates much less (the best of `--repeats` runs of each).

    nice -n 10 python bench/portrait_speed.py [--frames 60] [--repeats 3]
"""

from __future__ import annotations

import os

# One BLAS thread too (set before numpy loads): the thin-plate product is small, and
# OpenBLAS's worker threads spinning on a shared 2-core machine made a 5 ms frame 18 ms.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse   # noqa: E402
import time   # noqa: E402
from itertools import islice   # noqa: E402

import cv2   # noqa: E402
import numpy as np   # noqa: E402

from fakelab.animation.landmark_warp import LandmarkWarper, transfer_motion  # noqa: E402
from fakelab.animation.portrait import PortraitAnimator  # noqa: E402
from fakelab.faces import FaceTracker, apply_crop, crop_image, largest_face, plan_video_crop  # noqa: E402
from fakelab.video import iter_frames, load_image  # noqa: E402
from portrait_common import MEDIA  # noqa: E402


def best_of(run, repeats: int) -> tuple[float, float]:
    """(wall-clock, CPU) seconds of the fastest of `repeats` runs."""
    times = []
    for _ in range(repeats):
        started, cpu = time.perf_counter(), time.process_time()
        run()
        times.append((time.perf_counter() - started, time.process_time() - cpu))
    return min(times)


def landmarks_of(frames) -> list[np.ndarray]:
    tracker = FaceTracker()
    return [tracker.update(frame)[0].landmarks for frame in frames]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cv2.setNumThreads(1)
    import torch

    torch.set_num_threads(1)

    video = MEDIA / "d12.mp4"
    crops = list(islice(apply_crop(iter_frames(video), plan_video_crop(video)), args.frames))
    full = list(islice(iter_frames(video), args.frames))
    crop_landmarks, full_landmarks = landmarks_of(crops), landmarks_of(full)
    s7 = crop_image(load_image(MEDIA / "s7.jpg"), 256).image
    s0 = load_image(MEDIA / "s0.jpg")
    cases = [("256x256 (s7 face crop, d12 crops)", s7, crops, crop_landmarks),
             (f"{s0.shape[1]}x{s0.shape[0]} (s0.jpg native, d12 512x512)", s0, full, full_landmarks)]
    print("| size | portrait render, wall (CPU) | portrait incl. tracking, wall (CPU) | landmark-warp render, wall (CPU) "
          "| portrait/landmark-warp CPU time |")
    print("|---|---|---|---|---|")
    for label, source, frames, landmarks in cases:
        source_landmarks = largest_face(source, "source")
        portrait = PortraitAnimator().prepare(source, source_landmarks)

        def render_given():
            prepared = PortraitAnimator().prepare(source, source_landmarks)
            for frame, lm in zip(frames, landmarks):
                prepared.render(frame, lm)

        def render_tracked():
            prepared = PortraitAnimator().prepare(source, source_landmarks)
            for frame in frames:
                prepared.render(frame)

        warper = LandmarkWarper(source, source_landmarks)
        targets = [transfer_motion(source_landmarks, lm, landmarks[0]) for lm in landmarks]

        def baseline():
            for target in targets:
                warper(target)

        given = [t / len(frames) for t in best_of(render_given, args.repeats)]
        tracked = [t / len(frames) for t in best_of(render_tracked, 1)]
        base = [t / len(frames) for t in best_of(baseline, args.repeats)]
        cells = [f"{1 / wall:.1f} fps, {1000 * wall:.1f} ms ({1 / cpu:.1f} fps, {1000 * cpu:.1f} ms)" for wall, cpu in (given, tracked, base)]
        print(f"| {label} | {' | '.join(cells)} | {given[1] / base[1]:.2f} |", flush=True)
        del portrait


if __name__ == "__main__":
    main()
