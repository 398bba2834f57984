"""CLI commands of the detection pillar: `fakelab detect`, `fakelab train-detector`, and
the `detection` kind of `fakelab evaluate` (see fakelab/evaluate_commands.py)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tqdm import tqdm

from fakelab.animation.api import resolve_device
from fakelab.attacks.commands import intensity
from fakelab.attacks.evaluation import evaluate_detection_under_attack
from fakelab.attacks.methods import ATTACKS, AttackConfig
from fakelab.cli_checks import (
    check_paths,
    check_suffix,
    device,
    integer,
    number,
    positive_int,
    positive_number,
    probability,
    seed,
)
from fakelab.attacks.training import ADVERSARIAL_METHODS, TRAINING_EPS, TRAINING_STEPS
from fakelab.detection.backends import DETECTOR_BACKENDS, with_backend
from fakelab.detection.checkpoint import load_detector
from fakelab.detection.cues import DEFAULT_SECONDS as CUE_SECONDS
from fakelab.detection.cues import score_video_cues
from fakelab.detection.ensemble import CombinedVerdict, EnsembleDetector, MemberScore, load_detectors
from fakelab.detection.evaluate import evaluate_detection, write_evaluation
from fakelab.detection.pipeline import (
    DEFAULT_FRAMES,
    DEFAULT_THRESHOLD,
    SCORING_RULE,
    ScanFailure,
    ScanResult,
    VideoScore,
    file_faces,
    is_image,
    media_files,
    ready_for_inference,
    scan,
    score_faces,
    score_file,
)
from fakelab.detection.registry import ARCHITECTURES
from fakelab.detection.report import DEFAULT_TOP_FRAMES, write_cue_report, write_report
from fakelab.detection.train import PSEUDO_FAKES, TrainingConfig, state_path, train_detector
from fakelab.errors import FakelabError, InputError
from fakelab.safe_load import finite_json
from fakelab.faces.detect import DETECTORS
from fakelab.scale.commands import add_ledger_arguments, add_ray_arguments, run_ray_detect


METHODS = ("cues", "cnn", "all")


def register(subparsers) -> None:
    _register_detect(subparsers)
    _register_train(subparsers)


def _add_model_arguments(parser: argparse.ArgumentParser, ensemble: bool = False) -> None:
    if ensemble:
        parser.add_argument(
            "--checkpoint", action="append", metavar="CHECKPOINT",
            help="detector weights (.pt, .pth, .p, .safetensors); repeat it for an ensemble, whose logits are "
            "averaged; without it, the forensic cues score the video (--method cues)",
        )
    else:
        parser.add_argument("--checkpoint", required=True, help="detector weights (.pt, .pth, .p, .safetensors)")
    parser.add_argument(
        "--arch", choices=list(ARCHITECTURES), help="architecture (default: the one the checkpoint records or its keys show)"
    )
    parser.add_argument("--device", type=device, default="cpu", help="cpu or cuda (default: cpu)")


def _add_scoring_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--frames", type=integer(1, 100_000), default=DEFAULT_FRAMES, help=f"frames sampled evenly from each video (default {DEFAULT_FRAMES})"
    )
    parser.add_argument(
        "--threshold", type=probability, default=DEFAULT_THRESHOLD, help=f"fake when the score reaches this (default {DEFAULT_THRESHOLD})"
    )
    parser.add_argument("--face-detector", choices=DETECTORS, help="face detector (default hog; haar without dlib)")


def _register_detect(subparsers) -> None:
    parser = subparsers.add_parser(
        "detect",
        help="score a video, an image or a folder of them for manipulation",
        description="Without --checkpoint (--method cues): follow the face through the first seconds of the "
        "video and score forensic cues (detector failures, landmark jitter, head-pose inconsistency, blinks, "
        "mouth interior, paste-back seam, still background, lip-sync against the audio) with a small shipped "
        "logistic model. With --checkpoint (--method cnn): follow the face through frames sampled evenly from "
        "each video, crop it as FaceForensics++ does (1.3 x the face box), and score each crop; "
        f"{SCORING_RULE}; several checkpoints are an ensemble (logits averaged). --method all averages both. "
        "A folder is scanned file by file: a file that cannot be scored is reported and the scan goes on.",
    )
    parser.add_argument("input", metavar="VIDEO|IMAGE|DIR")
    _add_model_arguments(parser, ensemble=True)
    _add_scoring_arguments(parser)
    parser.add_argument(
        "--method", choices=METHODS,
        help="cues: forensic cues and lip-sync, no weights (the default without --checkpoint); cnn: the "
        "checkpoint(s) (the default with one); all: both, their video logits averaged",
    )
    parser.add_argument(
        "--seconds", type=positive_number, default=CUE_SECONDS,
        help=f"cues: seconds of consecutive frames analysed from the start (default {CUE_SECONDS:g})",
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--report", metavar="HTML", help="write a one-file HTML report (timeline, heatmaps)")
    parser.add_argument(
        "--top", type=integer(1, 1000), default=DEFAULT_TOP_FRAMES, help=f"suspicious frames shown in the report (default {DEFAULT_TOP_FRAMES})"
    )
    parser.add_argument(
        "--backend", choices=DETECTOR_BACKENDS, default="torch",
        help="what runs the detector on CPU: torch (default), or its ONNX export on onnxruntime or openvino "
        "(same scores within 1e-6; see docs/speed.md)",
    )
    add_ray_arguments(parser)
    add_ledger_arguments(parser)
    parser.set_defaults(handler=run_detect)


def _check_scoring(args: argparse.Namespace) -> None:
    if args.frames < 1:
        raise InputError(f"--frames must be at least 1, got {args.frames}")
    if not 0 <= args.threshold <= 1:
        raise InputError(f"--threshold is a probability, between 0 and 1; got {args.threshold}")


def _print_outcome(outcome: VideoScore | ScanFailure, as_json: bool) -> None:
    if isinstance(outcome, ScanFailure):
        print(f"skipped {outcome.source}: {outcome.error}", file=sys.stderr)
    elif not as_json:
        print(outcome.summary(), flush=True)


def _provenance(source: Path, as_json: bool):
    """What provenance says about one file. A file marked as fakelab's is said so at once, whatever
    follows; otherwise the (negative) report is printed just before the model's score."""
    from fakelab.provenance.commands import provenance_report

    report = provenance_report(source)
    if report is not None and report.made_by_fakelab and not as_json:
        print(report.describe(), flush=True)
        print(f"{source}: MADE BY FAKELAB (provenance), whatever the detector below says", flush=True)
    return report


