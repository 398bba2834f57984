"""CLI of the stress pillar: `fakelab stress detection|animation|perturbations`."""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from tqdm import tqdm

from fakelab.cli_checks import positive_int, probability, seed
from fakelab.errors import InputError
from fakelab.stress.perturbations import DEEPERFORENSICS, PERTURBATIONS

DESCRIPTION = (
    "Every perturbation at every level: the seven DeeperForensics-1.0 distortions at their five "
    "published levels and fakelab's own (rotation, flip, downscale, bitrate, a hand or object "
    "over the face, eyes closed, teeth hidden, low light, frame drops). Finished cells are kept in "
    "OUT and not recomputed when the command is run again; unreadable inputs are reported and skipped."
)


def register(subparsers) -> None:
    parser = subparsers.add_parser("stress", help="stress-test detectors and animation models", description=DESCRIPTION)
    kinds = parser.add_subparsers(dest="stress_kind", required=True, metavar="KIND")
    _register_detection(kinds)
    _register_animation(kinds)
    listing = kinds.add_parser("perturbations", help="list the perturbations and their levels")
    listing.set_defaults(handler=run_list)


def _levels(text: str) -> list[int]:
    try:
        levels = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"levels are whole numbers separated by commas, got {text!r}") from None
    if not levels or min(levels) < 1:
        raise argparse.ArgumentTypeError(f"levels run from 1 (0 is the unperturbed run, always made), got {text!r}")
    return levels


def _add_sweep_arguments(parser: argparse.ArgumentParser, max_frames: int) -> None:
    parser.add_argument("-o", "--output", required=True, type=Path, help="output folder (created; a sweep there is resumed)")
    parser.add_argument(
        "--perturbation",
        action="append",
        choices=list(PERTURBATIONS),
        metavar="NAME",
        help="run only these (repeatable; default all; `fakelab stress perturbations` lists them)",
    )
    parser.add_argument("--deeperforensics", action="store_true", help="only the seven DeeperForensics-1.0 distortions")
    parser.add_argument("--levels", type=_levels, help="only these levels, e.g. 1,3,5 (default all)")
    parser.add_argument(
        "--max-frames", type=positive_int, default=max_frames, help=f"frames read from each video (default {max_frames})"
    )
    parser.add_argument("--seed", type=seed, default=0, help="seed of the random perturbations (default 0)")
    parser.add_argument("--restart", action="store_true", help="forget the cells stored in OUTPUT and start again")
    from fakelab.scale.commands import add_ray_arguments

    add_ray_arguments(parser, "one Ray actor per CPU computes whole cells; the results are the serial sweep's")


def _register_detection(kinds) -> None:
    from fakelab.detection.registry import ARCHITECTURES
    from fakelab.stress.detection import DEFAULT_MAX_FRAMES, DEFAULT_SCORED_FRAMES

    parser = kinds.add_parser(
        "detection",
        help="a detector's AUC and scores under every perturbation",
        description="Score real and fake clips under every perturbation at every level: video-level AUC, "
        "accuracy, mean P(fake) of fakes and reals and their shift from the unperturbed clips. Writes "
        "results.json, table.md, auc.png, fake_score.png, real_score.png and report.html into OUTPUT. " + DESCRIPTION,
    )
    parser.add_argument("--real", required=True, type=Path, help="folder of real videos or images (searched recursively)")
    parser.add_argument("--fake", required=True, type=Path, help="folder of fake videos or images (searched recursively)")
    method = parser.add_mutually_exclusive_group(required=True)
    method.add_argument("--checkpoint", type=Path, help="detector weights (.pt, .pth, .p, .safetensors)")
    method.add_argument("--method", choices=["cues"], help="cues: the no-checkpoint cue scorer")
    parser.add_argument("--arch", choices=list(ARCHITECTURES), help="architecture (default: from the checkpoint)")
    parser.add_argument(
        "--frames", type=positive_int, default=DEFAULT_SCORED_FRAMES,
        help=f"frames scored per clip, sampled evenly (default {DEFAULT_SCORED_FRAMES})",
    )
    parser.add_argument("--threshold", type=probability, default=0.5, help="fake when P(fake) reaches this (default 0.5)")
    _add_sweep_arguments(parser, DEFAULT_MAX_FRAMES)
    parser.set_defaults(handler=run_detection, keeps_finished_outputs=True)  # finished cells, to resume from


def _register_animation(kinds) -> None:
    from fakelab.animation.api import MODELS
    from fakelab.stress.animation import DEFAULT_MAX_FRAMES

    parser = kinds.add_parser(
        "animation",
        help="what an animation model loses when its driving video is perturbed",
        description="Animate each source with each driving video, unperturbed and under every perturbation; "
        "L1/AKD/AED against the unperturbed animation (and the real frames for self-reenactment), tracking "
        "failures, glitch flag rate, and AKD against the source/driving pose gap. Writes results.json, table.md, "
        "quality.png, pose.png and report.html into OUTPUT. " + DESCRIPTION,
    )
    parser.add_argument("--source", nargs="+", default=[], type=Path, help="source images (default: self-reenactment)")
    parser.add_argument("--driving", nargs="+", required=True, type=Path, help="driving videos")
    parser.add_argument("--model", choices=list(MODELS), default="portrait", help="animation model (default portrait, as fakelab animate)")
    parser.add_argument("--checkpoint", type=Path, help="FOMM checkpoint (with --model fomm)")
    parser.add_argument("--config", default="vox-256", help="FOMM config name or YAML path (default vox-256)")
    _add_sweep_arguments(parser, DEFAULT_MAX_FRAMES)
    parser.set_defaults(handler=run_animation, keeps_finished_outputs=True)  # finished cells, to resume from


