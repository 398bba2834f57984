"""Frames per second of the FOMM engine against a naive per-frame loop.

Both run the full vox-256 architecture with the same random weights on the same
frames in one process. The naive loop does what the reference demo does: the
whole generator (source encoding, dense motion, decoding) for each driving frame
on its own. The engine computes the source's keypoints, features, Gaussians and
grids once, runs driving frames in batches, and skips visualisation-only tensors.

    python bench/animate_speed.py [--frames 16] [--batch-size N] [--device cuda]
"""

from __future__ import annotations

import argparse
import time

import torch

from fakelab.animation.config import load_config
from fakelab.animation.engine import FommAnimator
from fakelab.animation.motion import KeypointTransfer, MotionTransfer
from fakelab.animation.networks import FommNetworks


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.inference_mode()
def naive_loop(networks: FommNetworks, source: torch.Tensor, driving: torch.Tensor) -> torch.Tensor:
    kp_source = networks.kp_detector(source)
    transfer = KeypointTransfer(MotionTransfer(), kp_source, networks.kp_detector(driving[:1]))
    predictions = []
    for frame in driving.split(1):
        kp_norm = transfer(networks.kp_detector(frame))
        predictions.append(networks.generator(source, kp_norm, kp_source)["prediction"])
    return torch.cat(predictions)


def engine(animator: FommAnimator, source: torch.Tensor, driving: torch.Tensor) -> torch.Tensor:
    batches = driving.split(animator.batch_size)
    return torch.cat([out["prediction"] for out in animator.animate_tensors(source, batches)])


def timed(run, device: torch.device) -> tuple[torch.Tensor, float]:
    synchronize(device)
    started = time.perf_counter()
    result = run()
    synchronize(device)
    return result, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--batch-size", type=int, help="driving frames per batch (default: the engine's, 1 on CPU, 8 on GPU)")
    parser.add_argument("--config", default="vox-256")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each; the best counts")
    args = parser.parse_args()

    device = torch.device(args.device)
    torch.manual_seed(0)
    config = load_config(args.config)
    networks = FommNetworks(config).to(device).eval()
    width, height = config.image_size
    source = torch.rand(1, 3, height, width, device=device)
    driving = torch.rand(args.frames, 3, height, width, device=device)
    animator = FommAnimator(networks, device=device, batch_size=args.batch_size)

    engine(animator, source, driving[: animator.batch_size])  # warm-up: allocator, kernels
    naive_seconds = engine_seconds = float("inf")
    for _ in range(args.repeats):
        naive_out, seconds = timed(lambda: naive_loop(networks, source, driving), device)
        naive_seconds = min(naive_seconds, seconds)
        engine_out, seconds = timed(lambda: engine(animator, source, driving), device)
        engine_seconds = min(engine_seconds, seconds)

    naive_fps, engine_fps = args.frames / naive_seconds, args.frames / engine_seconds
    print(f"config {args.config} at {width}x{height}, {args.frames} frames, device {device}, "
          f"threads {torch.get_num_threads()}")
    print(f"naive per-frame loop: {naive_fps:8.2f} fps")
    print(f"engine (batch {animator.batch_size}):     {engine_fps:8.2f} fps")
    print(f"speed-up: {engine_fps / naive_fps:.2f}x")
    print(f"max abs difference of predictions: {(naive_out - engine_out).abs().max().item():.2e}")


if __name__ == "__main__":
    main()