class FolderProvenance:
    """Provenance of every file of a scanned folder, read as each file's result comes: a marked
    file is called fakelab's in the text output and in its JSON entry, whatever its score."""

    def __init__(self, as_json: bool):
        self.as_json = as_json
        self.reports: dict[str, object] = {}

    def note(self, path: Path) -> None:
        from fakelab.provenance.commands import MADE_BY_FAKELAB, provenance_report

        report = provenance_report(path)
        self.reports[str(path)] = report
        if not self.as_json:
            verdict = report.verdict() if report is not None else "not readable"
            made = report is not None and report.made_by_fakelab
            print(f"{path}: {MADE_BY_FAKELAB if made else 'provenance: ' + verdict}", flush=True)

    def annotate(self, entries: list[dict]) -> list[dict]:
        """JSON entries (results or failures, each with its "file") with their provenance."""
        from fakelab.provenance.commands import provenance_fields

        for entry in entries:
            entry.update(provenance_fields(self.reports.get(entry.get("file"))))
        return entries


def run_detect(args: argparse.Namespace) -> None:
    _check_scoring(args)
    source = Path(args.input)
    if not source.exists():
        raise InputError(f"{source} does not exist")
    checkpoints = {f"checkpoint {index + 1}": path for index, path in enumerate(args.checkpoint or [])}
    check_paths(inputs={**checkpoints, "input": None if source.is_dir() else source}, outputs=[args.report])
    check_suffix(args.report, (".html", ".htm"), "report")
    method = args.method or ("cnn" if args.checkpoint else "cues")
    if method != "cues" and not args.checkpoint:
        raise InputError(f"--method {method} needs --checkpoint (or use --method cues, which needs none)")
    if method == "cues" and args.checkpoint:
        raise InputError("--method cues uses no checkpoint: drop --checkpoint, or use --method all for both")
    if args.ray is not None:
        if method != "cnn" or len(args.checkpoint) != 1:
            raise InputError("--ray scans with one CNN checkpoint: give one --checkpoint and no --method cues/all")
        return run_ray_detect(args, source, args.checkpoint[0])
    if args.backend != "torch" and args.report:
        raise InputError("--report needs gradients (Grad-CAM): use it with --backend torch")
    # Checkpoints load before anything is printed: a bad one is the only line the user sees.
    detector = None
    if method != "cues":
        detector = ready_for_inference(load_detectors(args.checkpoint, args.arch), resolve_device(args.device))
    # Provenance comes before any model score: a marked file is fakelab's.
    provenance = None if source.is_dir() else _provenance(source, args.json)
    if method != "cnn":
        run_detect_cues(args, source, method, detector, provenance)
        return
    detector = with_backend(detector, args.backend)
    folder = FolderProvenance(args.json) if source.is_dir() else None
    if source.is_dir():
        paths = media_files(source)

        def on_result(outcome: VideoScore | ScanFailure) -> None:
            _print_outcome(outcome, args.json)
            folder.note(outcome.source if isinstance(outcome, ScanFailure) else outcome.faces.source)

        result = scan(detector, paths, args.frames, args.threshold, args.face_detector, on_result)
        if not result.scores:
            raise InputError(f"none of the {len(paths)} files in {source} could be scored")
    else:
        result = ScanResult([score_file(detector, source, args.frames, args.threshold, args.face_detector)])
        if provenance is not None and not provenance.made_by_fakelab and not args.json:
            print(provenance.describe(), flush=True)
        _print_outcome(result.scores[0], args.json)
    checkpoints = ", ".join(str(path) for path in args.checkpoint)
    if args.report:
        write_report(args.report, detector, result.scores, result.failures, checkpoints, args.top)
    if args.json:
        document = {"method": "cnn", "checkpoint": checkpoints, "arch": detector.arch, "threshold": args.threshold, **result.to_json()}
        if provenance is not None:
            document["provenance"] = provenance.to_json()
        if folder is not None:
            folder.annotate(document["results"])
            folder.annotate(document["failures"])
        print(json.dumps(finite_json(document), indent=2, allow_nan=False))
    elif args.report:
        print(f"report written to {args.report}")


