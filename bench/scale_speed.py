"""Files per second of a folder scan: serial `fakelab detect DIR` against `--ray`.

Cuts --clips short clips from ../shared/media into a temporary folder, then scans it
serially (one process, `fakelab.detection.pipeline.scan` and each file's provenance, as
`fakelab detect DIR` does) and on Ray (`fakelab.scale.ray_scan`:
faces as tasks, the detector in actors, a JSONL ledger), with the same detector and settings,
and checks that the scores agree. Ray's start-up is timed apart from the scan: it is paid
once per run of `fakelab detect --ray`, and not at all against a running cluster (--address).

    nice -n 10 python bench/scale_speed.py [--clips 24] [--frames 8] [--cpus 2]
        [--address HOST:PORT] [--checkpoint detector.safetensors]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from fakelab.detection.checkpoint import load_detector, save_detector
from fakelab.detection.efficientnet import efficientnet_lite0
from fakelab.detection.pipeline import media_files, ready_for_inference, scan
from fakelab.scale.cluster import ray_session
from fakelab.scale.detect import file_provenance, ray_scan
from fakelab.scale.samples import cut_clips

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared" / "media"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=24)
    parser.add_argument("--clip-frames", type=int, default=16, help="frames per clip")
    parser.add_argument("--frames", type=int, default=8, help="frames scored per clip")
    parser.add_argument("--cpus", type=int, help="CPUs of the local Ray (default: all)")
    parser.add_argument("--address", help="a running Ray cluster instead of a local one")
    parser.add_argument("--checkpoint", type=Path, help="detector (default: an untrained Lite0)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="fakelab-scale-bench-") as tmp:
        tmp = Path(tmp)
        videos = [MEDIA / f"{name}.mp4" for name in ("d0", "d11", "d12", "d18")]
        cut_clips(videos, tmp / "clips", args.clips, frames=args.clip_frames, size=256)
        checkpoint = args.checkpoint
        if checkpoint is None:
            torch.manual_seed(0)
            checkpoint = tmp / "lite0.pt"
            save_detector(efficientnet_lite0(), checkpoint)
        paths = media_files(tmp / "clips")

        started = time.perf_counter()
        serial = scan(ready_for_inference(load_detector(checkpoint)), paths, frames=args.frames)
        # `fakelab detect DIR` also reads each file's provenance, as the Ray tasks do.
        provenance = {str(path): file_provenance(path) for path in paths}
        serial_seconds = time.perf_counter() - started

        started = time.perf_counter()
        with ray_session(args.address or "", args.cpus) as ray:
            startup = time.perf_counter() - started
            cpus = int(ray.cluster_resources().get("CPU", 0))
            started = time.perf_counter()
            result = ray_scan(checkpoint, paths, tmp / "ledger.jsonl", frames=args.frames)
            ray_seconds = time.perf_counter() - started

    serial_scores = {str(s.source): s.score for s in serial.scores}
    worst = max(abs(entry["score"] - serial_scores[entry["file"]]) for entry in result.results)
    count = len(paths)
    print(f"{count} clips of {args.clip_frames} frames at 256x256, {args.frames} frames scored each, "
          f"torch threads {torch.get_num_threads()}, Ray CPUs {cpus}")
    print(f"serial scan:            {count / serial_seconds:6.2f} files/s ({serial_seconds:.1f} s)")
    print(f"Ray scan:               {count / ray_seconds:6.2f} files/s ({ray_seconds:.1f} s; "
          f"{count / (ray_seconds + startup):.2f} files/s with Ray's start-up of {startup:.1f} s)")
    print(f"speed-up: {serial_seconds / ray_seconds:.2f}x (scan), {serial_seconds / (ray_seconds + startup):.2f}x "
          f"(with start-up); max score difference {worst:.1e}; same failures: "
          f"{sorted(str(f.source) for f in serial.failures) == sorted(e['file'] for e in result.failures)}; "
          f"same provenance: {all(provenance[e['file']]['made_by_fakelab'] == e['made_by_fakelab'] for e in result.entries)}")


if __name__ == "__main__":
    main()
