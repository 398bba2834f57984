"""Peak memory of `fakelab.animate` against driving-video length.

Generates a driving video of N frames, animates a source with it through the
streaming engine (random weights, the config given), writes an mp4, and prints
this process's peak RSS. Run it once per length in fresh processes and compare:

    python bench/animate_memory.py --frames 100
    python bench/animate_memory.py --frames 2000
    python bench/animate_memory.py --compare 100 2000   # runs both and prints the ratio
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = REPO.parent / "shared" / "fixtures" / "fomm" / "tiny-vox.yaml"


def moving_square_video(path: Path, frames: int, size: int) -> None:
    from fakelab.video import VideoWriter

    with VideoWriter(path, fps=25) as writer:
        for index in range(frames):
            frame = np.full((size, size, 3), 30, np.uint8)
            offset = int((size // 2) * (1 + np.sin(index / 15)) / 2)
            frame[offset : offset + size // 2, offset : offset + size // 2] = (200, 120, 60)
            writer.write(frame)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(frames: int, config: str) -> None:
    import torch

    from fakelab.animation.api import animate
    from fakelab.animation.config import load_config
    from fakelab.animation.engine import FommAnimator
    from fakelab.animation.networks import FommNetworks

    torch.manual_seed(0)
    loaded = load_config(config)
    size = loaded.image_size[0]
    with tempfile.TemporaryDirectory() as folder:
        driving = Path(folder) / "driving.mp4"
        moving_square_video(driving, frames, size)
        source = np.random.default_rng(0).integers(0, 255, (size, size, 3), dtype=np.uint8)
        animator = FommAnimator(FommNetworks(loaded), batch_size=8)
        result = animate(source, driving, Path(folder) / "out.mp4", animator=animator)
    print(f"frames={result.frames} peak_rss_mib={peak_rss_mib():.1f}")


def compare(lengths: list[int], config: str) -> None:
    peaks = {}
    for frames in lengths:
        output = subprocess.run(
            [sys.executable, __file__, "--frames", str(frames), "--config", config],
            check=True, capture_output=True, text=True,
        ).stdout
        peaks[frames] = float(output.split("peak_rss_mib=")[1])
        print(f"{frames:>6} frames: peak RSS {peaks[frames]:.1f} MiB")
    shortest, longest = min(lengths), max(lengths)
    print(f"ratio {longest}/{shortest} frames: {peaks[longest] / peaks[shortest]:.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, help="driving video length to measure in this process")
    parser.add_argument("--compare", type=int, nargs="+", help="lengths to measure, each in a fresh process")
    parser.add_argument("--config", default=str(DEFAULT_CONFIG), help="FOMM config (random weights)")
    args = parser.parse_args()
    if args.compare:
        compare(args.compare, args.config)
    else:
        measure(args.frames or 100, args.config)


if __name__ == "__main__":
    main()