def _score_with_cues(args: argparse.Namespace, path: Path, method: str, detector) -> tuple:
    """(CueVerdict, CombinedVerdict or None) of one video."""
    if is_image(path):
        raise InputError(f"{path} is an image: the cues need a video (use --method cnn with a checkpoint)")
    cues = score_video_cues(path, seconds=args.seconds, threshold=args.threshold)
    if method != "all":
        return cues, None
    members = detector.members if isinstance(detector, EnsembleDetector) else [detector]
    faces = file_faces(path, max(member.input_spec.size for member in members), args.frames, args.face_detector)
    scores = [MemberScore(member.arch, score_faces(member, faces).mean_logit) for member in members]
    return cues, CombinedVerdict(str(path), (*scores, MemberScore("cues", cues.logit)), args.threshold)


def run_detect_cues(
    args: argparse.Namespace, source: Path, method: str, detector=None, provenance=None
) -> None:
    """`fakelab detect --method cues|all` (`detector`: the CNN members of `all`): file by file, a
    failure is reported and the scan goes on."""
    paths = media_files(source) if source.is_dir() else [source]
    folder = FolderProvenance(args.json) if source.is_dir() else None
    verdicts, combined, failures = [], [], []
    for path in paths:
        try:
            cues, together = _score_with_cues(args, path, method, detector)
        except FakelabError as error:
            if not source.is_dir():
                raise
            failures.append(ScanFailure(path, str(error)))
            print(f"skipped {path}: {error}", file=sys.stderr)
            folder.note(path)
            continue
        verdicts.append(cues)
        combined.append(together)
        if not args.json:
            if provenance is not None and not provenance.made_by_fakelab:
                print(provenance.describe(), flush=True)
            print((together or cues).summary(), flush=True)
            print(cues.cue_table(), flush=True)
        if folder is not None:
            folder.note(path)
    if not verdicts:
        raise InputError(f"none of the {len(paths)} files in {source} could be scored")
    if args.report:
        write_cue_report(args.report, verdicts, failures, combined if method == "all" else None)
    if args.json:
        results = []
        for cues, together in zip(verdicts, combined):
            entry = cues.to_json()
            if together is not None:
                entry = {**together.to_json(), "cues": entry}
            results.append(entry)
        document = {
            "method": method,
            "checkpoint": ", ".join(str(path) for path in args.checkpoint) if args.checkpoint else None,
            "threshold": args.threshold,
            "results": results,
            "failures": [failure.to_json() for failure in failures],
        }
        if provenance is not None:
            document["provenance"] = provenance.to_json()
        if folder is not None:
            folder.annotate(document["results"])
            folder.annotate(document["failures"])
        print(json.dumps(finite_json(document), indent=2, allow_nan=False))
    elif args.report:
        print(f"report written to {args.report}")


