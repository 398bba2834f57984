"""Cross-identity animation: portrait vs landmark-warp on every ../shared/media
portrait x driving video, on the first frames of each video.

For each pair: temporal flicker outside the face (mean absolute change between
consecutive frames, 8-bit levels, and the largest one-frame change over the
median), the seam figure (gradient energy along landmark-warp's paste-back edge,
over the source's along the same path) and an 8-frame contact sheet
(driving / landmark-warp / portrait) in docs/portrait/.

    nice -n 10 python bench/portrait_cross_identity.py [--frames 60] [--sheets docs/portrait]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from portrait_common import (
    DRIVERS,
    REPO,
    SOURCES,
    contact_sheet,
    driving_clip,
    driving_landmarks,
    face_view,
    flicker,
    run_landmark_warp,
    run_portrait,
    seam,
    source_image,
    source_landmarks,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--sources", nargs="*", default=list(SOURCES))
    parser.add_argument("--drivers", nargs="*", default=list(DRIVERS))
    parser.add_argument("--sheets", type=Path, default=REPO / "docs" / "portrait")
    parser.add_argument("--no-baseline", action="store_true", help="run the portrait model only")
    parser.add_argument("-o", "--output", type=Path, help="write the per-pair figures as JSON here")
    args = parser.parse_args()
    cv2.setNumThreads(1)

    rows = []
    for driver in args.drivers:
        clip = driving_clip(driver, args.frames)
        clip_landmarks = driving_landmarks(driver, clip)
        for name in args.sources:
            source = source_image(name)
            landmarks = source_landmarks(name, source)
            started = time.perf_counter()
            portrait, _ = run_portrait(source, landmarks, clip, clip_landmarks)
            seconds = time.perf_counter() - started
            row = {"pair": f"{name}-{driver}", "portrait_fps": len(clip) / seconds}
            row["portrait"] = {"flicker": flicker(portrait, landmarks), "seam": seam(portrait, source, landmarks)}
            sheet_rows = [("portrait", portrait, face_view(landmarks, source.shape))]
            if not args.no_baseline:
                baseline = run_landmark_warp(source, clip)
                row["landmark-warp"] = {
                    "flicker": flicker(baseline, landmarks),
                    "seam": seam(baseline, source, landmarks),
                }
                sheet_rows.insert(0, ("landmark-warp", baseline, face_view(landmarks, source.shape)))
            views = [face_view(lm, clip[0].shape) if lm is not None else (0, 0, 1, 1) for lm in clip_landmarks]
            sheet_rows.insert(0, ("driving", clip, lambda index, views=views: views[index]))
            contact_sheet(sheet_rows, args.sheets / f"{name}-{driver}.png")
            rows.append(row)
            print(_line(row), flush=True)
    print()
    print(table(rows, baseline=not args.no_baseline))
    if args.output:
        args.output.write_text(json.dumps(rows, indent=2))


def _line(row: dict) -> str:
    parts = [row["pair"], f"{row['portrait_fps']:.1f} fps"]
    for model in ("landmark-warp", "portrait"):
        if model in row:
            (mean, jump, jitter), seam_ratio = row[model]["flicker"], row[model]["seam"]
            parts.append(f"{model}: change {mean:.3f} jump {jump:.1f}x jitter {jitter:.3f} seam {seam_ratio:.2f}")
    return " | ".join(parts)


def table(rows: list[dict], baseline: bool = True) -> str:
    models = ("landmark-warp", "portrait") if baseline else ("portrait",)
    header = "| pair | " + " | ".join(
        f"{m} change | {m} jump | {m} jitter | {m} seam" for m in models
    ) + " |"
    lines = [header, "|" + "---|" * (1 + 4 * len(models))]
    for row in rows + [_mean_row(rows, models)]:
        cells = []
        for model in models:
            (mean, jump, jitter), seam_ratio = row[model]["flicker"], row[model]["seam"]
            cells += [f"{mean:.3f}", f"{jump:.1f}x", f"{jitter:.3f}", f"{seam_ratio:.2f}"]
        lines.append(f"| {row['pair']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _mean_row(rows: list[dict], models) -> dict:
    mean = {"pair": "**mean**"}
    for model in models:
        mean[model] = {
            "flicker": tuple(np.mean([row[model]["flicker"][i] for row in rows]) for i in range(3)),
            "seam": float(np.mean([row[model]["seam"] for row in rows])),
        }
    return mean


if __name__ == "__main__":
    main()
