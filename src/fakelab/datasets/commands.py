"""`fakelab dataset prepare`: raw videos to a training dataset of face crops."""

from __future__ import annotations

import argparse

from tqdm import tqdm

from fakelab.cli_checks import check_paths, integer, number, positive_int, probability, seed
from fakelab.datasets.prepare import FORMATS, SPLIT_CHOICES, prepare_dataset
from fakelab.scale.commands import add_ray_arguments


def register(subparsers) -> None:
    parser = subparsers.add_parser("dataset", help="build training datasets")
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    prepare = actions.add_parser(
        "prepare",
        help="turn raw videos into a dataset of square face crops",
        description=(
            "Follow the face of each video, crop it square (the box stays still while the face stays inside, "
            "each still stretch becomes a clip named VIDEO#NNN) and write the clips as folders of PNG frames "
            "(or mp4) into OUTPUT/train and OUTPUT/test. Whole videos go to one split."
        ),
    )
    prepare.add_argument("videos", nargs="+", help="input videos")
    prepare.add_argument("-o", "--output", required=True, help="dataset folder")
    prepare.add_argument("--size", type=integer(16, 4096), default=256, help="side of the square frames (default: 256)")
    prepare.add_argument(
        "--split", default="auto", choices=SPLIT_CHOICES, help="auto: a random --test-fraction of the videos go to test/"
    )
    prepare.add_argument("--test-fraction", type=probability, default=0.2, help="share of videos for test/ (default: 0.2)")
    prepare.add_argument("--min-frames", type=positive_int, default=16, help="drop clips shorter than this (default: 16)")
    prepare.add_argument("--format", default="png", choices=FORMATS, help="png: a folder of frames per clip (default)")
    prepare.add_argument("--margin", type=number(0, 10), default=0.5, help="room around the face, in face sizes (default: 0.5)")
    prepare.add_argument("--no-face-crop", action="store_true", help="take the centre square of whole frames instead")
    prepare.add_argument("--seed", type=seed, default=0, help="seed of the train/test split (default: 0)")
    add_ray_arguments(prepare)
    # An interrupted run keeps its finished clips: the next run continues from them.
    prepare.set_defaults(handler=run_prepare, keeps_finished_outputs=True)


def run_prepare(args: argparse.Namespace) -> None:
    check_paths(inputs={"video": args.videos}, output_dirs=[args.output])
    if args.ray is None:
        _prepare(args, map)
        return
    from fakelab.scale.prepare import ray_map

    with ray_map(args.ray, args.ray_cpus) as map_jobs:
        _prepare(args, map_jobs)


def _prepare(args: argparse.Namespace, map_jobs) -> None:
    prepared = prepare_dataset(
        args.videos,
        args.output,
        size=args.size,
        split=args.split,
        test_fraction=args.test_fraction,
        min_frames=args.min_frames,
        file_format=args.format,
        face_crop=not args.no_face_crop,
        margin=args.margin,
        seed=args.seed,
        progress=lambda items: tqdm(items, desc="prepare", unit="video", total=len(args.videos)),
        map_jobs=map_jobs,
    )
    for video in prepared:
        earlier = " by an earlier run" if video.earlier else ""
        if video.skipped:
            print(f"{video.source}: skipped{earlier} ({video.skipped})")
        else:
            print(f"{video.source}: {len(video.clips)} clip(s) in {video.split}/{' (prepared' + earlier + ')' if earlier else ''}")