def _register_train(subparsers) -> None:
    defaults = TrainingConfig()
    parser = subparsers.add_parser(
        "train-detector",
        help="train a deepfake detector on real and fake videos or face images",
        description="Train a detector on the faces of real and fake videos or face images (folders, searched "
        "recursively; images in one subfolder count as one video). Each epoch is class-balanced and "
        "augmented (downscale, flip, noise, blur, JPEG, rotation, colour); whole videos are held out for "
        "validation, whose AUC is printed after each epoch; training stops early when it stalls. The best "
        "detector is written to OUTPUT, the resumable state beside it (OUTPUT.state.pt).",
    )
    parser.add_argument("--real", required=True, metavar="DIR", help="real videos or face images")
    parser.add_argument("--fake", metavar="DIR", help="fake videos or face images (optional with --pseudo-fakes)")
    parser.add_argument("-o", "--output", required=True, help="detector to write (.pt or .safetensors)")
    parser.add_argument(
        "--arch", choices=list(ARCHITECTURES), default=defaults.arch, help=f"architecture (default {defaults.arch}, from ImageNet weights)"
    )
    parser.add_argument("--init", metavar="CHECKPOINT", help="start from these detector weights")
    parser.add_argument(
        "--pseudo-fakes",
        choices=PSEUDO_FAKES,
        help="also make fakes from the real faces: self-blend = self-blended images (Shiohara & Yamasaki 2022)",
    )
    parser.add_argument("--triplet", action="store_true", help="add the triplet (siamese) loss on the embeddings")
    parser.add_argument("--epochs", type=integer(1, 100_000), default=defaults.epochs, help=f"(default {defaults.epochs})")
    parser.add_argument("--batch-size", type=integer(2, 4096), default=defaults.batch_size, help=f"(default {defaults.batch_size})")
    parser.add_argument("--lr", type=number(maximum=1, above=0), default=defaults.learning_rate, help=f"AdamW learning rate (default {defaults.learning_rate:g})")
    parser.add_argument(
        "--frames-per-video", type=integer(1, 10_000), default=defaults.frames_per_video, help=f"faces taken from each video (default {defaults.frames_per_video})"
    )
    parser.add_argument(
        "--val-fraction", type=number(maximum=0.9, above=0), default=defaults.val_fraction, help=f"videos held out per class (default {defaults.val_fraction})"
    )
    parser.add_argument(
        "--patience", type=positive_int, default=defaults.patience, help=f"stop after this many epochs without a better AUC (default {defaults.patience})"
    )
    parser.add_argument("--no-augment", action="store_true", help="train without augmentations")
    parser.add_argument(
        "--adversarial",
        choices=ADVERSARIAL_METHODS,
        help="adversarial training: half of each batch replaced by PGD examples towards the wrong class",
    )
    parser.add_argument(
        "--adversarial-eps", type=intensity, default=TRAINING_EPS, metavar="E",
        help=f"budget of those examples, e.g. 4/255 (default; {TRAINING_STEPS} PGD steps of 2.5 E / {TRAINING_STEPS})",
    )
    parser.add_argument("--seed", type=seed, default=defaults.seed)
    parser.add_argument("--resume", action="store_true", help="continue from OUTPUT.state.pt")
    parser.add_argument("--face-detector", choices=DETECTORS, help="face detector (default hog; haar without dlib)")
    parser.add_argument("--device", type=device, default=defaults.device, help="cpu or cuda (default: cpu)")
    parser.set_defaults(handler=run_train, keeps_finished_outputs=True)  # the state, to resume from


