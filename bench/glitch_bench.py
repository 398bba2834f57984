"""Glitch detector: per-frame AUC of real frames against generated frames with visible failures.

Real frames: the first 75 frames of each real clip of bench/cue_clips.py (d0, d11, d12,
d13, d18 segments), each clip through its own `GlitchDetector`.
Failure frames: landmark-warp animations (`fakelab.animate`, face crop, 256x256) of the
portraits s3 and s7 and of a frame of d0, driven by a real clip that was broken on purpose
during frames FAIL_START..FAIL_STOP (the failure window; 30 frames):
- occlusion: a grey bar (a hand, a microphone) slides up over the mouth and nose;
- head turn: the driving face is squeezed to 35% of its width about its centre and rolled
  by up to 40 degrees, as a head turning far away would look to a 2-D landmark tracker.
The driving tracker then follows wrong or missing landmarks and the animated face bends,
freezes or tears. Frames in the failure window are the positives; the fakes' other frames
are reported apart. A contact sheet (docs/glitch_sheet.png) shows what the positives look like.

    nice -n 10 .venv/bin/python bench/glitch_bench.py [--out /tmp/fakelab-cue-clips]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT / "bench"))

from cue_clips import DEFAULT_OUT, MEDIA  # noqa: E402

import fakelab  # noqa: E402
from fakelab.detection.glitch import GlitchDetector, face_failure_probability, jump_probability  # noqa: E402
from fakelab.detection.metrics import roc_auc  # noqa: E402
from fakelab.faces import largest_face  # noqa: E402
from fakelab.video import iter_frames, load_image  # noqa: E402

FRAMES = 75
FAIL_START, FAIL_STOP = 25, 55
DRIVING = "d11_3s"
SOURCES = ("s3", "s7", "d0_frame")


def real_clips(out: Path) -> list[Path]:
    return sorted((out / "real").glob("*.mp4"))


def broken_driving(kind: str, frames: list[np.ndarray]) -> list[np.ndarray]:
    """The driving frames with the failure applied inside the failure window."""
    landmarks = largest_face(frames[0], "the driving clip")
    left, top = landmarks.min(axis=0)
    right, bottom = landmarks.max(axis=0)
    centre = ((left + right) / 2, (top + bottom) / 2)
    result = []
    for index, frame in enumerate(frames):
        if not FAIL_START <= index < FAIL_STOP:
            result.append(frame)
            continue
        phase = (index - FAIL_START) / (FAIL_STOP - FAIL_START - 1)
        strength = np.sin(np.pi * phase) ** 0.5  # in, hold, out
        frame = frame.copy()
        if kind == "occlusion":
            reach = bottom - strength * 0.75 * (bottom - top)
            frame[int(reach) : int(bottom) + 20, int(left) - 20 : int(right) + 20] = (120, 110, 100)
        else:
            squeeze = 1 - 0.65 * strength
            angle = 40 * strength
            rotation = cv2.getRotationMatrix2D(centre, angle, 1.0)
            scale = np.array([[squeeze, 0, centre[0] * (1 - squeeze)], [0, 1, 0]])
            matrix = rotation @ np.vstack([scale, [0, 0, 1]])
            frame = cv2.warpAffine(frame, matrix, (frame.shape[1], frame.shape[0]), borderMode=cv2.BORDER_REPLICATE)
        result.append(frame)
    return result


def glitch_scores(frames) -> list:
    detector = GlitchDetector()
    return [detector.check(frame) for frame in frames]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    started = time.perf_counter()
    work = args.out / "glitch"
    work.mkdir(parents=True, exist_ok=True)
    rows = []  # (score, confidence term, jump term, label, group)
    per_frame_ms = []
    for clip in real_clips(args.out):
        frames = [f for _, f in zip(range(FRAMES), iter_frames(clip))]
        tick = time.perf_counter()
        for glitch in glitch_scores(frames):
            rows.append((glitch.score, face_failure_probability(glitch.detector_confidence), jump_probability(glitch.landmark_jump), 0, "real"))
        per_frame_ms.append(1000 * (time.perf_counter() - tick) / len(frames))
    driving_frames = [f for _, f in zip(range(FRAMES), iter_frames(args.out / "real" / f"{DRIVING}.mp4"))]
    sheet = []
    for kind in ("occlusion", "head turn"):
        driving = broken_driving(kind, driving_frames)
        for source_name in SOURCES:
            source = args.out / "work" / f"{source_name}.png" if source_name.endswith("frame") else MEDIA / f"{source_name}.jpg"
            cache = work / f"{kind.replace(' ', '_')}__{source_name}.npz"
            if cache.exists():
                frames = list(np.load(cache)["frames"])
            else:
                frames = fakelab.animate(load_image(source), driving, model="landmark-warp", crop=True)
                np.savez_compressed(cache, frames=np.stack(frames))
            for index, glitch in enumerate(glitch_scores(frames)):
                failing = FAIL_START <= index < FAIL_STOP
                rows.append((glitch.score, face_failure_probability(glitch.detector_confidence), jump_probability(glitch.landmark_jump),
                             1 if failing else -1, kind))
            sheet.append(np.concatenate([cv2.resize(driving[i], (160, 160)) if j == 0 else cv2.resize(frames[i], (160, 160))
                                         for i in (FAIL_START + 5, FAIL_START + 15) for j in (0, 1)], axis=1))
            print(f"{kind} / {source_name}: done", flush=True)
    from PIL import Image

    # A 200-colour palette keeps the sheet small enough for the docs.
    Image.fromarray(np.concatenate(sheet, axis=0)).quantize(colors=200).save(ROOT / "docs" / "glitch_sheet.png", optimize=True)
    data = np.array([r[:4] for r in rows], dtype=np.float64)
    groups = np.array([r[4] for r in rows])
    keep = data[:, 3] >= 0
    results = {}
    for name, column in (("glitch score", 0), ("detector term only", 1), ("landmark-jump term only", 2)):
        results[name] = roc_auc(data[keep, 3].astype(int), data[keep, column])
    for kind in ("occlusion", "head turn"):
        subset = keep & ((groups == "real") | (groups == kind))
        results[f"glitch score, {kind} only"] = roc_auc(data[subset, 3].astype(int), data[subset, 0])
    real = data[groups == "real", 0]
    positives = data[data[:, 3] == 1, 0]
    outside = data[data[:, 3] == -1, 0]
    flagged = {
        "real frames flagged": float((real > 0.5).mean()),
        "failure-window frames flagged": float((positives > 0.5).mean()),
        "fake frames outside the window flagged": float((outside > 0.5).mean()),
    }
    print(f"\n{int((groups == 'real').sum())} real frames, {len(positives)} failure-window frames, {len(outside)} other fake frames")
    for name, auc in results.items():
        print(f"AUC {name}: {auc:.3f}")
    for name, share in flagged.items():
        print(f"{name} (threshold 0.5): {share:.1%}")
    print(f"glitch detector: {np.mean(per_frame_ms):.1f} ms per frame on the real clips (decoding excluded; loaded machine)")
    (work / "glitch_bench.json").write_text(json.dumps({"auc": results, "flagged": flagged, "ms_per_frame": float(np.mean(per_frame_ms))}, indent=1))
    print(f"done in {time.perf_counter() - started:.0f} s; sheet in docs/glitch_sheet.png")


if __name__ == "__main__":
    main()