def _chosen(args: argparse.Namespace) -> list[str]:
    if args.perturbation and args.deeperforensics:
        raise InputError("give --perturbation or --deeperforensics, not both")
    if args.deeperforensics:
        return list(DEEPERFORENSICS)
    return list(dict.fromkeys(args.perturbation)) if args.perturbation else list(PERTURBATIONS)


def _check_output(output: Path, inputs: list[Path]) -> None:
    if output.exists() and not output.is_dir():
        raise InputError(f"{output} is a file; the output must be a folder")
    resolved = output.resolve()
    for path in inputs:
        if path.resolve() == resolved:
            raise InputError(f"the output folder {output} is an input: give another path")


def _progress(description: str, unit: str = "clip"):
    def wrap(steps, total):
        return tqdm(steps, total=total, desc=description, unit=unit, file=sys.stderr, disable=None)

    return wrap


@contextlib.contextmanager
def _cell_map(args: argparse.Namespace, description: str):
    """(map_cells, progress) for the sweep: on Ray with --ray (progress by cell), else serial."""
    if args.ray is None:
        yield None, _progress(description)
        return
    from fakelab.scale.cells import ray_cell_map

    with ray_cell_map(args.ray, args.ray_cpus) as map_cells:
        yield map_cells, _progress(description + " (ray)", unit="cell")


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_detection(args: argparse.Namespace) -> None:
    from fakelab.detection.pipeline import media_files
    from fakelab.stress.detection import CheckpointScorer, CueScorer, run_detection_sweep, write_detection_report

    names = _chosen(args)
    real, fake = media_files(args.real, recursive=True), media_files(args.fake, recursive=True)
    _check_output(args.output, [args.real, args.fake])
    if args.checkpoint is not None:
        from fakelab.detection.checkpoint import load_detector
        from fakelab.detection.pipeline import ready_for_inference

        detector = ready_for_inference(load_detector(args.checkpoint, args.arch))
        scorer = CheckpointScorer(detector, args.frames)
        scorer_id = {"checkpoint": str(args.checkpoint.resolve()), "frames": args.frames}
    else:
        scorer = CueScorer()
        scorer_id = {"method": "cues"}
    with _cell_map(args, "stress detection") as (map_cells, progress):
        sweep = run_detection_sweep(
            scorer, real, fake, args.output, names, args.levels, args.max_frames, args.threshold, args.seed,
            settings=scorer_id, restart=args.restart, progress=progress, log=_log, map_cells=map_cells,
        )
    paths = write_detection_report(sweep, args.output)
    clean = sweep.summary("clean", 0)
    print(f"unperturbed: AUC {clean['auc']:.3f}, accuracy {clean['accuracy']:.3f} over {len(sweep.clean()['results'])} clips")
    for row in sorted((r for r in sweep.rows() if r["auc"] is not None and r["level"] > 0), key=lambda r: r["auc"])[:3]:
        print(f"lowest AUC: {row['perturbation']} level {row['level']} ({row['parameter']}): {row['auc']:.3f}")
    print("wrote " + ", ".join(str(p) for p in paths.values()))


def run_animation(args: argparse.Namespace) -> None:
    from fakelab.animation.api import build_animator
    from fakelab.stress.animation import run_animation_sweep, write_animation_report

    names = _chosen(args)
    for path in [*args.source, *args.driving]:
        if not path.exists():
            raise InputError(f"{path} does not exist")
    _check_output(args.output, [*args.source, *args.driving])
    if args.model != "fomm" and args.checkpoint is not None:
        raise InputError(f"--checkpoint is for --model fomm; {args.model} needs no weights")
    animator = build_animator(args.model, args.checkpoint, args.config)
    settings = {"checkpoint": str(args.checkpoint.resolve()) if args.checkpoint else None, "config": args.config if args.model == "fomm" else None}
    with _cell_map(args, "stress animation") as (map_cells, progress):
        sweep = run_animation_sweep(
            animator, args.model, args.source, args.driving, args.output, names, args.levels, args.max_frames,
            args.seed, settings=settings, restart=args.restart, progress=progress, log=_log, map_cells=map_cells,
        )
    paths = write_animation_report(sweep, args.output)
    clean = sweep.summary("clean", 0)
    print(f"unperturbed: glitch rate {clean['glitch_rate']:.3f}, tracking failures {clean['tracking_failures']:.3f}")
    print("wrote " + ", ".join(str(p) for p in paths.values()))


def run_list(args: argparse.Namespace) -> None:
    for perturbation in PERTURBATIONS.values():
        levels = ", ".join(f"{v:g}" for v in perturbation.parameters)
        print(f"{perturbation.name:<13} {perturbation.origin:<20} {perturbation.description} [{levels}] {perturbation.unit}")
