"""Frames per second of the FOMM engine against the reference demo's per-frame loop.

All run the full architecture of a config (vox-256 by default) with the same random
weights on the same frames in one process:

- reference-style loop: what the official first-order-model demo's `make_animation` does:
  the whole driving video as one (1, 3, T, H, W) float tensor, then for each frame on its
  own (a batch of one, a strided slice of that tensor): the driving keypoints, the
  normalisation (both convex hulls and the Jacobian inverse again each frame), and the
  whole generator (source encoding, source Gaussians and grids, dense motion, the
  visualisation-only `deformed` and `sparse_deformed`), under `torch.no_grad`, each
  prediction copied out as it comes;
- engine, plain torch: `FommAnimator` on the torch modules with the source prepared
  once (batch 1, default threads, no calibration);
- engine, calibrated: the plan this machine's calibration chose (backend among torch /
  ONNX Runtime / OpenVINO, threads, channels-last, batch size), or the one given by flags.

Timings alternate between the implementations round by round (A, B, C, A, B, C, ...) and
the best round counts, so that load from other processes hits all alike; the median is
printed too. The same run measures the machine's fp32 peak (a large matmul and a 3x3
convolution like the generator's bottleneck, best of several) and the engine's achieved
rate (FLOPs of the per-frame graph counted by torch.utils.flop_counter, times frames per
second). `--contention` then starts a second process that keeps one core busy and measures
the engine again: the ratio says how much of its speed it keeps.

    nice -n 10 python bench/animate_speed.py [--frames 12] [--rounds 3] [--contention]
        [--backend openvino --threads 2 --batch-size 1] [--recalibrate] [--precision bf16]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import ConvexHull
from torch.utils.flop_counter import FlopCounterMode

from fakelab.animation.config import load_config
from fakelab.animation.engine import FommAnimator
from fakelab.animation.fomm import Keypoints
from fakelab.animation.motion import MotionTransfer
from fakelab.animation.networks import FommNetworks
from fakelab.animation.render import FrameRenderer

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared" / "media"


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


# --- the reference demo's loop --------------------------------------------------------------


def reference_normalize_kp(kp_source, kp_driving, kp_driving_initial, adapt_movement_scale=True):
    """The reference `normalize_kp` (relative motion, relative Jacobians): the hulls and the
    initial Jacobian's inverse are computed again for every frame, as there."""
    scale = 1.0
    if adapt_movement_scale:
        source_area = ConvexHull(kp_source.value[0].cpu().numpy()).volume
        driving_area = ConvexHull(kp_driving_initial.value[0].cpu().numpy()).volume
        scale = np.sqrt(source_area) / np.sqrt(driving_area)
    value = (kp_driving.value - kp_driving_initial.value) * scale + kp_source.value
    jacobian = kp_driving.jacobian
    if jacobian is not None:
        jacobian_diff = torch.matmul(jacobian, torch.inverse(kp_driving_initial.jacobian))
        jacobian = torch.matmul(jacobian_diff, kp_source.jacobian)
    return Keypoints(value, jacobian)


def reference_loop(networks: FommNetworks, source_image: np.ndarray, driving_video: np.ndarray, device) -> torch.Tensor:
    """`make_animation` of the reference demo, on our modules (float HxWx3 / TxHxWx3 in [0, 1])."""
    kp_detector, generator = networks.kp_detector, networks.generator
    with torch.no_grad():
        predictions = []
        source = torch.tensor(source_image[np.newaxis].astype(np.float32)).permute(0, 3, 1, 2).to(device)
        driving = torch.tensor(np.array(driving_video)[np.newaxis].astype(np.float32)).permute(0, 4, 1, 2, 3)
        kp_source = kp_detector(source)
        kp_driving_initial = kp_detector(driving[:, :, 0].to(device))
        for frame_idx in range(driving.shape[2]):
            driving_frame = driving[:, :, frame_idx].to(device)
            kp_driving = kp_detector(driving_frame)
            kp_norm = reference_normalize_kp(kp_source, kp_driving, kp_driving_initial)
            out = generator(source, kp_norm, kp_source)  # with `deformed`, as the reference
            predictions.append(np.transpose(out["prediction"].data.cpu().numpy(), [0, 2, 3, 1])[0])
    return torch.from_numpy(np.stack(predictions)).permute(0, 3, 1, 2)


