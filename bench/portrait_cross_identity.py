"""Cross-identity animation: portrait vs landmark-warp on every ../shared/media
portrait x driving video, on the first frames of each video.

For each pair: temporal flicker outside the face (mean absolute change between
consecutive frames, 8-bit levels, the largest one-frame change over the median,
and the mean absolute second difference, "jitter"), the same change outside each
model's own animated region (landmark-warp: its paste-back face mask, the same
region; portrait: where its warp field is non-zero), the same change for the portrait
model with its head pose switched off (everything else as is: how much of its change
outside the face is the head moving its hair and neck, which landmark-warp never
does), the seam figure (gradient
energy along landmark-warp's paste-back edge over the source's along the same
path) and its distance from the source's own, |log(ratio)|, and an 8-frame
contact sheet (driving / landmark-warp / portrait) in docs/portrait/.

landmark-warp does not change while the portrait model is tuned, so its figures and
sheet frames are kept in --baseline-cache (remove that folder to run it again).

    nice -n 10 python bench/portrait_cross_identity.py [--frames 60] [--sheets docs/portrait]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from fakelab.animation.portrait import PortraitAnimator, PortraitOptions

from portrait_common import (
    CACHE,
    DRIVERS,
    REPO,
    SOURCES,
    contact_sheet,
    sheet_picks,
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


# The portrait model with every head-pose limit at zero: the head stays where it is.
STILL_HEAD = PortraitOptions(max_angle=0.0, max_shift=0.0, min_scale=1.0, max_scale=1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--sources", nargs="*", default=list(SOURCES))
    parser.add_argument("--drivers", nargs="*", default=list(DRIVERS))
    parser.add_argument("--sheets", type=Path, default=REPO / "docs" / "portrait")
    parser.add_argument("--no-baseline", action="store_true", help="run the portrait model only")
    parser.add_argument("-o", "--output", type=Path, help="write the per-pair figures as JSON here")
    parser.add_argument("--baseline-cache", type=Path, default=CACHE / "landmark-warp")
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
            portrait, prepared = run_portrait(source, landmarks, clip, clip_landmarks)
            seconds = time.perf_counter() - started
            row = {"pair": f"{name}-{driver}", "portrait_fps": len(clip) / seconds}
            row["portrait"] = {
                "flicker": flicker(portrait, landmarks),
                "seam": seam(portrait, source, landmarks),
                "outside_animated": flicker(portrait, landmarks, still=prepared.still_region())[0],
            }
            still_head, _ = run_portrait(source, landmarks, clip, clip_landmarks, PortraitAnimator(options=STILL_HEAD))
            row["portrait"]["flicker_pose_off"] = flicker(still_head, landmarks)
            sheet_rows = [("portrait", portrait, face_view(landmarks, source.shape))]
            if not args.no_baseline:
                figures, baseline = _baseline(source, landmarks, clip, args.baseline_cache / f"{row['pair']}-{len(clip)}frames")
                row["landmark-warp"] = figures
                sheet_rows.insert(0, ("landmark-warp", baseline, face_view(landmarks, source.shape)))
            views = [face_view(lm, clip[0].shape) if lm is not None else (0, 0, 1, 1) for lm in clip_landmarks]
            sheet_rows.insert(0, ("driving", clip, lambda index, views=views: views[index]))
            contact_sheet(sheet_rows, args.sheets / f"{name}-{driver}.png")
            rows.append(row)
            print(_line(row), flush=True)
    print()
    print(table(rows, baseline=not args.no_baseline))
    if not args.no_baseline:
        print()
        print(wins(rows))
    if args.output:
        args.output.write_text(json.dumps(rows, indent=2))


def _baseline(source, landmarks, clip, stem: Path) -> tuple[dict, list]:
    """landmark-warp's figures and its frames at the contact sheet's picks (the other
    frames None), computed once and kept under `stem`."""
    picks = sheet_picks(len(clip))
    if stem.with_suffix(".json").exists():
        figures = json.loads(stem.with_suffix(".json").read_text())
        stored = np.load(stem.with_suffix(".npz"))
    else:
        frames = run_landmark_warp(source, clip)
        figures = {
            "flicker": flicker(frames, landmarks),
            "seam": seam(frames, source, landmarks),
            # Its animated region is the pasted-back face: the same region as "outside the face".
            "outside_animated": flicker(frames, landmarks)[0],
        }
        stem.parent.mkdir(parents=True, exist_ok=True)
        np.savez(stem.with_suffix(".npz"), **{str(index): frames[index] for index in picks})
        stem.with_suffix(".json").write_text(json.dumps(figures))
        stored = {str(index): frames[index] for index in picks}
    frames = [None] * len(clip)
    for index in picks:
        frames[index] = stored[str(index)]
    return figures, frames


def _line(row: dict) -> str:
    parts = [row["pair"], f"{row['portrait_fps']:.1f} fps"]
    for model in ("landmark-warp", "portrait"):
        if model in row:
            (mean, jump, jitter), seam_ratio = row[model]["flicker"], row[model]["seam"]
            parts.append(
                f"{model}: change {mean:.3f} (outside its region {_figure(row[model]['outside_animated'])}) "
                f"jump {jump:.1f}x jitter {jitter:.3f} seam {seam_ratio:.2f} |log| {abs(np.log(seam_ratio)):.2f}"
            )
    if "flicker_pose_off" in row.get("portrait", {}):
        mean, jump, jitter = row["portrait"]["flicker_pose_off"]
        parts.append(f"portrait, head pose off: change {mean:.3f} jump {jump:.1f}x jitter {jitter:.3f}")
    return " | ".join(parts)


def table(rows: list[dict], baseline: bool = True) -> str:
    models = ("landmark-warp", "portrait") if baseline else ("portrait",)
    columns = ("change", "change outside its region", "jump", "jitter", "seam", "seam |log|")
    header = "| pair | " + " | ".join(f"{m} {c}" for m in models for c in columns) + " |"
    header += " portrait, head pose off: change | jump | jitter |"
    lines = [header, "|" + "---|" * (1 + len(columns) * len(models) + 3)]
    for row in rows + [_mean_row(rows, models)]:
        cells = []
        for model in models:
            (mean, jump, jitter), seam_ratio = row[model]["flicker"], row[model]["seam"]
            log_seam = row[model].get("seam_log", abs(np.log(seam_ratio)))
            cells += [f"{mean:.3f}", _figure(row[model]["outside_animated"]), f"{jump:.1f}x", f"{jitter:.3f}",
                      f"{seam_ratio:.2f}", f"{log_seam:.2f}"]
        mean, jump, jitter = row["portrait"]["flicker_pose_off"]
        cells += [f"{mean:.3f}", f"{jump:.1f}x", f"{jitter:.3f}"]
        lines.append(f"| {row['pair']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def wins(rows: list[dict]) -> str:
    """On how many pairs each portrait figure is lower (seam: closer to the source's)
    than landmark-warp's."""
    def count(figure) -> int:
        return sum(figure(row["portrait"]) < figure(row["landmark-warp"]) for row in rows)

    lines = []
    for name, index in (("change outside the face", 0), ("largest jump over the median", 1), ("jitter", 2)):
        lines.append(f"{name}: portrait lower on {count(lambda f: f['flicker'][index])} of {len(rows)} pairs, "
                     f"with its head pose off on "
                     f"{sum(row['portrait']['flicker_pose_off'][index] < row['landmark-warp']['flicker'][index] for row in rows)}")
    lines.append(f"seam |log|: portrait closer on {count(lambda f: abs(np.log(f['seam'])))} of {len(rows)} pairs")
    return "\n".join(lines)


def _figure(value: float) -> str:
    return "n/a" if np.isnan(value) else f"{value:.3f}"


def _mean_row(rows: list[dict], models) -> dict:
    mean = {"pair": "**mean**"}
    for model in models:
        mean[model] = {
            "flicker": tuple(np.mean([row[model]["flicker"][i] for row in rows]) for i in range(3)),
            "seam": float(np.mean([row[model]["seam"] for row in rows])),
            "seam_log": float(np.mean([abs(np.log(row[model]["seam"])) for row in rows])),
            # nan: no pixel of the frame is outside that model's region.
            "outside_animated": float(np.nanmean([row[model]["outside_animated"] for row in rows])),
        }
    mean["portrait"]["flicker_pose_off"] = tuple(
        np.mean([row["portrait"]["flicker_pose_off"][i] for row in rows]) for i in range(3)
    )
    return mean


if __name__ == "__main__":
    main()
