"""How much faster `fakelab detect` reaches a verdict than the naive FaceForensics++-style
pipeline, on the same video with the same detector, end to end (decoding, faces, model).

- naive: what FaceForensics++'s detect_from_video.py does, for every frame of the video:
  decode it to RGB, run dlib's HOG detector on the whole greyscale frame upsampled once,
  crop the first face 1.3x, score the crop alone (a batch of one);
- fakelab, every frame: `score_file` on all frames: only wanted frames are converted to
  RGB, the face is followed by the face pipeline's tracker (a full detection now and then,
  a re-detection in a small downscaled window otherwise), crops are scored in batches by the
  model `ready_for_inference` makes (batch norms folded, channels-last weights);
- fakelab, default: the same with the 32 frames `fakelab detect` samples by default.

Both video scores are the sigmoid of the mean frame logit. The table gives scored frames
per second, the speed-up per scored frame (every frame on both sides) and in time to a
verdict (default `fakelab detect` against the naive pipeline on every frame), and whether
the verdicts agree. Each timing is the best of --repeats runs, as the machine may be shared.
Use a trained checkpoint (bench/detector_experiment.py writes one): an untrained detector
scores everything near 0.5, where verdicts are a coin toss.

`--backends torch openvino onnxruntime` adds a row per backend for fakelab's side (the
detector's ONNX export on ONNX Runtime or OpenVINO, fakelab.detection.backends); the naive
pipeline always runs torch, as FaceForensics++ does. Rows of one video alternate
naive / backend runs, best of --repeats, because the machine may be shared.

    python bench/detect_speed.py --checkpoint /tmp/fakelab-detector-experiment/lite0-sbi.safetensors
        [--videos ../shared/media/d0.mp4 ...] [--repeats 2] [--backends torch openvino]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from fakelab.detection.backends import DETECTOR_BACKENDS, with_backend
from fakelab.detection.checkpoint import load_detector
from fakelab.detection.efficientnet import efficientnet_lite0
from fakelab.detection.pipeline import (
    DEFAULT_FRAMES,
    ffpp_crop_box,
    ready_for_inference,
    score_file,
    score_frames,
    sigmoid,
)
from fakelab.faces import models
from fakelab.faces.crop import crop_frame
from fakelab.faces.detect import Box
from fakelab.video import iter_frames, probe_video

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared" / "media"


def naive_video_score(detector, path: Path) -> tuple[float, int]:
    """(video score, frames scored) the FaceForensics++ way, on every frame."""
    hog = models.hog_detector()
    size = detector.input_spec.size
    logits = []
    for frame in iter_frames(path):
        faces = hog(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), 1)
        if not faces:
            continue
        face = faces[0]
        box = Box(face.left(), face.top(), face.right() + 1, face.bottom() + 1)
        crop = crop_frame(frame, ffpp_crop_box(box, (frame.shape[1], frame.shape[0])), size)
        logits.append(score_frames(detector, [crop], batch_size=1)[0])
    return float(sigmoid(np.mean(logits))), len(logits)


def load(checkpoint: Path | None):
    if checkpoint:
        return load_detector(checkpoint)
    torch.manual_seed(0)
    return efficientnet_lite0().eval()


def best_time(run, repeats: int):
    best, result = float("inf"), None
    for _ in range(repeats):
        started = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - started)
    return result, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, help="detector weights (default: an untrained Lite0)")
    parser.add_argument("--videos", type=Path, nargs="+", default=[MEDIA / f"{name}.mp4" for name in ("d0", "d12", "d13")])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threshold", type=float, default=0.5)
    parser.add_argument("--backends", nargs="+", default=["torch"], choices=DETECTOR_BACKENDS)
    args = parser.parse_args()
    # The naive pipeline keeps PyTorch's default memory layout, as FaceForensics++ does.
    naive_detector = load(args.checkpoint)
    torch_detector = ready_for_inference(load(args.checkpoint))
    detectors = {backend: with_backend(torch_detector, backend) for backend in args.backends}

    # Warm-up: loads dlib's models and lets torch pick its kernels.
    for detector in detectors.values():
        score_file(detector, args.videos[0], frames=2)
    score_frames(naive_detector, [np.zeros((64, 64, 3), dtype=np.uint8)], batch_size=1)

    print(f"detector {torch_detector.arch}, {torch.get_num_threads()} torch threads, threshold {args.threshold}, best of {args.repeats}")
    print(
        "| video | frames | backend | naive fps | fakelab fps (every frame) | speed-up per frame | fakelab s (32 frames) "
        "| speed-up to verdict | scores naive / every / 32 | verdicts agree |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for video in args.videos:
        frame_count = probe_video(video).frame_count
        for backend, detector in detectors.items():
            (naive_score, naive_frames), naive_seconds = best_time(lambda: naive_video_score(naive_detector, video), args.repeats)
            every, every_seconds = best_time(lambda: score_file(detector, video, frames=frame_count), args.repeats)
            default, default_seconds = best_time(lambda: score_file(detector, video, frames=DEFAULT_FRAMES), args.repeats)
            naive_fps, every_fps = naive_frames / naive_seconds, len(every.logits) / every_seconds
            verdicts = {naive_score >= args.threshold, every.score >= args.threshold, default.score >= args.threshold}
            print(
                f"| {video.name} | {frame_count} | {backend} | {naive_fps:.2f} | {every_fps:.1f} | {every_fps / naive_fps:.1f}x "
                f"| {default_seconds:.2f} | {naive_seconds / default_seconds:.1f}x "
                f"| {naive_score:.3f} / {every.score:.3f} / {default.score:.3f} | {'yes' if len(verdicts) == 1 else 'NO'} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