def engine_run(animator: FommAnimator, source: torch.Tensor, driving: torch.Tensor, plain: bool) -> torch.Tensor:
    if plain:
        batches = driving.split(1)
        return torch.cat([out["prediction"].cpu() for out in animator.animate_tensors(source, batches)])
    batches = driving.split(animator.plan.batch_size)
    return torch.cat([prediction.cpu() for prediction in animator.render_tensors(source, batches)])


# --- FLOPs and the machine's peak -----------------------------------------------------------


def graph_flops(networks: FommNetworks, motion: MotionTransfer, source: torch.Tensor, driving: torch.Tensor) -> int:
    """FLOPs of the per-frame graph for one driving frame (convolutions, matmuls; the
    elementwise ops and grid sampling are not counted, so the rate is a lower bound)."""
    animator = FommAnimator(networks, motion, backend="torch", threads=1, batch_size=1)
    state = animator._render_state(source, driving[:1])
    renderer = FrameRenderer(networks, motion)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        renderer(driving[:1], *state.ordered(renderer.names))
    return counter.get_total_flops()


def reference_flops(networks, source_image, driving_video, device) -> int:
    with FlopCounterMode(display=False) as counter:
        reference_loop(networks, source_image, driving_video[:2], device)
    return counter.get_total_flops() // 2


def fp32_peak(threads: int, repeats: int = 5) -> tuple[float, str]:
    """Best GFLOP/s of a 2048^2 matmul and of a 3x3 256->256 convolution at 64x64 (batch 4)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.rand(2048, 2048), torch.rand(2048, 2048)
        x, w = torch.rand(4, 256, 64, 64), torch.rand(256, 256, 3, 3)
        probes = {
            "matmul 2048": (lambda: a @ b, 2 * 2048**3),
            "conv3x3 256ch 64x64": (lambda: torch.nn.functional.conv2d(x, w, padding=1), 2 * 4 * 256 * 64 * 64 * 256 * 9),
        }
        best = {}
        with torch.no_grad():
            for name, (run, flops) in probes.items():
                run()
                seconds = min(_time(run) for _ in range(repeats))
                best[name] = flops / seconds / 1e9
    finally:
        torch.set_num_threads(previous)
    name = max(best, key=best.get)
    return best[name], ", ".join(f"{k} {v:.1f}" for k, v in best.items())


def _time(run) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


# --- inputs ---------------------------------------------------------------------------------


def bench_frames(frames: int, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A real portrait and real talking-head frames when ../shared/media is there, else noise."""
    width, height = size
    try:
        from fakelab.animation.api import resize_frame
        from fakelab.video import iter_frames, load_image

        source = resize_frame(load_image(MEDIA / "s0.jpg"), size)
        driving = [resize_frame(frame, size) for _, frame in zip(range(frames), iter_frames(MEDIA / "d0.mp4"))]
        if len(driving) == frames:
            return source.astype(np.float32) / 255, np.stack(driving).astype(np.float32) / 255
    except Exception:  # noqa: BLE001 - the bench runs without the shared media too
        pass
    rng = np.random.default_rng(0)
    return rng.random((height, width, 3), dtype=np.float32), rng.random((frames, height, width, 3), dtype=np.float32)