def run_train(args: argparse.Namespace) -> None:
    side = [] if args.resume else [state_path(args.output)]
    check_paths(inputs={"checkpoint": args.init}, input_dirs={"--real folder": args.real, "--fake folder": args.fake}, outputs=[args.output], side_outputs=side)
    check_suffix(args.output, (".pt", ".pth", ".safetensors"))
    config = TrainingConfig(
        arch=args.arch,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.lr,
        frames_per_video=args.frames_per_video,
        val_fraction=args.val_fraction,
        patience=args.patience,
        pseudo_fakes=args.pseudo_fakes,
        triplet=args.triplet,
        augment=not args.no_augment,
        adversarial=args.adversarial,
        adversarial_eps=args.adversarial_eps,
        seed=args.seed,
        face_detector=args.face_detector,
        device=str(resolve_device(args.device)),
    )
    result = train_detector(
        args.real, args.fake, args.output, config, resume=args.resume, init=args.init, progress=sys.stderr.isatty()
    )
    print(result.summary())


def register_evaluation(kinds) -> None:
    parser = kinds.add_parser(
        "detection",
        help="ACC, AUC, EER and AP of a detector at frame and video level",
        description="Score every real and fake video or image (folders, searched recursively) and print ACC "
        f"(at the threshold), AUC, EER and AP at frame level and at video level ({SCORING_RULE}). Writes "
        "metrics.json, scores.csv and roc.png into OUTPUT.",
    )
    parser.add_argument("--real", required=True, metavar="DIR", help="real videos or images")
    parser.add_argument("--fake", required=True, metavar="DIR", help="fake videos or images")
    parser.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for metrics.json, scores.csv, roc.png")
    parser.add_argument(
        "--attack",
        choices=list(ATTACKS),
        help="attack every scored face first, towards the wrong class (fakelab attack's methods and budget)",
    )
    parser.add_argument("--eps", type=intensity, default=AttackConfig().eps, help="attack budget, e.g. 16/255 (default)")
    _add_model_arguments(parser)
    _add_scoring_arguments(parser)
    parser.set_defaults(handler=run_evaluate_detection)


def run_evaluate_detection(args: argparse.Namespace) -> None:
    _check_scoring(args)
    check_paths(inputs={"checkpoint": args.checkpoint}, input_dirs={"--real folder": args.real, "--fake folder": args.fake}, output_dirs=[args.output])
    detector = ready_for_inference(load_detector(args.checkpoint, args.arch), resolve_device(args.device))
    progress = tqdm(desc="evaluate detection", unit="file", disable=None)

    def on_result(outcome: VideoScore | ScanFailure) -> None:
        progress.update()
        if isinstance(outcome, ScanFailure):
            progress.write(f"skipped {outcome.source}: {outcome.error}", file=sys.stderr)

    if args.attack:
        result = evaluate_detection_under_attack(
            detector, args.real, args.fake, args.attack, AttackConfig(eps=args.eps),
            args.frames, args.threshold, args.face_detector, on_result,
        )
    else:
        result = evaluate_detection(detector, args.real, args.fake, args.frames, args.threshold, args.face_detector, on_result)
    progress.close()
    print(result.table())
    paths = write_evaluation(result, args.output)
    print(f"wrote {', '.join(str(p) for p in paths.values())}")
