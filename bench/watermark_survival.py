"""Does fakelab's watermark survive what happens to videos on the way to a viewer?

Animates the portraits of ../shared/media with the portrait model at their native size, as
`fakelab animate` does by default (or `--model landmark-warp`: 256x256 face crops); driving
clips from the talking heads, 48 frames each, written with provenance on; then reads the
payload back after: H.264 re-encoding at CRF 23, 30 and 40; a 50% downscale (then CRF 23); a
crop of 10% off each side (then CRF 23); and a screenshot-like PNG round trip (one frame, shown
1:1 on a 1280x720 grey "player" at an odd offset, saved as PNG and read back). Prints the
payload bit accuracy and whether the payload was recovered whole (checksum valid), and runs the
detector on every real clip of ../shared/media (false positives: should be none).

    nice -n 10 python bench/watermark_survival.py [--frames 48] [--model portrait|landmark-warp]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from itertools import islice
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import fakelab  # noqa: E402
from fakelab.animation.landmark_warp import LandmarkWarpAnimator  # noqa: E402
from fakelab.provenance import check_file, read_frames  # noqa: E402
from fakelab.video import VideoWriter, iter_frames, probe_video  # noqa: E402

MEDIA = Path(__file__).resolve().parents[2] / "shared" / "media"
PAIRS = [("s7.jpg", "d11.mp4"), ("s3.jpg", "d12.mp4"), ("s11.jpg", "d18.mp4"), ("s4.jpg", "d0.mp4")]


def encode(frames, path: Path, crf: int) -> list[np.ndarray]:
    with VideoWriter(path, 25, crf=crf) as writer:
        for frame in frames:
            writer.write(frame)
    return list(iter_frames(path))


def screenshot(frame: np.ndarray, path: Path) -> list[np.ndarray]:
    top, left = 131, 377
    # A 1280x720 "player", or a larger screen for a frame that does not fit in one.
    height, width = max(720, frame.shape[0] + 2 * top), max(1280, frame.shape[1] + 2 * left)
    canvas = np.full((height, width, 3), 40, np.uint8)
    canvas[top : top + frame.shape[0], left : left + frame.shape[1]] = frame
    cv2.imwrite(str(path), cv2.cvtColor(canvas, cv2.COLOR_RGB2BGR))
    return [cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)]


def transforms(folder: Path):
    half = lambda frames: [cv2.resize(f, (f.shape[1] // 2, f.shape[0] // 2), interpolation=cv2.INTER_AREA) for f in frames]

    def crop(frames):
        height, width = frames[0].shape[:2]
        dy, dx = round(0.1 * height), round(0.1 * width)
        return [f[dy : height - dy, dx : width - dx] for f in frames]

    return {
        "as written (CRF 18)": lambda frames: frames,
        "H.264 CRF 23": lambda frames: encode(frames, folder / "c23.mp4", 23),
        "H.264 CRF 30": lambda frames: encode(frames, folder / "c30.mp4", 30),
        "H.264 CRF 40": lambda frames: encode(frames, folder / "c40.mp4", 40),
        "50% downscale, CRF 23": lambda frames: encode(half(frames), folder / "half.mp4", 23),
        "10% crop per side, CRF 23": lambda frames: encode(crop(frames), folder / "crop.mp4", 23),
        "screenshot PNG (1 frame)": lambda frames: screenshot(frames[len(frames) // 2], folder / "shot.png"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=48, help="driving frames per animated clip")
    parser.add_argument("--model", choices=("portrait", "landmark-warp"), default="portrait")
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    rows: dict[str, list[tuple[float, bool]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for portrait, talking in PAIRS:
            driving = folder / f"driving-{talking}"
            fps = probe_video(MEDIA / talking).fps
            with VideoWriter(driving, fps) as writer:
                for frame in islice(iter_frames(MEDIA / talking), args.frames):
                    writer.write(frame)
            output = folder / f"{Path(portrait).stem}-{Path(talking).stem}.mp4"
            if args.model == "landmark-warp":
                fakelab.animate(MEDIA / portrait, driving, output, animator=LandmarkWarpAnimator(), crop=True)
            else:
                fakelab.animate(MEDIA / portrait, driving, output)
            payload = check_file(output).watermark.payload
            assert payload is not None, f"{output.name}: the mark is not readable even as written"
            frames = list(iter_frames(output))
            size = f"{frames[0].shape[1]}x{frames[0].shape[0]}"
            for name, transform in transforms(folder).items():
                reading = read_frames(transform(frames)[:24] if name != "screenshot PNG (1 frame)" else transform(frames))
                rows.setdefault(name, []).append((reading.bit_accuracy(payload), reading.payload == payload))
            print(f"  {output.name} ({size}, {len(frames)} frames): content id {payload.content_hex}", flush=True)
        print(f"\nwatermark survival on {len(PAIRS)} animated clips ({args.model}, {args.frames} frames each):\n")
        print("| transformation | payload bit accuracy (mean, min) | payload recovered whole |")
        print("|---|---|---|")
        for name, results in rows.items():
            accuracy = [a for a, _ in results]
            print(f"| {name} | {np.mean(accuracy):.3f}, {min(accuracy):.3f} | {sum(ok for _, ok in results)}/{len(results)} |")
        print("\nfalse positives on the real clips of ../shared/media (24 frames each):")
        false_positives = 0
        for clip in sorted(MEDIA.glob("*.mp4")) + sorted(MEDIA.glob("*.jpg")):
            report = check_file(clip)
            false_positives += report.made_by_fakelab
            print(f"  {clip.name}: {report.verdict()} (pilot sync {report.watermark.sync:.1f}, confidence {report.watermark.confidence:.2f})")
        print(f"false positives: {false_positives} of {len(list(MEDIA.glob('*.mp4'))) + len(list(MEDIA.glob('*.jpg')))}")
    print(f"\n({time.perf_counter() - started:.0f} s)")


if __name__ == "__main__":
    main()