def busy_core() -> subprocess.Popen:
    """A second process that keeps one core busy (the contention check)."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=3, help="alternating timed rounds; the best counts")
    parser.add_argument("--config", default="vox-256")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--backend", default="auto", help="auto (calibrated), torch, onnxruntime or openvino")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--batch-size", type=int)
    parser.add_argument("--precision", choices=("fp32", "bf16", "fp16"), help="bf16/fp16: opt-in, error printed")
    parser.add_argument("--compile", action="store_true", help="torch.compile the render (CUDA graphs on GPU)")
    parser.add_argument("--recalibrate", action="store_true", help="measure the plan again instead of the cached one")
    parser.add_argument("--contention", action="store_true", help="also time the engine with one core kept busy")
    args = parser.parse_args()
    if args.recalibrate:
        import os

        os.environ["FAKELAB_RECALIBRATE"] = "1"

    device = torch.device(args.device)
    torch.manual_seed(0)
    config = load_config(args.config)
    networks = FommNetworks(config).to(device).eval()
    motion = MotionTransfer()
    source_image, driving_video = bench_frames(args.frames, config.image_size)
    source = torch.from_numpy(source_image).permute(2, 0, 1)[None].contiguous().to(device)
    driving = torch.from_numpy(driving_video).permute(0, 3, 1, 2).contiguous().to(device)

    plain = FommAnimator(networks, motion, device=device, backend="torch", batch_size=1)
    calibrated = FommAnimator(
        networks, motion, device=device, backend=args.backend, threads=args.threads, batch_size=args.batch_size,
        precision=args.precision, compile=args.compile or None, log=print,
    )
    print(f"plan: {calibrated.plan.describe()}", flush=True)

    runs = {
        "reference-style loop": lambda: reference_loop(networks, source_image, driving_video, device),
        "engine, plain torch": lambda: engine_run(plain, source, driving, plain=True),
        "engine, calibrated": lambda: engine_run(calibrated, source, driving, plain=False),
    }
    plan_threads = calibrated.plan.threads
    if device.type == "cpu" and plan_threads != torch.get_num_threads():
        # torch's default thread count is the reference's; on a loaded machine it can collapse
        # where fewer threads do not, so the loop also runs at the plan's count, for fairness.
        def reference_at_plan_threads():
            previous = torch.get_num_threads()
            torch.set_num_threads(plan_threads)
            try:
                return reference_loop(networks, source_image, driving_video, device)
            finally:
                torch.set_num_threads(previous)

        runs[f"reference, {plan_threads} thread(s)"] = reference_at_plan_threads
    outputs = {name: run() for name, run in runs.items()}  # warm-up (kernels, allocator, graph compile)
    seconds: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            synchronize(device)
            started = time.perf_counter()
            outputs[name] = run()
            synchronize(device)
            seconds[name].append(time.perf_counter() - started)
    fps = {name: args.frames / min(times) for name, times in seconds.items()}
    median_fps = {name: args.frames / statistics.median(times) for name, times in seconds.items()}

    reference = outputs["reference-style loop"]
    width, height = config.image_size
    print(f"\nconfig {args.config} at {width}x{height}, random weights, {args.frames} frames, device {device}, "
          f"best of {args.rounds} alternating rounds (median in brackets)")
    print(f"{'':26s} {'fps':>7s} {'(median)':>9s} {'vs reference':>13s} {'max |diff|':>11s}")
    for name in runs:
        difference = (outputs[name].float().cpu() - reference).abs().max().item()
        print(f"{name:26s} {fps[name]:7.3f} ({median_fps[name]:7.3f}) {fps[name] / fps['reference-style loop']:12.2f}x "
              f"{difference:11.2e}")
    print(f"calibrated plan: {calibrated.plan.describe()}")

    if device.type == "cpu":
        cores = torch.get_num_threads()
        peak, detail = fp32_peak(max(cores, calibrated.plan.threads))
        flops = graph_flops(networks, motion, source, driving)
        ref_flops = reference_flops(networks, source_image, driving_video, device)
        achieved = flops * fps["engine, calibrated"] / 1e9
        print(f"\nmeasured fp32 peak ({cores} threads): {peak:.1f} GFLOP/s (best of: {detail})")
        print(f"per-frame graph: {flops / 1e9:.1f} GFLOP/frame (reference loop: {ref_flops / 1e9:.1f} GFLOP/frame)")
        print(f"engine, calibrated: {achieved:.1f} GFLOP/s = {achieved / peak:.0%} of the measured peak")
        plain_rate = flops * fps["engine, plain torch"] / 1e9
        print(f"engine, plain torch: {plain_rate:.1f} GFLOP/s = {plain_rate / peak:.0%} of the measured peak")

    if args.contention:
        quiet = min(seconds["engine, calibrated"])
        busy = busy_core()
        try:
            time.sleep(1.0)
            loaded = min(_time(runs["engine, calibrated"]) for _ in range(args.rounds))
            loaded_reference = min(_time(runs["reference-style loop"]) for _ in range(max(1, args.rounds - 1)))
        finally:
            busy.kill()
            busy.wait()
        print(f"\nwith one core kept busy by another process: engine {args.frames / loaded:.3f} fps = "
              f"{quiet / loaded:.0%} of its speed without it; reference-style loop {args.frames / loaded_reference:.3f} fps "
              f"= {min(seconds['reference-style loop']) / loaded_reference:.0%} of its")


if __name__ == "__main__":
    main()
