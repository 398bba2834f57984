"""The stress sweeps behind docs/stress.md: a detector and the cue scorer under every
perturbation, and the landmark-warp (and FOMM fixture) animation under driving-video
bitrate, occlusion and pose gap.

detection: the data of `bench/detector_experiment.py` (its work folder, --detector-work,
holds 24-frame real test clips cut from the last 40% of d0, d12, d13, the landmark-warp
fakes they drive, and 256x256 training clips from the first 60%). The detector is a quick
self-blend Lite0 (no fake seen), trained on a loaded 2-core CPU with
`fakelab train-detector --real WORK/train_crops --pseudo-fakes self-blend --epochs 1
--frames-per-video 6 -o WORK/lite0-quick.safetensors`, train_crops holding the 256x256
training clips only (one epoch took 18 minutes there; validation AUC 0.559). `--reals` real and `--fakes` fake clips (fakes alternate portrait and
video-frame sources), their first `--max-frames` frames, `--frames` scored per clip; the
seven DeeperForensics-1.0 distortions at all five levels, the others at levels 1, 3, 5.
With `fakelab.detection.cues` in the build, the cue scorer is swept too, on the whole
24-frame clips (`--cue-max-frames`), DeeperForensics-1.0 at levels 1, 3, 5 and the others at
their strongest level.

animation: landmark-warp self-reenactment of d11, an identity the detector never saw (first
`--max-frames` frames), under bitrate 8000/1000/110 kbit/s (levels 1, 3, 5), a hand and an
object crossing the face (levels 1, 3, 5), eyes closed, low light (level 5) and rotation
(levels 3, 5); the pose curve from cross-identity animations of the portraits s0, s3, s4,
s7, s11 driven by d11; the FOMM engine with the tiny-vox fixture
checkpoint (random weights: plumbing only) on d11 under bitrate and the hand.

Every sweep is resumable (a finished cell is not recomputed). Writes into --work and,
with --docs, copies the figures and tables to docs/stress/.

    python bench/detector_experiment.py --work /tmp/fakelab-stress/detector   # its data (stop it after "data ready")
    python bench/stress_sweep.py detector                                       # the quick Lite0
    python bench/stress_sweep.py detection --max-frames 8 [--detector-work /tmp/fakelab-stress/detector]
    python bench/stress_sweep.py animation --only-run landmark-warp-self landmark-warp-pose fomm-tiny-vox-self
    python bench/stress_sweep.py animation --only-run landmark-warp-bitrate --max-frames 24
    python bench/stress_sweep.py sheet      # the contact sheet of every perturbation
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import torch

from fakelab.animation.api import build_animator
from fakelab.detection.checkpoint import load_detector
from fakelab.detection.pipeline import ready_for_inference
from fakelab.stress.animation import run_animation_sweep, write_animation_report
from fakelab.stress.detection import CheckpointScorer, CueScorer, run_detection_sweep, write_detection_report
from fakelab.stress.perturbations import DEEPERFORENSICS, PERTURBATIONS

REPO = Path(__file__).resolve().parents[1]
MEDIA = REPO.parent / "shared" / "media"
FIXTURES = REPO.parent / "shared" / "fixtures" / "fomm"
DOCS = REPO / "docs" / "stress"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def progress(description: str):
    from tqdm import tqdm

    return lambda steps, total: tqdm(steps, total=total, desc=description, unit="clip", file=sys.stderr, mininterval=10)


def pick_clips(folder: Path, count: int, alternate_by=None) -> list[Path]:
    clips = sorted(folder.glob("*.mp4"))
    if alternate_by is None:
        step = max(1, len(clips) // count)
        return clips[::step][:count]
    groups = [[c for c in clips if alternate_by(c)], [c for c in clips if not alternate_by(c)]]
    chosen = []
    while len(chosen) < count and any(groups):
        for group in groups:
            if group and len(chosen) < count:
                chosen.append(group.pop(len(group) // 2 if len(chosen) % 3 else 0))
    return sorted(chosen)


def copy_outputs(folder: Path, prefix: str, names: list[str]) -> None:
    DOCS.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(folder / name, DOCS / f"{prefix}-{name}")


def train_quick_detector(args) -> None:
    """The quick detector: the 256x256 training clips of bench/detector_experiment.py (not the
    full-resolution ones) in WORK/train_crops, one epoch of `fakelab train-detector`."""
    import subprocess

    work = args.detector_work
    crops = work / "train_crops"
    crops.mkdir(exist_ok=True)
    for clip in sorted((work / "train_real").glob("d*_train*.mp4")):
        if "_full_" not in clip.name and not (crops / clip.name).exists():
            (crops / clip.name).symlink_to(clip.resolve())
    command = [
        sys.executable, "-m", "fakelab", "train-detector", "--real", str(crops), "--pseudo-fakes", "self-blend",
        "--epochs", "1", "--frames-per-video", "6", "-o", str(args.detector),
    ]
    log(" ".join(command))
    subprocess.run(command, check=True)


def detection(args) -> None:
    work = args.detector_work
    detector_path = args.detector
    if not detector_path.exists():
        sys.exit(f"{detector_path} is missing: see the docstring for how to make it")
    portraits = ("s0_", "s4_", "s7_")
    reals = pick_clips(work / "test_real", args.reals)
    fakes = pick_clips(work / "test_fake", args.fakes, alternate_by=lambda p: p.name.startswith(portraits))
    log(f"reals: {[p.name for p in reals]}")
    log(f"fakes: {[p.name for p in fakes]}")
    # DeeperForensics-1.0's seven at all five levels, the others at levels 1, 3, 5.
    cells = [
        (name, level)
        for name, perturbation in PERTURBATIONS.items()
        for level in (perturbation.levels if name in DEEPERFORENSICS or len(perturbation.levels) < 5 else (1, 3, 5))
    ]
    # The cue scorer reads every frame (blinks, lip motion): fewer cells, whole clips.
    cue_cells = [
        (name, level)
        for name, perturbation in PERTURBATIONS.items()
        for level in ((1, 3, 5) if name in DEEPERFORENSICS else perturbation.levels[-1:])
    ]
    scorers = [
        ("lite0", lambda: CheckpointScorer(ready_for_inference(load_detector(detector_path)), args.frames), {"checkpoint": str(detector_path), "frames": args.frames}, cells, args.max_frames),
        ("cues", CueScorer, {"method": "cues"}, cue_cells, args.cue_max_frames),
    ]
    for label, make_scorer, settings, cells, max_frames in scorers:
        if args.only_run and label not in args.only_run:
            continue
        try:
            scorer = make_scorer()
        except Exception as error:  # the cue scorer is not in this build
            log(f"{label} skipped: {error}")
            continue
        started = time.perf_counter()
        out = args.work / f"detection-{label}"
        sweep = run_detection_sweep(
            scorer, reals, fakes, out, max_frames=max_frames, seed=0,
            settings=settings, progress=progress(f"detection {label}"), log=log, cells=cells,
        )
        write_detection_report(sweep, out)
        log(f"{label}: {len(sweep.cells)} cells in {time.perf_counter() - started:.0f} s -> {out}")
        if args.docs:
            copy_outputs(out, f"detection-{label}", ["auc.png", "fake_score.png", "real_score.png", "table.md"])


def animation(args) -> None:
    driving = [MEDIA / "d11.mp4"]
    warp = build_animator("landmark-warp")
    runs = [
        (
            "landmark-warp-self",
            warp,
            "landmark-warp",
            [],
            driving,
            {"bitrate": [1, 3, 5], "hand": [1, 3, 5], "object": [1, 3, 5], "eyes-closed": [5], "low-light": [5], "rotation": [3, 5]},
        ),
        (
            # The bitrate question on more data: d11 and d18, run with --max-frames 24.
            "landmark-warp-bitrate",
            warp,
            "landmark-warp",
            [],
            [MEDIA / "d11.mp4", MEDIA / "d18.mp4"],
            {"bitrate": [1, 3, 5]},
        ),
        (
            "landmark-warp-pose",
            warp,
            "landmark-warp",
            [MEDIA / f"{name}.jpg" for name in ("s0", "s3", "s4", "s7", "s11")],
            driving,
            {},
        ),
    ]
    fomm_checkpoint = FIXTURES / "tiny-vox-cpk.pth.tar"
    if fomm_checkpoint.exists():
        fomm = build_animator("fomm", fomm_checkpoint, FIXTURES / "tiny-vox.yaml")
        runs.append(("fomm-tiny-vox-self", fomm, "fomm (tiny-vox fixture, random weights)", [], driving[:1], {"bitrate": [1, 3, 5], "hand": [1, 3, 5]}))
    for label, animator, model, sources, drives, plan in runs:
        if args.only_run and label not in args.only_run:
            continue
        started = time.perf_counter()
        out = args.work / f"animation-{label}"
        cells = [(name, level) for name, levels in plan.items() for level in (levels or PERTURBATIONS[name].levels)]
        sweep = run_animation_sweep(
            animator, model, sources, drives, out, max_frames=args.max_frames, seed=0,
            progress=progress(label), log=log, cells=cells,
        )
        write_animation_report(sweep, out)
        log(f"{label}: {len(sweep.cells)} cells in {time.perf_counter() - started:.0f} s -> {out}")
        if args.docs:
            copy_outputs(out, f"animation-{label}", ["quality.png", "pose.png", "table.md"])


def sheet(args) -> None:
    """A contact sheet: each perturbation (rows) at levels 0, 1, 3, 5 on the middle frame of a
    face-cropped clip of d11 -> docs/stress/perturbations.png."""
    from itertools import islice

    import cv2
    import numpy as np

    from fakelab.animation.api import DrivingVideo
    from fakelab.stress.perturbations import clip_landmarks, perturb
    from fakelab.video import iter_frames

    side = 112
    frames = list(DrivingVideo(list(islice(iter_frames(MEDIA / "d11.mp4"), 20)), (side, side), 25.0, crop=True).frames())
    landmarks = clip_landmarks(frames)
    rows = []
    for name, perturbation in PERTURBATIONS.items():
        cells = []
        for level in (0, 1, 3, 5):
            if level > len(perturbation.parameters):
                cells.append(np.full((side, side, 3), 255, np.uint8))
                continue
            frame = perturb(name, frames, level, 0, landmarks if perturbation.needs_landmarks else None)[12]
            frame = cv2.resize(frame, (side, side), interpolation=cv2.INTER_NEAREST) if frame.shape[0] != side else frame
            cells.append(frame)
        label = np.full((side, 112, 3), 255, np.uint8)
        cv2.putText(label, name, (4, side // 2 + 4), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
        rows.append(np.concatenate([label, *cells], axis=1))
    header = np.full((22, rows[0].shape[1], 3), 255, np.uint8)
    for k, text in enumerate(("level 0", "level 1", "level 3", "level 5")):
        cv2.putText(header, text, (112 + k * side + 30, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 1, cv2.LINE_AA)
    DOCS.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    # A 192-colour palette keeps the sheet small enough for the docs.
    image = Image.fromarray(np.concatenate([header, *rows], axis=0)).quantize(192, method=Image.Quantize.MEDIANCUT)
    image.save(DOCS / "perturbations.png", optimize=True)
    log(f"wrote {DOCS / 'perturbations.png'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("what", choices=["detector", "detection", "animation", "sheet"])
    parser.add_argument("--work", type=Path, default=Path("/tmp/fakelab-stress"))
    parser.add_argument("--detector-work", type=Path, default=Path("/tmp/fakelab-stress/detector"))
    parser.add_argument("--detector", type=Path, default=Path("/tmp/fakelab-stress/detector/lite0-quick.safetensors"))
    parser.add_argument("--reals", type=int, default=4)
    parser.add_argument("--fakes", type=int, default=4)
    parser.add_argument("--frames", type=int, default=3, help="frames scored per clip")
    parser.add_argument("--max-frames", type=int, default=12, help="frames read per clip or driving video")
    parser.add_argument("--cue-max-frames", type=int, default=24, help="frames the cue scorer reads per clip")
    parser.add_argument("--only-run", nargs="*", help="only these runs (lite0, cues, landmark-warp-self, ...)")
    parser.add_argument("--docs", action="store_true", help="copy figures and tables to docs/stress/")
    args = parser.parse_args()
    torch.set_num_threads(1)
    {"detector": train_quick_detector, "detection": detection, "animation": animation, "sheet": sheet}[args.what](args)


if __name__ == "__main__":
    main()
