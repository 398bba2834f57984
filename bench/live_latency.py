"""Live avatar speed: a driving clip played as a 25 fps camera, through the whole live pipeline.

For each model, the clip (../shared/media/d11.mp4 by default, 512x512 at 25 fps,
looped) is fed by `FileCamera` at its own frame rate for --seconds; the session runs
face tracking, the model at 256x256, the glitch check of every output frame and
the preview's JPEG encoding, exactly as `fakelab live` does. Printed per model:
output fps, frames captured/shown/dropped, end-to-end latency (capture to output)
p50/p95, each stage's median wall-clock time, and the CPU time the whole process spent
per frame shown (all its threads, OpenCV's and torch's pools included). The load
average is printed too: on a shared machine the wall-clock figures say as much about
the other jobs as about fakelab; the CPU time per frame much less so.

    PYTHONPATH=src nice -n 10 .venv/bin/python bench/live_latency.py
    PYTHONPATH=src .venv/bin/python bench/live_latency.py --models fomm-random --device cuda

Models: portrait (training-free), landmark-warp, fomm-random (vox-256 architecture with
random weights: speed only). Goal on a 2-core CPU: portrait at 25 fps, p95 < 120 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from fakelab.live.api import make_glitch_detector, prepare_sources  # noqa: E402
from fakelab.live.avatars import FommAvatars, build_avatar_model  # noqa: E402
from fakelab.live.capture import FileCamera  # noqa: E402
from fakelab.live.preview import PreviewServer  # noqa: E402
from fakelab.live.session import LiveSession  # noqa: E402
from fakelab.video import load_image  # noqa: E402

MEDIA = REPO.parent / "shared" / "media"


def model_named(name: str, device: str):
    if name == "fomm-random":
        return FommAvatars.random_weights("vox-256", device)
    return build_avatar_model(name, device=device)


def run(name: str, clip: Path, source: Path, seconds: float, device: str, glitch: bool, backpressure: bool = True) -> dict:
    camera = FileCamera(clip)
    model = model_named(name, device)
    sources = prepare_sources([(source.name, load_image(source))], tuple(model.size))
    preview = PreviewServer("127.0.0.1", 0)  # its send() is the JPEG encoding every browser frame costs
    session = LiveSession(camera, model, sources, [preview], glitch_detector=make_glitch_detector(glitch),
                          backpressure=backpressure)
    session.warm_up()
    load_before = os.getloadavg()[0]
    session.start()
    session.camera_started.wait(60)
    cpu_before, shown_before = time.process_time(), session.stats.shown
    time.sleep(seconds)
    status = session.status()
    cpu_per_frame = (time.process_time() - cpu_before) / max(1, session.stats.shown - shown_before)
    session.stop()
    session.close()
    if session.error is not None:
        raise session.error
    latencies = np.array(session.stats.latencies) * 1000
    return {
        "model": name,
        "device": device,
        "glitch_check": glitch,
        "backpressure": backpressure,
        "seconds": seconds,
        "frames_due": session.frames_due,
        "frames_captured": session.stats.captured,
        "frames_shown": session.stats.shown,
        "frames_dropped": session.frames_dropped,
        "output_fps": round(session.stats.mean_fps(), 2),
        "latency_ms_p50": round(float(np.percentile(latencies, 50)), 1) if len(latencies) else None,
        "latency_ms_p95": round(float(np.percentile(latencies, 95)), 1) if len(latencies) else None,
        "stage_ms": status["stage_ms"],
        "stage_thread_cpu_ms": status["stage_cpu_ms"],
        "process_cpu_ms_per_frame": round(1000 * cpu_per_frame, 1),
        "load_average": [round(load_before, 1), round(os.getloadavg()[0], 1)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clip", type=Path, default=MEDIA / "d11.mp4")
    parser.add_argument("--source", type=Path, default=MEDIA / "s7.jpg")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--models", nargs="+", default=["portrait", "fomm-random"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-glitch-check", action="store_true")
    parser.add_argument("--no-backpressure", action="store_true",
                        help="stages work on every frame they can get, even when the next stage will replace it unseen")
    parser.add_argument("--torch-threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    print(f"{args.clip.name} as a {FileCamera(args.clip).fps:g} fps camera for {args.seconds:g} s, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}", flush=True)
    results = []
    for name in args.models:
        result = run(name, args.clip, args.source, args.seconds, args.device, not args.no_glitch_check,
                     not args.no_backpressure)
        results.append(result)
        print(
            f"{name:14s} {args.device}: {result['output_fps']:5.1f} fps out, {result['frames_shown']} shown of "
            f"{result['frames_due']} camera frames, {result['frames_dropped']} dropped; latency p50 "
            f"{result['latency_ms_p50']} ms p95 {result['latency_ms_p95']} ms; stage wall ms {result['stage_ms']}; "
            f"process CPU {result['process_cpu_ms_per_frame']} ms per frame shown; "
            f"load {result['load_average'][0]} -> {result['load_average'][1]}",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
