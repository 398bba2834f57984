"""CLI of the attacks pillar: `fakelab attack`."""

from __future__ import annotations

import argparse
import math
from fractions import Fraction
from pathlib import Path

from tqdm import tqdm

from fakelab.attacks.methods import ATTACKS, DEFAULT_MARGIN, ROBUST_MARGIN, AttackConfig
from fakelab.attacks.video import DEFAULT_CRF, attack_video, report_paths
from fakelab.cli_checks import check_paths, check_suffix, integer, number, positive_int, seed
from fakelab.detection.checkpoint import load_detector
from fakelab.detection.registry import ARCHITECTURES
from fakelab.video import probe_video
from fakelab.faces.detect import DETECTORS
from fakelab.provenance.commands import add_provenance_argument

DEFAULTS = AttackConfig()


# Options that set the AttackConfig field of the same name: (flag, type, meaning).
TUNING_OPTIONS = (
    ("--eot-samples", integer(1, 10_000), "transformations per step for robust and nes-robust"),
    ("--nes-samples", integer(2, 100_000), "queries per NES gradient estimate, an even number"),
    ("--nes-sigma", number(maximum=1, above=0), "NES sampling scale (default 0.001 for nes, 0.02 for nes-robust, "
     "whose probes must survive 8-bit rounding)"),
    ("--nes-tile", integer(1, 1024), "NES samples one value per square of this many pixels"),
    ("--nes-momentum", number(0, 0.999), "NES steps along a running average of its estimates"),
)
CRF = integer(0, 51)


def _field(flag: str) -> str:
    """'--nes-sigma' -> 'nes_sigma', the AttackConfig field and the argparse destination."""
    return flag[2:].replace("-", "_")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "attack",
        help="make a video's face fool a deepfake detector with an adversarial perturbation",
        description="Follow the face through VIDEO, crop it as `fakelab detect` does, and perturb the "
        "crop at its native resolution within an L-infinity budget until the detector calls it real "
        "(white-box: ifgsm, pgd, robust = EOT over blur/noise/shifts/rescaling/JPEG; black-box from "
        "scores only: nes, nes-robust). Writes OUTPUT (H.264, audio kept), <name>.lossless.mkv, "
        "<name>.report.json and <name>.report.md.",
    )
    parser.add_argument("video", metavar="VIDEO", help="video whose face to perturb")
    parser.add_argument("--detector", required=True, metavar="CHECKPOINT", help="detector checkpoint to fool")
    parser.add_argument("--arch", choices=list(ARCHITECTURES), help="detector architecture, if the checkpoint does not say")
    parser.add_argument("-o", "--output", required=True, help="attacked video (.mp4, .mov or .mkv)")
    parser.add_argument("--method", choices=list(ATTACKS), default="ifgsm", help="attack (default: ifgsm)")
    parser.add_argument(
        "--eps", type=intensity, default=DEFAULTS.eps, metavar="E",
        help="L-infinity budget: 16/255, 0.063, or whole uint8 levels such as 16 (default 16/255)",
    )
    parser.add_argument(
        "--step", type=intensity, default=DEFAULTS.step, metavar="S", help="step size, as --eps (default 1/255)"
    )
    parser.add_argument(
        "--steps", type=integer(1, 100_000), default=DEFAULTS.max_iterations, metavar="N",
        help=f"most iterations per frame (default {DEFAULTS.max_iterations})",
    )
    parser.add_argument(
        "--margin", type=number(0, 100),
        help=f"stop once a frame is called real by this many log-odds (default {DEFAULT_MARGIN:g}; "
        f"{ROBUST_MARGIN:g} for robust and nes-robust, which must stay real through compression)",
    )
    parser.add_argument("--frames", type=positive_int, metavar="N", help="attack only the first N frames (the output has N frames)")
    parser.add_argument(
        "--recompress", type=crf_list, default=(), metavar="CRFS",
        help="re-encode the result at these H.264 CRFs (e.g. 23,30,40) and score it again",
    )
    parser.add_argument("--crf", type=CRF, default=DEFAULT_CRF, help=f"CRF of OUTPUT (default {DEFAULT_CRF})")
    for flag, kind, meaning in TUNING_OPTIONS:
        default = getattr(DEFAULTS, _field(flag))
        shown = "" if default is None else f" (default {default:g})"
        parser.add_argument(flag, type=kind, default=default, help=meaning + shown)
    parser.add_argument("--seed", type=seed, default=DEFAULTS.seed, help="seed of the random parts (default 0)")
    parser.add_argument("--face-detector", choices=DETECTORS, help="face detector (default hog)")
    add_provenance_argument(parser)
    parser.set_defaults(handler=run_attack_command)


def intensity(text: str) -> float:
    """'16/255', '0.063', or whole uint8 levels ('16') -> a fraction of the [0, 1] range."""
    try:
        value = float(Fraction(text.strip()))
    except (ValueError, ZeroDivisionError, OverflowError):
        raise argparse.ArgumentTypeError(f"not a number or fraction: {text!r}") from None
    if not math.isfinite(value) or value <= 0 or value > 255:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 1 (or 255 uint8 levels), got {text!r}")
    return value / 255 if value >= 1 else value


def crf_list(text: str) -> tuple[int, ...]:
    try:
        return tuple(CRF(part) for part in text.split(",") if part.strip())
    except argparse.ArgumentTypeError as error:
        raise argparse.ArgumentTypeError(f"expected comma-separated CRFs 0-51 such as 23,30,40: {error}") from None


def run_attack_command(args: argparse.Namespace) -> None:
    output = Path(args.output)
    side = [output.with_name(output.stem + ".lossless.mkv"), *report_paths(output)]
    side += [output.with_name(f"{output.stem}.crf{level}.mp4") for level in args.recompress]
    check_paths(inputs={"video": args.video, "detector checkpoint": args.detector}, outputs=[output], side_outputs=side)
    check_suffix(args.output, (".mp4", ".mov", ".mkv"))
    probe_video(args.video)  # a broken video fails before the detector loads
    config = AttackConfig(
        eps=args.eps,
        step=args.step,
        max_iterations=args.steps,
        margin=args.margin,
        seed=args.seed,
        **{_field(flag): getattr(args, _field(flag)) for flag, _, _ in TUNING_OPTIONS},
    )
    detector = load_detector(args.detector, args.arch)
    report = attack_video(
        args.video,
        detector,
        args.output,
        method=args.method,
        config=config,
        frames=args.frames,
        recompress=args.recompress,
        crf=args.crf,
        face_detector=args.face_detector,
        provenance=not args.no_provenance,
        progress=lambda frames: tqdm(frames, total=args.frames, desc=f"attack ({args.method})", unit="frame"),
    )
    print(report.summary())
    print("reports: " + ", ".join(str(path) for path in report_paths(args.output)))
