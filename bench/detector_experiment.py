"""Train a detector with no fakes at all, then ask it to catch animation fakes.

An EfficientNet-Lite0 detector (ImageNet weights) is trained on CPU on real faces only,
with self-blended pseudo-fakes (`--pseudo-fakes self-blend`), and tested on held-out
real clips against fake clips made by `fakelab.animate` with the landmark-warp model.

Only three real videos exist (../shared/media d0, d12, d13), so the split is in time:

- every video is face-cropped to 256x256 (the face pipeline's FOMM-style crop, which is
  also what the animation models take and give);
- its first TRAIN_FRACTION of frames are cut into clips of CLIP_FRAMES frames: the
  training reals, both as 256x256 crops and at the video's own resolution, so that the
  detector sees faces at both sharpnesses (validation holds out whole clips; the two
  versions of one clip may fall on both sides, which flatters only the validation AUC);
- its last frames are cut the same way: the held-out real test clips;
- fakes: each test clip drives the landmark-warp animation of a source from another
  identity: the three portraits s0, s4, s7 (face-cropped the same way) and the first
  frame of the test part of each other video. So every fake moves like a real test clip,
  and every fake identity also appears as a real person or as a portrait.

Recipe: Lite0 from ImageNet, self-blended pseudo-fakes whose transformed copy is also bent
by a smooth local warp half of the time, augmentations including random reframing, 4
epochs, batch 16, AdamW 2e-4; `--plain` runs the first recipe instead (the paper's
self-blend without the warp, no reframing, 256-pixel training clips only).

Real and fake test clips are written by the same H.264 writer at the same quality and
size, and are scored by the same `fakelab detect` pipeline (frames sampled evenly,
face tracked, FaceForensics++ 1.3x crop). Prints video-level AUC and accuracy (and frame
level), overall and for the two kinds of fake sources, and writes metrics.json and
roc.png in the work folder.

    python bench/detector_experiment.py [--media ../shared/media] [--work /tmp/fakelab-detector-experiment]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from fakelab.animation.api import animate
from fakelab.animation.landmark_warp import LandmarkWarpAnimator
from fakelab.detection.augment import AugmentationConfig
from fakelab.detection.checkpoint import load_detector
from fakelab.detection.evaluate import EvaluationResult, evaluate_detection, write_evaluation
from fakelab.detection.self_blend import SelfBlendConfig
from fakelab.detection.train import TrainingConfig, train_detector
from fakelab.faces.crop import crop_image, crop_video
from fakelab.video import VideoWriter, iter_frames, load_image, probe_video

REPO = Path(__file__).resolve().parents[1]
VIDEOS = ("d0", "d12", "d13")
PORTRAITS = ("s0", "s4", "s7")
SIZE = 256
TRAIN_FRACTION = 0.6
CLIP_FRAMES = 24


def log(message: str) -> None:
    print(message, flush=True)


def clip_ranges(start: int, end: int) -> list[tuple[int, int]]:
    """Consecutive CLIP_FRAMES-frame ranges of [start, end); a remainder of at least half a
    clip is kept as a shorter clip."""
    ranges = [(a, min(a + CLIP_FRAMES, end)) for a in range(start, end, CLIP_FRAMES)]
    return [(a, b) for a, b in ranges if b - a >= CLIP_FRAMES // 2]


def write_clips(video: Path, ranges: list[tuple[int, int]], prefix: Path) -> list[Path]:
    """Cut `video` into the frame ranges, streaming: `<prefix><k>.mp4`, same fps."""
    fps = probe_video(video).fps
    paths = [prefix.with_name(f"{prefix.name}{k}.mp4") for k in range(len(ranges))]
    with contextlib.ExitStack() as stack:
        writers = [stack.enter_context(VideoWriter(path, fps)) for path in paths]
        for index, frame in enumerate(iter_frames(video)):
            for writer, (a, b) in zip(writers, ranges):
                if a <= index < b:
                    writer.write(frame)
    return paths


def prepare_media(media: Path, work: Path, full_resolution: bool) -> dict:
    """Crop, split and cut the videos; crop the portraits. Returns what was written."""
    layout = {"train": work / "train_real", "test_real": work / "test_real", "sources": work / "sources"}
    for folder in layout.values():
        folder.mkdir(parents=True, exist_ok=True)
    split = {}
    for name in VIDEOS:
        cropped = work / "crops" / f"{name}.mp4"
        if not cropped.exists():
            crop_video(media / f"{name}.mp4", cropped, size=SIZE)
        frame_count = sum(1 for _ in iter_frames(cropped))
        boundary = round(TRAIN_FRACTION * frame_count)
        train, test = clip_ranges(0, boundary), clip_ranges(boundary, frame_count)
        write_clips(cropped, train, layout["train"] / f"{name}_train")
        if full_resolution:
            write_clips(media / f"{name}.mp4", train, layout["train"] / f"{name}_full_train")
        write_clips(cropped, test, layout["test_real"] / f"{name}_test")
        # The source frame for fakes of this identity: the first frame of its test part.
        source = next(frame for index, frame in enumerate(iter_frames(cropped)) if index == boundary)
        np.save(layout["sources"] / f"{name}.npy", source)
        split[name] = {"frames": frame_count, "train": train, "test": test}
    for name in PORTRAITS:
        np.save(layout["sources"] / f"{name}.npy", crop_image(load_image(media / f"{name}.jpg"), size=SIZE).image)
    return {"folders": layout, "split": split}


def make_fakes(work: Path, test_real: Path, sources: Path) -> dict[str, str]:
    """Landmark-warp fakes: every test clip drives every source of another identity.
    Returns fake file name -> kind of source ("portrait" or "video frame")."""
    folder = work / "test_fake"
    folder.mkdir(exist_ok=True)
    animator = LandmarkWarpAnimator(size=(SIZE, SIZE))
    kinds = {}
    for driving in sorted(test_real.glob("*.mp4")):
        identity = driving.stem.split("_")[0]
        for source in [*PORTRAITS, *VIDEOS]:
            if source == identity:
                continue
            output = folder / f"{source}_by_{driving.stem}.mp4"
            kinds[output.name] = "portrait" if source in PORTRAITS else "video frame"
            if not output.exists():
                animate(np.load(sources / f"{source}.npy"), driving, output, animator=animator, audio="none")
    return kinds


def subset_metrics(result: EvaluationResult, keep) -> dict:
    """Video-level metrics of the reals against the fakes that `keep(file name)` selects."""
    chosen = [s for s in result.scores if s.label == 0 or keep(s.score.source.name)]
    subset = EvaluationResult(chosen, result.threshold)
    return subset.metrics("video").to_json()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--media", type=Path, default=REPO.parent / "shared" / "media")
    parser.add_argument("--work", type=Path, default=Path("/tmp/fakelab-detector-experiment"))
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--frames", type=int, default=16, help="frames scored per test clip")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--plain",
        action="store_true",
        help="the first recipe: the paper's self-blend (no local warp), no reframing, 256-pixel training clips only",
    )
    args = parser.parse_args()
    work = args.work
    work.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    prepared = prepare_media(args.media, work, full_resolution=not args.plain)
    folders = prepared["folders"]
    kinds = make_fakes(work, folders["test_real"], folders["sources"])
    log(f"data ready in {time.perf_counter() - started:.0f} s: {json.dumps(prepared['split'])}")
    log(f"{len(list(folders['test_real'].glob('*.mp4')))} real test clips, {len(kinds)} fake test clips")

    output = work / "lite0-sbi.safetensors"
    config = TrainingConfig(
        epochs=args.epochs,
        frames_per_video=CLIP_FRAMES,
        pseudo_fakes="self-blend",
        patience=3,
        seed=args.seed,
    )
    if args.plain:
        config = replace(
            config, augmentation=AugmentationConfig(reframe=0.0), self_blend=SelfBlendConfig(warp_probability=0.0)
        )
    state = output.with_name(output.name + ".state.pt")
    started = time.perf_counter()
    training = train_detector(folders["train"], None, output, config, resume=state.exists(), progress=False, log=log)
    log(f"{training.summary()} ({time.perf_counter() - started:.0f} s)")

    detector = load_detector(output)
    started = time.perf_counter()
    result = evaluate_detection(detector, folders["test_real"], work / "test_fake", frames=args.frames)
    log(f"scored {len(result.scores)} clips in {time.perf_counter() - started:.0f} s; failures: {result.failures}")
    print(result.table())
    breakdown = {
        "portrait sources": subset_metrics(result, lambda name: kinds.get(name) == "portrait"),
        "video-frame sources": subset_metrics(result, lambda name: kinds.get(name) == "video frame"),
    }
    for name, metrics in breakdown.items():
        log(f"video level, {name}: AUC {metrics['auc']:.4f}, ACC {metrics['accuracy']:.4f} ({metrics['reals']} real, {metrics['fakes']} fake)")
    write_evaluation(result, work)
    summary = {
        "split": prepared["split"],
        "training": [vars(record) for record in training.history],
        "best_epoch": training.best_epoch,
        "metrics": result.to_json(),
        "breakdown": breakdown,
    }
    (work / "experiment.json").write_text(json.dumps(summary, indent=2))
    log(f"wrote {work / 'experiment.json'}, {work / 'roc.png'}")


if __name__ == "__main__":
    main()
