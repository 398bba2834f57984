"""`fakelab evaluate reconstruction|animation`: score animation models as the FOMM paper does.

The `evaluate` command itself belongs to `fakelab.evaluate_commands`, which calls
`register_evaluation` here to add these two kinds.
"""

from __future__ import annotations

import argparse
import json

from tqdm import tqdm

from fakelab.animation.config import bundled_config_names, load_config
from fakelab.atomic import atomic_output
from fakelab.datasets import FramesDataset
from fakelab.errors import ConfigError
from fakelab.metrics.evaluate import (
    animation_pairs,
    evaluate_animation,
    evaluate_reconstruction,
    markdown_table,
    read_pairs_list,
)

MODELS = ("fomm", "landmark-warp", "portrait")


def register_evaluation(kinds) -> None:
    """Add the `reconstruction` and `animation` kinds to `fakelab evaluate` (see fakelab.evaluate_commands)."""
    for protocol, description in DESCRIPTIONS.items():
        parser = kinds.add_parser(protocol, help=HELP[protocol], description=description + COMMON_DESCRIPTION)
        _add_options(parser, animation=protocol == "animation")
        parser.set_defaults(handler=run_evaluate, protocol=protocol)


HELP = {
    "reconstruction": "score animation models by reconstructing test videos (L1, AKD, MKR, AED)",
    "animation": "score animation models on cross-identity pairs of test videos (AKD, MKR, AED)",
}
DESCRIPTIONS = {
    "reconstruction": "Animate each test video from its first frame with absolute motion and compare every "
    "generated frame with the real one.",
    "animation": "Animate the first frame of a test video with another identity's test video (relative motion); "
    "AKD/MKR compare the generated landmarks with the source's moved as the driving ones move, AED "
    "compares with the source's identity.",
}
COMMON_DESCRIPTION = (
    " AKD/MKR use dlib's 68 landmarks and AED dlib's 128-d embeddings, on frames resized to 256x256; AED is "
    "given as the L2 distance and as the squared L2 distance (what the reference evaluation reports). "
    "Prints a markdown table."
)


def _add_options(parser, animation: bool) -> None:
    parser.add_argument("--data", required=True, help="dataset folder (its test/ videos are scored)")
    parser.add_argument(
        "--model",
        action="append",
        choices=MODELS,
        help="model(s) to score, repeatable (default: fomm); landmark-warp is the classical baseline, "
        "portrait the training-free default of fakelab animate",
    )
    parser.add_argument("--checkpoint", help="FOMM checkpoint (needed for --model fomm)")
    parser.add_argument(
        "--config",
        default="vox-256",
        help=f"FOMM config: {', '.join(bundled_config_names())} or a YAML path (default: vox-256); "
        "it also gives the frame size",
    )
    parser.add_argument("--split", default="test", choices=("train", "test"), help="videos to score (default: test)")
    parser.add_argument("--max-frames", type=int, help="use at most this many frames of each video")
    if animation:
        parser.add_argument("--pairs", metavar="CSV", help="pairs list with 'source' and 'driving' columns")
        parser.add_argument("--num-pairs", type=int, help="pairs to draw (default: the config's num_pairs or 50)")
    else:
        parser.add_argument("--max-videos", type=int, help="score at most this many videos")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    parser.add_argument("-o", "--output", help="write the results as JSON here")
    parser.add_argument("--markdown", metavar="FILE", help="also write the markdown table here")


def build_models(names: list[str], args: argparse.Namespace, config, relative: bool) -> dict[str, object]:
    from fakelab.animation.api import fomm_animator
    from fakelab.animation.landmark_warp import LandmarkWarpAnimator
    from fakelab.metrics.faces import ANALYSIS_SIZE

    normalisation = config.normalization_params
    models = {}
    for name in names:
        if name == "fomm":
            if not args.checkpoint:
                raise ConfigError("--model fomm needs --checkpoint")
            models[name] = fomm_animator(
                args.checkpoint,
                args.config,
                relative=relative,
                adapt_scale=normalisation.adapt_movement_scale,
                device=args.device,
            )
        elif name == "portrait":
            from fakelab.animation.portrait import PortraitAnimator

            models[name] = PortraitAnimator(size=ANALYSIS_SIZE)
        else:
            # Resolution-free: it works on frames upscaled to the size dlib is scored at.
            models[name] = LandmarkWarpAnimator(size=ANALYSIS_SIZE, adapt_scale=normalisation.adapt_movement_scale, relative=relative)
    return models


def run_evaluate(args: argparse.Namespace) -> None:
    config = load_config(args.config)
    names = list(dict.fromkeys(args.model or ["fomm"]))
    dataset = FramesDataset(args.data, config.frame_shape, split=args.split)
    models = build_models(names, args, config, relative=args.protocol == "animation")
    progress = lambda items: tqdm(items, desc=f"evaluate {args.protocol}", unit="video")  # noqa: E731
    if args.protocol == "reconstruction":
        evaluations = evaluate_reconstruction(models, dataset, args.max_videos, args.max_frames, progress)
    else:
        count = args.num_pairs or config.sections.get("animate_params", {}).get("num_pairs", 50)
        pairs = read_pairs_list(args.pairs, dataset) if args.pairs else animation_pairs(dataset, count)
        evaluations = evaluate_animation(models, pairs, args.max_frames, progress)
    table = markdown_table(evaluations)
    print(table)
    if args.output:
        with atomic_output(args.output) as tmp:
            tmp.write_text(json.dumps([evaluation.to_json() for evaluation in evaluations], indent=2))
    if args.markdown:
        with atomic_output(args.markdown) as tmp:
            tmp.write_text(table + "\n")
